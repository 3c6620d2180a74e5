"""The run of bench/time_to_accuracy.py: Trainer.run with its evaluations timed, and the report of when
the target accuracy was first met (time_to_accuracy.py's docstring)."""

import json
import os
import tempfile
import time

import tensorflow as tf

import machine
from config import preset_config
from utils.data import training_data
from utils.runtime import devices
from utils.training.run_config import resolve_config
from utils.training.trainer import Trainer


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


def time_to_accuracy(target, overrides):
    """Trains the Config of `overrides` in a temporary folder; prints the report, as JSON, as the last line."""
    with tempfile.TemporaryDirectory(prefix="dann-time-to-accuracy-") as scratch:
        config = preset_config(**overrides, log_dir=os.path.join(scratch, "logs"),
                               checkpoint_dir=os.path.join(scratch, "checkpoints"))
        config = resolve_config(config, log=lambda line: print(line, flush=True))
        setup_started = time.perf_counter()
        runtime = devices.configure_for(config)
        # As train.py: no name keeps the NumPy arrays alive once the trainer holds its copies.
        trainer = TimedTrainer(config, training_data.training_data(config), *runtime)
        setup_seconds = time.perf_counter() - setup_started
        final = trainer.run()
    print(json.dumps(report(target, trainer.evaluations, final, setup_seconds, overrides, config)))
    return 0


def report(target, evaluations, final, setup_seconds, overrides, config):
    """The report of the run: when it first met `target`, its final accuracies and what the clock covers."""
    reached = next((evaluation for evaluation in evaluations if evaluation["target_acc"] >= target), None)
    return {
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
        "evaluations": evaluations,
        "precision": config.precision, "precision_reason": config.precision_reason,
        "config_overrides": overrides,
        "settings": machine.settings(tf),
    }
