"""Train DANN, or one of its baselines, on MNIST -> MNIST-M or on your own image folders.

    python train.py                          # DANN with the paper's settings (config.py)
    python train.py --mode source_only       # lower bound: no adaptation
    python train.py --mode target_only       # upper bound: trained on MNIST-M labels
    python train.py --seed 1 --epochs 5      # any config.py field, spelled as the field is
    python train.py --preset daipuwei        # a named preset of config.py (PRESETS)
    python train.py --resume                 # continue the run from its latest checkpoint
    python train.py --mnist PATH --bsds PATH # local copies of mnist.npz and BSR_bsds500.tgz
    python train.py --source_dir DIR --target_dir DIR   # image folders (docs/folders.md)

Ctrl-C or SIGTERM stops a run with a checkpoint at the step reached and
prints the command that continues it (exit code 130 or 143).

TensorBoard: tensorboard --logdir logs
"""

# First: it loads TensorFlow with this project's settings and without its start-up lines.
import utils.runtime.startup

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import shlex
import signal
import sys
import time

import tensorflow as tf
from tqdm import tqdm

from config import parse_overrides, preset_config, usage
from model.step import DANNStep
from utils.runtime import distribution
from utils.data import folders
from utils.data import pipeline
from utils.runtime import precision
from utils.runtime import devices
from utils.errors import DistributionError
from utils.files import atomic_path, write_text_atomic
from utils.data.training_data import folder_data as load_folder_data
from utils.data.mnistm import build_mnistm, load_mnistm, pixel_mean
from utils.selection.reverse_validation import validation_split
from utils.scripts import run_main
from utils.errors import DataError
from utils.data.datasets import load_mnist
from utils.training.summaries import ScalarWriter, discard_after

EVALUATION_BATCH_SIZE = 1000


class TrainingError(RuntimeError):
    """A run that cannot start or continue: the message says what to do."""


class TrainingStopped(Exception):
    """A run stopped on request (Ctrl-C or SIGTERM), with a checkpoint at the step it reached."""


class Trainer(DANNStep):
    """One run: the DANN step (model/step.py) with its data stream, evaluations, checkpoints and logs."""

    def __init__(self, config, mnist=None, mnistm=None, evaluation_batch_size=EVALUATION_BATCH_SIZE,
                 data=None, strategy=None):
        """Trains on the MNIST and MNIST-M arrays, or on `data`, a pipeline.DomainData (image folders)."""
        data = data or mnist_data(config, mnist, mnistm)
        half_batch = config.batch_size // 2
        super().__init__(config, total_steps=math.ceil(config.epochs * len(data.source) / half_batch),
                         strategy=strategy)
        # Only the chief writes logs, exports and the run's JSON files (utils/distribution.py).
        self.is_chief = distribution.is_chief(self.strategy)
        self.pixel_mean = data.pixel_mean
        self.domains = (data.source, data.target)
        self.test_sets = {name: pipeline.evaluation_dataset(domain, evaluation_batch_size, self.pixel_mean)
                          for name, domain in (("source", data.source_test), ("target", data.target_test))}
        # A target test set without labels gives the domain accuracy only.
        self.labelled_test_sets = {"source": data.source_test.labelled, "target": data.target_test.labelled}
        self.open_data_stream()

        self.checkpoint = tf.train.Checkpoint(
            feature_extractor=self.networks.feature_extractor,
            label_classifier=self.networks.label_classifier,
            domain_classifier=self.networks.domain_classifier,
            optimizer=self.optimizer)
        self.log_dir = os.path.join(config.log_dir, config.name)
        self.checkpoint_dir = os.path.join(config.checkpoint_dir, config.name)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.checkpoint_dir, max_to_keep=3)
        # Why to stop, set from outside (main's signal handler); run() checks it between calls.
        self.stop_requested = None

    def open_data_stream(self):
        """The training batches from the current step on (the order depends on seed and step only).

        Each input pipeline (one per worker) draws its replicas' parts of
        every batch, in the order its replicas take them; all the parts of a
        step together are the batch one device would train on.
        """
        def replica_parts(context):
            local_replicas = context.num_replicas_in_sync // context.num_input_pipelines
            first = context.input_pipeline_id * local_replicas
            return pipeline.training_dataset(
                *self.domains, self.config.batch_size // 2, self.pixel_mean,
                seed=self.config.seed, start_step=self.step, colour_source=self.config.colour_source,
                parts=context.num_replicas_in_sync, part_ids=tuple(range(first, first + local_replicas)))

        dataset = self.strategy.distribute_datasets_from_function(replica_parts)
        # With several replicas the iterator warns, harmlessly, on stderr: filtered as at start-up.
        with (utils.runtime.startup.startup_noise_filtered() if self.strategy.num_replicas_in_sync > 1
              else contextlib.nullcontext()):
            self.iterator = iter(dataset)

    def train_steps(self, num_steps):
        """Runs num_steps training steps (a tensor, so no retrace) in one compiled call."""
        self.run_steps(self.iterator, num_steps)

    def evaluate(self):
        """Accuracy and loss on the source and target test sets (MNIST test and MNIST-M test), summed
        over batches; a test set without labels adds to the domain accuracy only."""
        totals = {}
        with self.evaluation_weights():
            for domain_index, (domain, dataset) in enumerate(self.test_sets.items()):
                sums = [0.0, 0.0, 0.0, 0]
                for images, labels in dataset:
                    # Unlabelled images (-1) get label 0: their label results are not reported.
                    labels = tf.maximum(labels, 0)
                    correct, loss, domain_correct = self.evaluate_batch(images, labels, domain_index)
                    sums = [sums[0] + float(correct), sums[1] + float(loss),
                            sums[2] + float(domain_correct), sums[3] + int(labels.shape[0])]
                totals[domain] = sums
        seen = totals["source"][3] + totals["target"][3]
        results = {}
        for domain in ("source", "target"):
            if self.labelled_test_sets[domain]:
                results[f"val/{domain}_acc"] = totals[domain][0] / totals[domain][3]
                results[f"val/{domain}_loss"] = totals[domain][1] / totals[domain][3]
        results["val/domain_acc"] = (totals["source"][2] + totals["target"][2]) / seen
        return results

    def start(self, resume):
        """Restores the latest checkpoint when resuming; refuses to overwrite an earlier run.

        A run stopped before its first checkpoint saved nothing: starting it
        again, with or without --resume, begins at step 0. Event points after
        the restored step (all of them at step 0) are discarded, since this
        run writes those steps again.
        """
        started_before = os.path.isdir(self.log_dir) and bool(os.listdir(self.log_dir))
        if self.manager.latest_checkpoint is None:
            if resume and not started_before:
                raise TrainingError(f"--resume: no checkpoint in '{self.checkpoint_dir}' and no run "
                                    f"'{self.config.name}' in '{self.log_dir}'. Check --run_name, or "
                                    "run without --resume to start this run.")
            if started_before:
                print(f"Run '{self.config.name}' stopped before its first checkpoint: "
                      "nothing was saved, so it starts again at step 0.")
        elif resume:
            self.check_saved_settings()
            try:
                self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as error:
                raise TrainingError(f"--resume: the checkpoint in '{self.checkpoint_dir}' does not fit this "
                                    f"run's networks and optimizer ({str(error).splitlines()[0]}). Resume "
                                    "with the run's own settings.") from error
            self.open_data_stream()
        else:
            raise TrainingError(f"Run '{self.config.name}' already exists in '{self.log_dir}' and "
                                f"'{self.checkpoint_dir}'. Pass --resume to continue it, choose "
                                "another --run_name, or delete those folders.")
        self.saved_step = self.checkpoint_step
        if not self.is_chief:
            return
        discard_after(self.log_dir, self.step)
        # Beside the logs for the record, beside the checkpoints for evaluate.py.
        for folder in (self.log_dir, self.checkpoint_dir):
            write_text_atomic(os.path.join(folder, "config.json"), self.config.to_json())

    def check_saved_settings(self):
        """Refuses to resume with settings that differ from those the checkpoint was trained with.

        The copy of config.json beside the checkpoints is the one that
        travels with the weights; the copy beside the logs is checked too,
        when it is there. A checkpoint with neither cannot be checked.
        """
        saved = [path for path in (os.path.join(self.checkpoint_dir, "config.json"),
                                   os.path.join(self.log_dir, "config.json")) if os.path.isfile(path)]
        if not saved:
            raise TrainingError(f"--resume: the checkpoint in '{self.checkpoint_dir}' has no config.json "
                                "beside it, so its settings cannot be checked. Start a new run instead.")
        # Compared as JSON, where the class names are a list as in the saved file.
        current = json.loads(self.config.to_json())
        for path in saved:
            try:
                with open(path, encoding="utf-8") as stream:
                    settings = json.load(stream)
            except (OSError, ValueError) as error:
                raise TrainingError(f"--resume: cannot read '{path}' ({error}).") from error
            changed = sorted(key for key, value in current.items() if key in settings and settings[key] != value)
            if changed:
                raise TrainingError(f"--resume: these settings differ from the saved run: "
                                    f"{', '.join(changed)} ('{path}'). Resume with the run's own settings.")

    def run(self, resume=False):
        """Trains to the end; returns the final evaluation with timing.

        Setting stop_requested to a reason (main sets the name of a signal it
        received) stops the run between two compiled calls, or after training
        and before the export: see stop(). While it runs, this process holds
        the run's checkpoint folder (hold_run_folder), so that a second process
        cannot start the same run.
        """
        with hold_run_folder(self.checkpoint_dir) if self.is_chief else contextlib.nullcontext():
            return self.run_holding_folder(resume)

    def run_holding_folder(self, resume):
        self.start(resume)
        start_step = self.step
        started = time.perf_counter()
        writer = ScalarWriter(self.log_dir if self.is_chief else None)
        progress_bar = tqdm(total=self.total_steps, initial=start_step, unit="step",
                            desc=self.config.name, dynamic_ncols=True, file=sys.stdout)
        try:
            results, evaluation_seconds = self.train_to_end(writer, progress_bar)
        finally:
            # Also when training stops early: every event written reaches its file.
            progress_bar.close()
            writer.close()
        seconds = time.perf_counter() - started
        # The loop's last window always ends with an evaluation at the final
        # step; only a resumed run that had already finished needs one here.
        results = results or self.evaluate()
        final = {**results, "steps": self.step, "wall_seconds": seconds,
                 "training_seconds": seconds - evaluation_seconds,
                 "steps_per_second": (self.step - start_step) / max(seconds - evaluation_seconds, 1e-9)}
        # A stop that came during the last evaluation or the export is honoured
        # here: the last step's checkpoint is saved, and --resume writes the rest.
        if self.stop_agreed():
            raise self.stop("after training, before the export")
        if self.is_chief:
            self.export()
        if self.stop_agreed():
            raise self.stop("after the export, before final.json")
        if self.is_chief:
            write_text_atomic(os.path.join(self.log_dir, "final.json"), json.dumps(final, indent=2) + "\n")
        return final

    def train_to_end(self, writer, progress_bar):
        """The training loop: logs, evaluations and checkpoints at their steps; returns the last
        evaluation (None if there was none) and the seconds spent evaluating."""
        config = self.config
        evaluation_seconds = 0.0
        results = None
        while self.step < self.total_steps:
            if self.stop_agreed():
                raise self.stop()
            step = self.step
            boundary = min(next_multiple(step, every) for every in
                           (config.log_every, config.eval_every, config.checkpoint_every))
            num_steps = min(config.steps_per_call, boundary - step, self.total_steps - step)
            self.train_steps(tf.constant(num_steps))
            step = self.step
            progress_bar.update(num_steps)
            window = {name: float(metric.result()) for name, metric in self.metrics.items()}
            # Checked before anything is saved, so no checkpoint holds weights
            # that a bad step has already damaged.
            if not math.isfinite(window["total_loss"]) or not self.weights_are_finite():
                raise TrainingError(self.divergence_message(window["total_loss"], step))
            progress_bar.set_postfix({name: f"{value:.3f}" for name, value in window.items()})
            if step % config.log_every == 0 or step == self.total_steps:
                writer.write({f"train/{name}": value for name, value in window.items()}, step)
                # The values at p = step / total_steps, which the next step uses.
                learning_rate, strength = self.current_schedule()
                writer.write({"schedule/learning_rate": learning_rate, "schedule/lambda": strength}, step)
                for metric in self.metrics.values():
                    metric.reset_state()
            if step % config.eval_every == 0 or step == self.total_steps:
                evaluation_started = time.perf_counter()
                results = self.evaluate()
                evaluation_seconds += time.perf_counter() - evaluation_started
                writer.write(results, step)
                progress_bar.write(f"step {step}: " + ", ".join(
                    f"{tag} {value:.4f}" for tag, value in results.items()))
            if step % config.checkpoint_every == 0 or step == self.total_steps:
                self.save_checkpoint()
        return results, evaluation_seconds

    def stop_agreed(self):
        """Whether to stop now; on several machines, every worker stops at the same step.

        A scheduler's SIGTERM reaches the workers at slightly different
        times. Were each to stop on its own, one would save and exit while
        another waited for it in the next step's all-reduce. So between calls
        the workers gather the signal number each received (0: none) and all
        stop on the highest.
        """
        if distribution.task(self.strategy)[0] is None:
            return self.stop_requested
        received = signal.Signals[self.stop_requested].value if self.stop_requested else 0
        # tf.distribute reduces by sum or mean only: gather every replica's number, take the highest.
        highest = tf.reduce_max(self.strategy.gather(self.strategy.run(lambda: tf.constant([received])), axis=0))
        if int(highest):
            self.stop_requested = signal.Signals(int(highest)).name
        return self.stop_requested

    def stop(self, where="between two compiled calls"):
        """Saves a checkpoint at the step reached and returns the TrainingStopped to raise.

        Called between two compiled calls, after the last one's weights passed
        the divergence check, so the checkpoint holds good weights and a
        resumed run ends with the same weights as an uninterrupted one. A
        training window cut short is logged, after resuming, as the mean of
        its remaining steps. At step 0 nothing was trained and nothing is saved.
        """
        step = self.step
        if step > 0 and self.saved_step != step:
            self.save_checkpoint()
        saved = (f"its checkpoint at step {step} is in '{self.checkpoint_dir}'" if step > 0
                 else "nothing was trained, so nothing was saved")
        return TrainingStopped(f"Stopped by {self.stop_requested} at step {step}, {where}; {saved}.")

    def save_checkpoint(self):
        """Saves the training state at the current step: the chief in the run's folder, any other
        worker in a temporary folder it then deletes (utils/distribution.checkpoint_folder)."""
        with distribution.checkpoint_folder(self.checkpoint_dir, self.strategy) as folder:
            manager = (self.manager if folder == self.checkpoint_dir else
                       tf.train.CheckpointManager(self.checkpoint, folder, max_to_keep=1))
            manager.save(checkpoint_number=self.step)
        # Recorded here, not read from the folder, so every worker decides alike.
        self.saved_step = self.step

    @property
    def checkpoint_step(self):
        """The step of the latest checkpoint (run numbers them by step), or None without one."""
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        return int(latest.rsplit("-", 1)[-1]) if latest else None

    def divergence_message(self, loss, step):
        """Says what became non-finite, whether a checkpoint was saved and at which step, and a
        command that starts the run again."""
        diverged = f"the loss became {loss}" if not math.isfinite(loss) else "a weight became inf or nan"
        saved = (f"Its last checkpoint, saved before that, is at step {self.checkpoint_step} in "
                 f"'{self.checkpoint_dir}'." if self.checkpoint_step is not None else "It had saved no checkpoint yet.")
        lower = self.config.learning_rate / 2
        return (f"Training diverged by step {step}: {diverged}; the run stopped. {saved} Start it "
                f"again with a lower learning rate: add --learning_rate {lower:g} "
                f"--run_name {self.config.name}-lr{lower:g} to the same command.")

    def export(self):
        """Saves feature extractor + label classifier (with normalisation) as a .keras file."""
        path = os.path.join(self.checkpoint_dir, "classifier.keras")
        with atomic_path(path) as temporary, self.evaluation_weights():
            self.networks.classifier(self.pixel_mean).save(temporary)
        return path


@contextlib.contextmanager
def hold_run_folder(folder):
    """Inside it, this process alone holds `folder` (a run's checkpoint folder), which it creates.

    An exclusive flock on the folder itself: the kernel lets it go when the
    process ends, however it ends, so no stale lock is ever left. A folder
    this call created is removed again if the run leaves it empty.
    """
    created = not os.path.exists(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise TrainingError(f"Cannot use '{folder}' as the run's checkpoint folder: {error.strerror}. "
                            "Choose another --checkpoint_dir or --run_name.") from error
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise TrainingError(f"Another process is training this run now: it holds '{folder}'. Wait "
                                "for it to end, or choose another --run_name.") from error
        yield
    finally:
        os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # Only when empty.


def next_multiple(step, every):
    return (step // every + 1) * every


def mnist_data(config, mnist, mnistm):
    """The pipeline.DomainData of the MNIST (source) and MNIST-M (target) arrays.

    With source_validation_fraction, that part of the MNIST train digits is
    held out of training as the source validation part (reverse validation).
    """
    if config.source_validation_fraction:  # Else no copy: the digits are 47 MB.
        training, validation = validation_split(len(mnist["y_train"]), config.source_validation_fraction,
                                                config.held_out_seed)
        if not len(validation):
            raise DataError(f"source_validation_fraction {config.source_validation_fraction:g} of "
                            f"{len(mnist['y_train'])} digits holds none out: raise it, or set it to 0.")
        mnist = {**mnist, "x_train": mnist["x_train"][training], "y_train": mnist["y_train"][training],
                 "x_validation": mnist["x_train"][validation], "y_validation": mnist["y_train"][validation]}

    def source(split):
        return pipeline.Domain(mnist[f"x_{split}"], mnist[f"y_{split}"], is_mnist=True,
                               binarize=config.binarize_source)

    def target(split):
        return pipeline.Domain(mnistm[f"x_{split}"], mnistm[f"y_{split}"], is_mnist=False)

    # The mean of what training feeds: the source digits as binarised (or
    # not) and coloured (or not) by the config, and the MNIST-M train images.
    mean = [float(value) for value in pixel_mean(
        mnist["x_train"], mnistm["x_train"], binarize_source=config.binarize_source,
        colour_source=config.colour_source)]
    return pipeline.DomainData(source("train"), target("train"), source("test"), target("test"), mean,
                               source_validation=source("validation") if "x_validation" in mnist else None)


def load_data(config):
    """MNIST and MNIST-M arrays; MNIST-M is built first when its file is missing."""
    mnist_path = config.mnist_path or None
    mnist = dict(zip(("x_train", "y_train", "x_test", "y_test"), load_mnist(mnist_path)))
    if not os.path.exists(config.mnistm_path):
        print(f"{config.mnistm_path} not found: building MNIST-M (seed {config.mnistm_seed}).")
        build_mnistm(mnist_path, config.bsds_path or None, config.mnistm_path,
                     seed=config.mnistm_seed, download_dir=config.download_dir)
    return mnist, load_mnistm(config.mnistm_path)


def folder_classes(config):
    """The source folder's sorted class names, after checking that both training folders are given."""
    if not (config.source_dir and config.target_dir):
        raise DataError("Image folders need both --source_dir (labelled, one subfolder per class) and "
                        "--target_dir (images, labels not needed).")
    return folders.scan_source(config.source_dir).class_names


# Ctrl-C sends SIGINT; `kill` and job schedulers send SIGTERM.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(trainer):
    """Inside it, a first SIGINT or SIGTERM asks the trainer to stop with a checkpoint.

    The handler runs once the compiled call under way returns (at most
    steps_per_call steps) and puts back the default actions, so that a second
    signal after it ends the process at once, saving nothing more.
    """
    def request_stop(signal_number, frame):
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_DFL)
        trainer.stop_requested = signal.Signals(signal_number).name

    previous = {stop_signal: signal.signal(stop_signal, request_stop) for stop_signal in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)


ALIASES = {"mnist": "mnist_path", "bsds": "bsds_path"}


def restart_command(config, arguments, program):
    """How to go on after a multi-worker run lost a worker: all workers again, with --resume from
    the chief's last checkpoint, or from the start when there is none."""
    latest = tf.train.latest_checkpoint(os.path.join(config.checkpoint_dir, config.name))
    if latest is None:
        return ("No checkpoint was saved yet: start every worker again, each with its own TF_CONFIG: "
                + shlex.join(["python", program, *arguments]))
    return (f"The chief's last checkpoint is at step {latest.rsplit('-', 1)[-1]} in "
            f"'{os.path.dirname(latest)}'. Restart every worker, each with its own TF_CONFIG: "
            + shlex.join(["python", program, *arguments, "--resume"]))


def main(arguments, program="train.py"):
    if "--help" in arguments or "-h" in arguments:
        print(usage(__doc__, ALIASES))
        return 0
    resume = "--resume" in arguments
    arguments = [argument for argument in arguments if argument != "--resume"]
    try:
        overrides = parse_overrides(arguments, aliases=ALIASES)
        config = preset_config(**overrides)
        if config.uses_folders:
            # The networks' number of classes comes from the source folder.
            config = dataclasses.replace(config, class_names=folder_classes(config))
        elif (config.image_size, config.image_channels) != (28, 3):
            raise ValueError("MNIST -> MNIST-M takes 28x28x3 images: --image_size and --image_channels "
                             "apply to image folders (--source_dir, --target_dir).")
    except (ValueError, DataError) as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    # The run's config.json records the precision it trained in, not "auto".
    policy, reason = precision.resolve(config.precision)
    try:
        precision.check_fits_hardware(policy)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = dataclasses.replace(config, precision=policy)
    print(f"precision: {policy} ({reason})")
    try:
        strategy = devices.configure_for(config)
        if config.uses_folders:
            if config.binarize_source:
                print("binarize_source is on (the paper's MNIST recipe): every source pixel value > 0 "
                      "becomes 255. For photographs, add --binarize_source false.")
            trainer = Trainer(config, data=load_folder_data(config), strategy=strategy)
        else:
            # No name keeps the NumPy arrays alive: the trainer holds its own tensor
            # copies, and dropping the arrays saves about 220 MB of resident memory.
            trainer = Trainer(config, *load_data(config), strategy=strategy)
        with stop_on_signals(trainer):
            final = trainer.run(resume=resume)
    except (DataError, DistributionError, OSError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except distribution.PEER_ERRORS as error:
        if config.strategy != "multi_worker":
            raise
        print(f"error: {distribution.peer_error_message(error, config.peer_timeout_seconds)} "
              f"{restart_command(config, arguments, program)}", file=sys.stderr)
        return 2
    except TrainingStopped as stopped:
        print(f"{stopped} Continue it with: {shlex.join(['python', program, *arguments, '--resume'])}",
              file=sys.stderr)
        # 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as shells report a process
        # that the signal ended.
        return 128 + signal.Signals[trainer.stop_requested]
    print(json.dumps(final, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:], program=sys.argv[0]))
