"""Where the training step's time goes: TensorFlow's profiler over a few hundred steps, summed per op.

    python bench/profile_step.py --mnist ../shared/data/mnist.npz              # float32, 200 steps
    python bench/profile_step.py --mnist PATH --precision mixed_bfloat16 --steps 100
    tensorboard --logdir logs/profile                                          # the same trace, drawn

Runs `train.Trainer.train_steps` as train.py does, after two warm-up calls,
under `tf.profiler.experimental`, which writes a trace that TensorBoard's
Profile tab shows (with the tensorboard-plugin-profile package). The trace's
op events on TensorFlow's compute threads are then summed per layer, op and
direction: forward, or backward (ops under the gradient tape). Times are
per training step and add up the replicas (utils/runtime/distribution.py), whose
ops run side by side; a convolution's GFLOP/s is its work over the time it
ran, so on one core it can be set against one core's peak. The last line of
output is one JSON object.
"""

import os
import sys

# A script in bench/ imports the project from the folder above, and the bench's own modules beside it.
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

from config import Config  # noqa: E402
from utils import cli  # noqa: E402
from utils import scripts  # noqa: E402
from utils.runtime import startup  # noqa: E402


def parse_arguments(arguments):
    """(--steps, --log_dir, the Config of the settings given)."""
    parser = cli.Parser(__doc__, settings=("mnist_path", "mnistm_path", "precision"),
                        defaults={"precision": "float32"}, renamed={"--logdir": "--log_dir"})
    parser.add_argument("--steps", type=int, default=200, help="Profiled steps (default 200).")
    parser.add_argument("--log_dir", default=os.path.join("logs", "profile"), metavar="DIR",
                        help="Where the trace is written, and the run's logs below it in run/ "
                             "(default logs/profile).")
    options, overrides = parser.parse(arguments)
    run_dir = os.path.join(options.log_dir, "run")
    try:
        config = Config(**overrides, log_dir=run_dir, checkpoint_dir=run_dir)
    except ValueError as error:
        raise cli.UsageError(str(error)) from error
    return options.steps, options.log_dir, config


@cli.reports_usage_errors
def main(arguments):
    steps, log_dir, config = parse_arguments(arguments)
    startup.set_up()
    import op_times

    op_times.profile(config, steps, log_dir)
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main, sys.argv[1:]))
