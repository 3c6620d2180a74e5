"""The DANN step (model/step.py) as training runs it: on slices of a batch side by side, on
tf.distribute replicas, in a precision, with its metrics and the weights' moving average.

Under a strategy each replica trains on an equal part of the batch; each
part is cut into `slices` equal slices, whose gradients TensorFlow computes
side by side. Every loss is a sum over a slice divided by the whole batch's
count, so the gradients added over slices and summed over replicas (Keras'
all-reduce) are the whole batch's gradient (docs/distributed.md).
"""

import contextlib

import keras
import tensorflow as tf

from model import Networks, cross_entropies
from model import step as dann_step
from model.optimizer import moving_averages, paper_optimizer
from model.schedules import grl_lambda, progress
from utils.errors import DistributionError
from utils.runtime import precision


class Step:
    """The networks, optimizer and metrics of one run, and the compiled step that trains them.

    Everything is built under `strategy` (default: TensorFlow's default
    strategy, one device), so the step runs on one device, on several, or on
    several machines with the same code and the same maths.
    """

    def __init__(self, config, total_steps, strategy=None, slices=1):
        self.config = config
        self.total_steps = total_steps
        self.strategy = strategy or tf.distribute.get_strategy()
        self.slices = slices
        replicas = self.strategy.num_replicas_in_sync
        if (config.batch_size // 2) % replicas:
            raise DistributionError(f"batch_size {config.batch_size} does not split evenly across "
                                    f"{replicas} replicas: its half ({config.batch_size // 2} source and "
                                    f"as many target images) must be a multiple of {replicas}.")
        if (config.batch_size // 2 // replicas) % slices:
            raise DistributionError(f"batch_shards {slices} does not divide each replica's half "
                                    f"batch ({config.batch_size // 2 // replicas} images).")
        policy = precision.resolve(config.precision)[0]
        with self.strategy.scope():
            self.networks = Networks(config, policy)
            self.variables = self.networks.trainable_variables
            self.optimizer = paper_optimizer(config, total_steps, loss_scaling=policy == "mixed_float16")
            # Building the optimizer now creates its slots, so a checkpoint restores into them.
            self.optimizer.build(self.variables)
            # The label accuracy is logged on the half the label loss trains on.
            self.labelled_half = "target" if config.mode == "target_only" else "source"
            self.metrics = {name: keras.metrics.Mean(name=name) for name in
                            ("label_loss", "domain_loss", "total_loss", f"{self.labelled_half}_acc",
                             "domain_acc")}

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def current_schedule(self):
        """The learning rate and GRL lambda that the next step uses."""
        lambda_ = (grl_lambda(progress(self.optimizer.iterations, self.total_steps), self.config.lambda_gamma,
                              self.config.lambda_max) if self.config.mode == "dann" else 0.0)
        return self.optimizer.learning_rate, lambda_

    @tf.function
    def run_steps(self, iterator, num_steps):
        """Runs num_steps training steps on batches from iterator, in one compiled call."""
        for _ in tf.range(num_steps):
            self.train_step(*next(iterator))

    def train_step(self, source_images, source_labels, target_images, target_labels):
        """One step on a batch: each replica trains on its part, the optimizer sums their gradients."""
        # Outside DANN, lambda stays 0: the domain classifier still learns, as a
        # probe of how separable the domains are, but cannot change the features.
        # Set once for all replicas, from the optimizer's global step.
        _, lambda_ = self.current_schedule()
        self.networks.gradient_reversal.set_lambda(lambda_)
        metrics = self.strategy.run(self.replica_step, args=(
            source_images, source_labels, target_images, target_labels))
        for name, metric in self.metrics.items():
            metric.update_state(self.strategy.reduce(tf.distribute.ReduceOp.SUM, metrics[name], axis=None))

    def replica_step(self, *batch):
        """Updates the weights with this replica's part of the batch; returns its share of the metrics."""
        # Equal slices, each with as many source as target images, are
        # independent branches of the graph that TensorFlow runs side by side.
        slices = [dann_step.gradients(self.networks, self.variables, part, self.labelled_half,
                                      self.config.domain_loss_weight, labelled_count=self.config.batch_size // 2,
                                      batch_count=self.config.batch_size, scale_loss=self.optimizer.scale_loss)
                  for part in zip(*(tf.split(tensor, self.slices) for tensor in batch))]
        gradients = [tf.add_n(list(parts)) for parts in zip(*(slice_gradients for slice_gradients, _ in slices))]
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        return {name: tf.add_n([values[name] for _, values in slices]) for name in self.metrics}

    @tf.function
    def evaluate_batch(self, images, labels):
        """The label logits, the summed label loss and the domain logits of one batch."""
        # Slices side by side, as in training. The last batch may be any size:
        # one smaller than the slice count is not cut, since an empty slice
        # fails in oneDNN's convolution. Traced per batch shape, so the count is known.
        count = images.shape[0]
        parts = ([images] if count is None or count < self.slices else
                 tf.split(images, [(count + part) // self.slices for part in range(self.slices)]))
        label_logits, domain_logits = [], []
        for part in parts:
            features = self.networks.feature_extractor(part, training=False)
            label_logits.append(self.networks.label_classifier(features, training=False))
            domain_logits.append(self.networks.domain_classifier(features, training=False))
        label_logits, domain_logits = tf.concat(label_logits, 0), tf.concat(domain_logits, 0)
        return label_logits, tf.reduce_sum(cross_entropies(labels, label_logits)), domain_logits

    @contextlib.contextmanager
    def evaluation_weights(self):
        """Inside it, the networks hold the weights to evaluate and export.

        With ema_momentum > 0 those are the optimizer's moving averages, swapped
        in for the duration (as keras.callbacks.SwapEMAWeights does); training
        continues from the weights themselves. Otherwise, the weights.
        """
        averages = moving_averages(self.optimizer)
        if averages is None:
            yield
            return
        current = [variable.numpy() for variable in self.variables]
        for variable, average in zip(self.variables, averages):
            variable.assign(average)
        try:
            yield
        finally:
            for variable, value in zip(self.variables, current):
                variable.assign(value)

    def weights_are_finite(self):
        return all(bool(tf.reduce_all(tf.math.is_finite(variable))) for variable in self.variables)
