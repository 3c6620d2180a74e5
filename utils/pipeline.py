"""tf.data input pipelines over uint8 arrays kept in memory.

Images stay uint8 until a batch is drawn; each batch is then converted to
3-channel float32 and normalised as (x - pixel_mean) / 255, the
normalisation of the reference code. MNIST digits become RGB by repeating
the grey channel, and are optionally binarised (x > 0 -> 255) to match the
digit strokes inside MNIST-M, which are binarised by construction.
"""

import tensorflow as tf


def source_to_rgb(images, binarize):
    """uint8 MNIST batch (N, 28, 28) or (N, 28, 28, 1) -> uint8 (N, 28, 28, 3)."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[..., tf.newaxis]
    if binarize:
        images = tf.where(images > 0, tf.constant(255, tf.uint8), tf.constant(0, tf.uint8))
    return tf.repeat(images, 3, axis=-1)


def normalize(images, pixel_mean):
    """uint8 RGB batch -> float32 (x - pixel_mean) / 255."""
    return (tf.cast(images, tf.float32) - tf.constant(pixel_mean, tf.float32)) / 255.0


class Domain:
    """One domain's images and labels, with how to turn a uint8 batch into model input."""

    def __init__(self, images, labels, is_mnist, binarize=False):
        self.images = tf.constant(images)
        self.labels = tf.cast(tf.constant(labels), tf.int32)
        self.is_mnist = is_mnist
        self.binarize = binarize

    def __len__(self):
        return int(self.labels.shape[0])

    def prepare(self, images, pixel_mean):
        if self.is_mnist:
            images = source_to_rgb(images, self.binarize)
        return normalize(images, pixel_mean)

    def gather(self, indices, pixel_mean):
        return self.prepare(tf.gather(self.images, indices), pixel_mean), tf.gather(self.labels, indices)


SOURCE_STREAM, TARGET_STREAM = 0, 1  # Folded into the seed, so each domain has its own order.


def _index_batches(size, batch_size, seed, stream, start_step):
    """Endless batches of indices into one domain, from batch `start_step` on.

    The stream is every epoch's permutation laid end to end, epoch e shuffled
    with the stateless seed (seed, stream) folded with e. Batch s is therefore
    a pure function of (seed, stream, s): a resumed run recreates the stream
    at its step instead of saving the iterator (whose prefetched batches made
    each checkpoint 31 MB). The stream constant keeps the domains' orders
    independent: with seed + 1 for the target instead, seed k's target order
    would be seed k + 1's source order, and MNIST-M image i is made from
    MNIST digit i.
    """
    start = start_step * batch_size
    epochs = tf.data.Dataset.range(start // size, 2**62)
    stream_seed = tf.constant([seed, stream], tf.int64)

    def permutation(epoch):
        seeds = tf.random.experimental.stateless_fold_in(stream_seed, epoch)
        return tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64), seeds))

    # Shuffling indices, not images, keeps each epoch's order at 8 bytes an
    # image and lets each batch be one vectorised gather.
    return epochs.flat_map(permutation).skip(start % size).batch(batch_size, drop_remainder=True)


def training_dataset(source, target, half_batch, pixel_mean, seed, start_step=0):
    """Endless batches of (source_x, source_y, target_x, target_y), half_batch images each.

    Source and target are shuffled independently, each with a new order
    every epoch of its own; `start_step` skips the batches a resumed run has
    already trained on.
    """
    def draw(source_indices, target_indices):
        return (*source.gather(source_indices, pixel_mean),
                *target.gather(target_indices, pixel_mean))

    indices = tf.data.Dataset.zip((
        _index_batches(len(source), half_batch, seed, SOURCE_STREAM, start_step),
        _index_batches(len(target), half_batch, seed, TARGET_STREAM, start_step)))
    # Two batches ahead are enough to hide the gather behind the training step;
    # a larger buffer only holds more float images in memory.
    return indices.map(draw).prefetch(2)


def evaluation_dataset(domain, batch_size, pixel_mean):
    """One pass over a domain in order, as normalised (images, labels) batches."""
    def draw(indices):
        return domain.gather(indices, pixel_mean)

    return (tf.data.Dataset.range(len(domain)).batch(batch_size)
            .map(draw, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
