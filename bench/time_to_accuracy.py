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

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Before anything imports TensorFlow: its settings, and a start without its start-up lines.
from utils.runtime import startup  # noqa: E402

startup.set_up()

import tensorflow as tf  # noqa: E402

import machine  # noqa: E402
from config import preset_config  # noqa: E402
from utils import cli  # noqa: E402
from utils.data import training_data  # noqa: E402
from utils.runtime import devices  # noqa: E402
from utils.training.trainer import Trainer  # noqa: E402

PAPER_TARGET_ACCURACY = 0.7666  # Ganin & Lempitsky (2015), table 1, MNIST -> MNIST-M.


class TimedTrainer(Trainer):
    """Trainer whose evaluations record the training time (evaluations excluded) at which they ran."""

    def start(self, resume):
        super().start(resume)
        self.clock_started = time.perf_counter()
        self.evaluation_seconds = 0.0
        self.evaluations = []

    def evaluate(self):
        evaluation_started = time.perf_counter()
        training_seconds = evaluation_started - self.clock_started - self.evaluation_seconds
        results = super().evaluate()
        self.evaluation_seconds += time.perf_counter() - evaluation_started
        # run() evaluates the last step twice (in the loop and for its final result); keep one.
        if not self.evaluations or self.evaluations[-1]["step"] != self.step:
            self.evaluations.append({"step": self.step, "training_seconds": round(training_seconds, 2),
                                     "target_acc": results["val/target_acc"],
                                     "source_acc": results["val/source_acc"]})
            print(f"[time to accuracy] step {self.step}, {training_seconds:.1f} s of training: "
                  f"target acc {results['val/target_acc']:.4f}", flush=True)
        return results


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
    with tempfile.TemporaryDirectory(prefix="dann-time-to-accuracy-") as scratch:
        config = preset_config(**overrides, log_dir=os.path.join(scratch, "logs"),
                        checkpoint_dir=os.path.join(scratch, "checkpoints"))
        setup_started = time.perf_counter()
        runtime = devices.configure_for(config)
        # As train.py: no name keeps the NumPy arrays alive once the trainer holds its copies.
        trainer = TimedTrainer(config, training_data.training_data(config), *runtime)
        setup_seconds = time.perf_counter() - setup_started
        final = trainer.run()
    reached = next((evaluation for evaluation in trainer.evaluations
                    if evaluation["target_acc"] >= target), None)
    report = {
        "target_accuracy": target,
        "reached": reached is not None,
        "seconds_to_target": reached and reached["training_seconds"],
        "step_at_target": reached and reached["step"],
        "final_target_acc": final["val/target_acc"],
        "final_source_acc": final["val/source_acc"],
        "final_domain_acc": final["val/domain_acc"],
        "steps": final["steps"],
        "training_seconds": final["training_seconds"],
        "evaluation_seconds_excluded": final["wall_seconds"] - final["training_seconds"],
        "setup_seconds_excluded": setup_seconds,
        "steps_per_s": final["steps_per_second"],
        "peak_rss_mb": machine.peak_rss_mb(),
        "clock": ("training wall time of Trainer.run: tracing, steps, summaries and checkpoints; "
                  "without data loading, model building and evaluations"),
        "evaluations": trainer.evaluations,
        "config_overrides": overrides,
        "settings": machine.settings(tf),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
