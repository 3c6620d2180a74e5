"""Training wall time of a default `python train.py` run until MNIST-M test accuracy reaches a target.

    python bench/time_to_accuracy.py --mnist ../shared/data/mnist.npz              # full default run
    python bench/time_to_accuracy.py --mnist PATH --eval_every 250                 # finer time resolution
    python bench/time_to_accuracy.py --mnist PATH --epochs 0.5 --target 0.5        # a quick check

Runs `Trainer.run` unchanged (default Config, real data, logs and
checkpoints in a temporary folder under /tmp), so the clock covers what a
user waits for: tracing, training steps, summaries and checkpoints. It starts
when run() starts, after data loading and model building (reported as
setup_seconds), and stops at each evaluation, whose time is left out and
reported as evaluation_seconds. The target is met at the first evaluation
(every eval_every steps) with target test accuracy >= --target: a time
resolution of eval_every steps. Any config.py field can be overridden as in
train.py. The last line of output is one JSON object, with the peak RSS.
"""

import os
import sys

# A script in bench/ imports the project from the folder above, and the bench's own modules beside it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import preset_config  # noqa: E402
from utils import cli  # noqa: E402
from utils import scripts  # noqa: E402
from utils.runtime import startup  # noqa: E402

PAPER_TARGET_ACCURACY = 0.7666  # Ganin & Lempitsky (2015), table 1, MNIST -> MNIST-M.

# Set by the benchmark: a temporary folder.
BENCH_SETTINGS = ("log_dir", "checkpoint_dir", "run_name")


def parse_arguments(arguments):
    """(--target, the overrides of the settings given)."""
    parser = cli.Parser(__doc__, settings=[name for name in cli.SETTINGS if name not in BENCH_SETTINGS])
    parser.add_argument("--target", type=float, default=PAPER_TARGET_ACCURACY,
                        help="MNIST-M test accuracy to reach (default: %(default)s, the paper's).")
    options, overrides = parser.parse(arguments)
    return options.target, overrides


def main(arguments):
    try:
        target, overrides = parse_arguments(arguments)
        preset_config(**overrides)
    except cli.HelpPrinted:
        return 0
    except ValueError as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    startup.set_up()
    import timed_training

    return timed_training.time_to_accuracy(target, overrides)


if __name__ == "__main__":
    sys.exit(scripts.run_main(main, sys.argv[1:]))
