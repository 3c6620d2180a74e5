"""One training run: the DANN step (utils/training/step.py) with its data stream, evaluations,
checkpoints, TensorBoard logs and export, from step 0 or from its latest checkpoint."""

import contextlib
import json
import math
import os
import sys
import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from utils.data import pipeline
from utils.errors import TrainingError
from utils.evaluation import metrics
from utils.evaluation.trained_run import BATCH_SIZE, EXPORT_NAME
from utils.files import atomic_path, write_text_atomic
from utils.runtime import distribution, startup
from utils.training import dashboards
from utils.training.early_stopping import EarlyStopping
from utils.training.run_folder import check_saved_settings, hold_run_folder
from utils.training.step import Step
from utils.training.stopping import TrainingStopped, agreed_stop
from utils.training.summaries import ScalarWriter, discard_after, read_scalars

# The domain label of each test set's images, which the domain accuracy is counted on.
TEST_DOMAINS = {"source": 0, "target": 1}


class Trainer:
    """Trains the networks of `config` on `data`, a pipeline.DomainData (utils/data/training_data.py).

    strategy and slices come from utils/runtime/devices.configure_for;
    without them, one device and one slice. `command`, the command line that
    started the run, is shown in TensorBoard's Text dashboard (dashboards.py).
    """

    def __init__(self, config, data, strategy=None, slices=1, evaluation_batch_size=BATCH_SIZE, command=""):
        self.config = config
        self.command = command
        half_batch = config.batch_size // 2
        self.total_steps = math.ceil(config.epochs * len(data.source) / half_batch)
        self.dann_step = Step(config, self.total_steps, strategy, slices)
        self.networks, self.variables = self.dann_step.networks, self.dann_step.variables
        self.optimizer, self.metrics = self.dann_step.optimizer, self.dann_step.metrics
        self.strategy = self.dann_step.strategy
        # Only the chief writes logs, exports and the run's JSON files (utils/runtime/distribution.py).
        self.is_chief = distribution.is_chief(self.strategy)
        self.pixel_mean = data.pixel_mean
        self.domains = (data.source, data.target)
        self.source_test, self.target_test = data.source_test, data.target_test
        test_sets = {"source": data.source_test, "target": data.target_test}
        self.early_stopping = EarlyStopping(config.early_stopping_patience)
        if config.early_stopping_patience:
            if data.source_validation is None:
                raise TrainingError("early_stopping_patience needs source images held out of training: "
                                    "set --source_validation_fraction (the JMLR paper holds out 0.1).")
            if distribution.task(self.strategy)[0] is not None:
                # A resumed run replays the chief's logged evaluations, which other machines lack.
                raise TrainingError("early_stopping_patience is for one machine: run without "
                                    "--strategy multi_worker, or set --early_stopping_patience 0.")
            test_sets["source_validation"] = data.source_validation
        self.test_sets = {name: pipeline.evaluation_dataset(domain, evaluation_batch_size, self.pixel_mean)
                          for name, domain in test_sets.items()}
        # A target test set without labels gives the domain accuracy only.
        self.labelled_test_sets = {name: domain.labelled for name, domain in test_sets.items()}
        self.open_data_stream()

        self.checkpoint = self.networks.checkpoint(self.optimizer)
        self.log_dir = os.path.join(config.log_dir, config.name)
        self.checkpoint_dir = os.path.join(config.checkpoint_dir, config.name)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.checkpoint_dir, max_to_keep=3)
        # Why to stop, set from outside (utils/training/stopping.py); run() checks it between calls.
        self.stop_requested = None

    @property
    def step(self):
        return self.dann_step.step

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
                seed=self.config.seed, start_step=self.step, color_source=self.config.color_source,
                parts=context.num_replicas_in_sync, part_ids=tuple(range(first, first + local_replicas)))

        dataset = self.strategy.distribute_datasets_from_function(replica_parts)
        # With several replicas the iterator warns, harmlessly, on stderr: filtered as at start-up.
        with (startup.startup_noise_filtered() if self.strategy.num_replicas_in_sync > 1
              else contextlib.nullcontext()):
            self.iterator = iter(dataset)

    def train_steps(self, num_steps):
        """Runs num_steps training steps (a tensor, so no retrace) in one compiled call."""
        self.dann_step.run_steps(self.iterator, num_steps)

    def evaluate(self):
        """Accuracy and loss on the source and target test sets (MNIST test and MNIST-M test), counted
        as evaluate.py counts them (metrics.confusion_of), and on the source validation images when
        early stopping watches them; a test set without labels adds to the domain accuracy only,
        which the test sets alone give."""
        classes = len(self.config.classes)
        results, domain_confusion = {}, np.zeros((2, 2), np.int64)
        # For the Images dashboard only: what the target test set's labels show of the classifier.
        mistakes = dashboards.Mistakes(self.pixel_mean)
        self.target_pictures = None
        with self.dann_step.evaluation_weights():
            for domain, dataset in self.test_sets.items():
                confusion, loss = np.zeros((classes, classes), np.int64), 0.0
                for images, labels in dataset:
                    # Unlabelled images (-1) get label 0: their label results are not reported.
                    labels = tf.maximum(labels, 0)
                    label_logits, loss_sum, domain_logits = self.dann_step.evaluate_batch(images, labels)
                    confusion += metrics.confusion_of(labels, label_logits, classes)
                    if domain == "target" and self.labelled_test_sets[domain]:
                        mistakes.add(images, labels, label_logits)
                    if domain in TEST_DOMAINS:
                        domain_confusion += metrics.confusion_of(np.full(len(labels), TEST_DOMAINS[domain]),
                                                                 domain_logits, 2)
                    loss += float(loss_sum)
                if self.labelled_test_sets[domain]:
                    results[f"val/{domain}_acc"] = metrics.accuracy(confusion)
                    results[f"val/{domain}_loss"] = loss / confusion.sum()
                    if domain == "target":
                        self.target_pictures = (confusion, mistakes.arrays())
        results["val/domain_acc"] = metrics.accuracy(domain_confusion)
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
            check_saved_settings(self.config, self.checkpoint_dir, self.log_dir)
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
        if self.early_stopping.patience and self.step > 0:
            self.early_stopping.replay(read_scalars(self.log_dir), self.step)
        if not self.is_chief:
            return
        discard_after(self.log_dir, self.step)
        # Beside the logs for the record, beside the checkpoints for evaluate.py.
        for folder in (self.log_dir, self.checkpoint_dir):
            write_text_atomic(os.path.join(folder, "config.json"), self.config.to_json())

    def run(self, resume=False):
        """Trains to the end; returns the final evaluation with timing.

        Setting stop_requested to a reason (the name of a signal received)
        stops the run between two compiled calls, or after training and
        before the export: see stop(). While it runs, this process holds the
        run's checkpoint folder, so that a second process cannot start the same run.
        """
        with hold_run_folder(self.checkpoint_dir) if self.is_chief else contextlib.nullcontext():
            self.start(resume)
            start_step = self.step
            started = time.perf_counter()
            writer = ScalarWriter(self.log_dir if self.is_chief else None)
            if self.is_chief and not dashboards.has_settings(self.log_dir):
                dashboards.write_settings(writer.writer, self.config, self.command)
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
            if self.early_stopping.patience:
                final["early_stopping"] = self.early_stopping.record(self.step)
            self.finish(final)
        return final

    def finish(self, final):
        """The export and final.json. A stop that came during the last evaluation or the export is
        honoured here: the last step's checkpoint is saved, and --resume writes the rest."""
        if agreed_stop(self):
            raise self.stop("after training, before the export")
        if self.is_chief:
            self.export()
            self.write_final_dashboards(final)
        if agreed_stop(self):
            raise self.stop("after the export, before final.json")
        if self.is_chief:
            write_text_atomic(os.path.join(self.log_dir, "final.json"), json.dumps(final, indent=2) + "\n")

    def train_to_end(self, writer, progress_bar):
        """The training loop: logs, evaluations and checkpoints at their steps; returns the last
        evaluation (None if there was none) and the seconds spent evaluating."""
        config = self.config
        evaluation_seconds = 0.0
        results, evaluations = None, 0
        while self.step < self.total_steps and not self.early_stopping.stopped:
            if agreed_stop(self):
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
            if not math.isfinite(window["total_loss"]) or not self.dann_step.weights_are_finite():
                raise TrainingError(self.divergence_message(window["total_loss"], step))
            progress_bar.set_postfix({name: f"{value:.3f}" for name, value in window.items()})
            if step % config.log_every == 0 or step == self.total_steps:
                writer.write({f"train/{name}": value for name, value in window.items()}, step)
                # The values at p = step / total_steps, which the next step uses.
                learning_rate, lambda_ = self.dann_step.current_schedule()
                writer.write({"schedule/learning_rate": learning_rate, "schedule/lambda": lambda_}, step)
                for metric in self.metrics.values():
                    metric.reset_state()
            if step % config.eval_every == 0 or step == self.total_steps:
                evaluation_started = time.perf_counter()
                results = self.evaluate()
                evaluation_seconds += time.perf_counter() - evaluation_started
                writer.write(results, step)
                if self.is_chief:
                    self.write_pictures(writer.writer, step, first=evaluations == 0)
                evaluations += 1
                progress_bar.write(f"step {step}: " + ", ".join(
                    f"{tag} {value:.4f}" for tag, value in results.items()))
                if self.early_stopping.patience and self.early_stopping.update(step, results):
                    progress_bar.write(f"Early stopping at step {step}: {self.early_stopping.patience} "
                                       "evaluations without a better source validation accuracy than "
                                       f"step {self.early_stopping.best_step}'s.")
            if (step % config.checkpoint_every == 0 or step == self.total_steps
                    or self.early_stopping.stopped):
                self.save_checkpoint()
        return results, evaluation_seconds

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
        return TrainingStopped(f"Stopped by {self.stop_requested} at step {step}, {where}; {saved}.",
                               self.stop_requested)

    def save_checkpoint(self):
        """Saves the training state at the current step: the chief in the run's folder, any other
        worker in a temporary folder it then deletes (distribution.checkpoint_folder)."""
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

    def write_pictures(self, writer, step, first):
        """The Images dashboard after an evaluation: the target test set's confusion matrix and
        mistakes; at a run's first evaluation, also a training batch as the networks see it."""
        if self.target_pictures is not None:
            dashboards.write_pictures(writer, step, self.target_pictures[0], self.config.classes,
                                      self.target_pictures[1])
        if first:
            source, target = self.domains
            # One element taken in one op: an abandoned iterator over the endless stream can log a
            # cancelled-rendezvous line on stderr when the process ends.
            batch = pipeline.training_dataset(
                source, target, self.config.batch_size // 2, self.pixel_mean, seed=self.config.seed,
                start_step=self.step, color_source=self.config.color_source).take(1).get_single_element()
            dashboards.write_inputs(writer, step, batch[0].numpy(), batch[2].numpy())

    def write_final_dashboards(self, final):
        """The HParams metrics of the end, and the Projector's features of a seeded sample of both
        test sets (the same images for every run), with domain, label and prediction."""
        writer = tf.summary.create_file_writer(self.log_dir)
        dashboards.write_final(writer, final)
        writer.close()
        features, metadata = [], []
        rng = np.random.default_rng(0)
        with self.dann_step.evaluation_weights():
            for domain, images in (("source", self.source_test), ("target", self.target_test)):
                rows = np.sort(rng.choice(len(images), min(len(images), dashboards.PROJECTED_PER_DOMAIN),
                                          replace=False))
                inputs, labels = images.gather(rows, self.pixel_mean)
                domain_features = self.networks.feature_extractor(inputs, training=False)
                predictions = np.argmax(self.networks.label_classifier(domain_features, training=False), axis=1)
                features.append(np.asarray(domain_features, np.float32))
                metadata += [{"domain": domain, "label": self.config.classes[label] if label >= 0 else "unlabelled",
                              "prediction": self.config.classes[prediction]}
                             for label, prediction in zip(labels.numpy(), predictions)]
        dashboards.write_projector(self.log_dir, np.concatenate(features), metadata)

    def export(self):
        """Saves feature extractor + label classifier (with normalization) as a .keras file."""
        path = os.path.join(self.checkpoint_dir, EXPORT_NAME)
        with atomic_path(path) as temporary, self.dann_step.evaluation_weights():
            self.networks.classifier(self.pixel_mean).save(temporary)
        return path


def next_multiple(step, every):
    return (step // every + 1) * every
