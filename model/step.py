"""The DANN training step: the losses, the GRL's strength, the slices of a batch and the metrics.

A batch is half source and half target. One pass of the feature extractor
serves both halves; the label loss sees the labelled half only (source, or
target in target_only mode), and the domain loss sees both:

    total_loss = label_loss + domain_loss_weight * domain_loss

The gradient reversal layer in front of the domain classifier multiplies the
domain loss's gradient by -lambda on its way into the features, with lambda
following the paper's schedule (utils/schedules.py). train.py's Trainer runs
this step in its loop; this file holds the maths only.

Under a tf.distribute strategy each replica trains on an equal part of the
batch, and the losses are scaled so that the replicas' summed gradients are
the whole batch's gradient (train_step; docs/distributed.md).
"""

import contextlib

import keras
import tensorflow as tf

from model.networks import DANN
from utils import schedules, system
from utils.distribution import DistributionError


class DANNStep:
    """The networks, optimizer and metrics of one run, and the compiled step that trains them.

    Everything is built under `strategy` (tf.distribute; default: TensorFlow's
    default strategy, one device), so the step runs on one device, on several,
    or on several machines with the same code and the same maths.
    """

    def __init__(self, config, total_steps, strategy=None):
        self.config = config
        self.total_steps = total_steps
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if (config.batch_size // 2) % replicas:
            raise DistributionError(f"batch_size {config.batch_size} does not split evenly across "
                                    f"{replicas} replicas: its half ({config.batch_size // 2} source and "
                                    f"as many target images) must be a multiple of {replicas}.")
        self.shards = system.batch_shards(config.batch_shards, config.batch_size // 2 // replicas,
                                          one_replica=replicas == 1)
        if (config.batch_size // 2 // replicas) % self.shards:
            raise DistributionError(f"batch_shards {self.shards} does not divide each replica's half "
                                    f"batch ({config.batch_size // 2 // replicas} images).")
        with self.strategy.scope():
            self.networks = DANN(config)
            self.variables = self.networks.trainable_variables
            # With ema_momentum, the optimizer also keeps a moving average of the
            # weights, which evaluation and export use (evaluation_weights).
            self.optimizer = schedules.paper_optimizer(config, total_steps)
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
        progress = schedules.progress(self.optimizer.iterations, self.total_steps)
        strength = (schedules.grl_lambda(progress, self.config.lambda_gamma, self.config.lambda_max)
                    if self.config.mode == "dann" else 0.0)
        return self.optimizer.learning_rate, strength

    @tf.function
    def run_steps(self, iterator, num_steps):
        """Runs num_steps training steps on batches from iterator, in one compiled call."""
        for _ in tf.range(num_steps):
            self.train_step(*next(iterator))

    def train_step(self, source_images, source_labels, target_images, target_labels):
        """One step on a batch: each replica trains on its part, the optimizer sums their gradients.

        Each part holds as many source as target images. Every loss is a sum
        over the part's images divided by the whole batch's count
        (tf.nn.compute_average_loss), so the gradients the optimizer sums
        across replicas (Keras' all-reduce) are the whole batch's gradient,
        whatever the number of replicas.
        """
        # Outside DANN, lambda stays 0: the domain classifier still learns, as a
        # probe of how separable the domains are, but cannot change the features.
        # Set once for all replicas, from the optimizer's global step.
        _, strength = self.current_schedule()
        self.networks.gradient_reversal.set_strength(strength)
        metrics = self.strategy.run(self.replica_step, args=(
            source_images, source_labels, target_images, target_labels))
        for name, metric in self.metrics.items():
            metric.update_state(self.strategy.reduce(tf.distribute.ReduceOp.SUM, metrics[name], axis=None))

    def replica_step(self, source_images, source_labels, target_images, target_labels):
        """Updates the weights with this replica's part of the batch; returns its share of the metrics."""
        # Equal slices, each with as many source as target images, are
        # independent branches of the graph that TensorFlow runs side by side.
        # Their gradients add up to the gradient of the replica's part.
        batch = (source_images, source_labels, target_images, target_labels)
        slices = [self.slice_gradients(*part) for part in
                  zip(*(tf.split(tensor, self.shards) for tensor in batch))]
        gradients = [tf.add_n(list(parts))
                     for parts in zip(*(slice_gradients for slice_gradients, _ in slices))]
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        return {name: tf.add_n([values[name] for _, values in slices]) for name in self.metrics}

    def slice_gradients(self, source_images, source_labels, target_images, target_labels):
        """Gradients of the DANN loss on one slice of the batch, and its share of the metrics.

        Shares are sums over the slice divided by the whole batch's count: the
        shares of all slices of all replicas add up to the batch's means.
        """
        half = tf.shape(source_images)[0]
        images = tf.concat([source_images, target_images], axis=0)
        domain_labels = tf.concat([tf.zeros([half], tf.int32), tf.ones([half], tf.int32)], axis=0)
        labelled_count = self.config.batch_size // 2  # Of the whole batch, over all replicas.
        with tf.GradientTape() as tape:
            # One pass of the feature extractor over both halves.
            features = self.networks.feature_extractor(images, training=True)
            label_logits = self.networks.label_classifier(features, training=True)
            domain_logits = self.networks.domain_classifier(features, training=True)
            if self.labelled_half == "target":
                labels, labelled_logits = target_labels, label_logits[half:]
            else:
                labels, labelled_logits = source_labels, label_logits[:half]
            label_loss = tf.nn.compute_average_loss(cross_entropies(labels, labelled_logits),
                                                    global_batch_size=labelled_count)
            domain_loss = tf.nn.compute_average_loss(cross_entropies(domain_labels, domain_logits),
                                                     global_batch_size=self.config.batch_size)
            # The domain loss is not weighted by lambda: lambda reaches only the
            # features, through the GRL, and the domain classifier learns at the
            # full rate. The JMLR paper's general update (eq. 15) scales the
            # domain classifier's step by lambda too, but its experiments
            # (section 5.2.2) update that classifier with a fixed lambda of 1
            # so that it trains as fast as the label classifier.
            total_loss = label_loss + self.config.domain_loss_weight * domain_loss
            # Under mixed_float16 the optimizer scales the loss up so that small gradients do
            # not underflow in float16, and scales the gradients back down before applying
            # them; otherwise scale_loss returns the loss as it is.
            scaled_loss = self.optimizer.scale_loss(total_loss)
        metrics = {"label_loss": label_loss, "domain_loss": domain_loss, "total_loss": total_loss,
                   f"{self.labelled_half}_acc": correct(labels, labelled_logits) / labelled_count,
                   "domain_acc": correct(domain_labels, domain_logits) / self.config.batch_size}
        return tape.gradient(scaled_loss, self.variables), metrics

    @tf.function
    def evaluate_batch(self, images, labels, domain):
        """Number correct, summed loss and number the domain classifier gets right, on one batch."""
        # Slices side by side, as in training. The last batch may be any size:
        # one smaller than the slice count is not cut, since an empty slice
        # fails in oneDNN's convolution. Traced per batch shape, so the count is known.
        count = images.shape[0]
        parts = ([images] if count is None or count < self.shards else
                 tf.split(images, [(count + shard) // self.shards for shard in range(self.shards)]))
        label_logits, domain_logits = [], []
        for part in parts:
            features = self.networks.feature_extractor(part, training=False)
            label_logits.append(self.networks.label_classifier(features, training=False))
            domain_logits.append(self.networks.domain_classifier(features, training=False))
        label_logits, domain_logits = tf.concat(label_logits, 0), tf.concat(domain_logits, 0)
        domain_labels = tf.fill(tf.shape(labels), domain)
        return (correct(labels, label_logits), tf.reduce_sum(cross_entropies(labels, label_logits)),
                correct(domain_labels, domain_logits))

    @contextlib.contextmanager
    def evaluation_weights(self):
        """Inside it, the networks hold the weights to evaluate and export.

        With ema_momentum > 0 those are the optimizer's moving averages, swapped
        in for the duration (as keras.callbacks.SwapEMAWeights does); training
        continues from the weights themselves. Otherwise, the weights.
        """
        # Under loss scaling the averages are kept by the optimizer it wraps.
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        if not optimizer.use_ema:
            yield
            return
        current = [variable.numpy() for variable in self.variables]
        for variable, average in zip(self.variables, optimizer._model_variables_moving_average):
            variable.assign(average)
        try:
            yield
        finally:
            for variable, value in zip(self.variables, current):
                variable.assign(value)

    def weights_are_finite(self):
        return all(bool(tf.reduce_all(tf.math.is_finite(variable))) for variable in self.variables)


def cross_entropies(labels, logits):
    """The cross-entropy of each example, in float32 under every precision (the logits layers
    compute in float32 already)."""
    logits = tf.cast(logits, tf.float32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def cross_entropy(labels, logits):
    return tf.reduce_mean(cross_entropies(labels, logits))


def correct(labels, logits):
    """How many examples the logits classify right, as a float."""
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.float32))


def accuracy(labels, logits):
    return correct(labels, logits) / tf.cast(tf.shape(labels)[0], tf.float32)
