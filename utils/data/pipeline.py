"""tf.data input pipelines over uint8 images, in memory or decoded from files batch by batch.

Images stay uint8 until a batch is drawn; each batch is then converted to
3-channel float32 and normalized as (x - pixel_mean) / 255, the
normalization of the reference code. MNIST digits become RGB by repeating
the gray channel, and are optionally binarized (x > 0 -> 255) to match the
digit strokes inside MNIST-M, which are binarized by construction.
Training can also draw each source digit in two random colors
(random_colors), an augmentation the `long` preset uses. Images from
folders (utils/data/image_files.py) come already as (N, H, W, channels).
"""

import copy
import dataclasses

import tensorflow as tf


def binarize_pixels(images):
    """uint8 batch -> 255 where a pixel value is > 0, else 0 (channel by channel)."""
    images = tf.convert_to_tensor(images)
    return tf.where(images > 0, tf.constant(255, tf.uint8), tf.constant(0, tf.uint8))


def source_to_rgb(images, binarize):
    """uint8 MNIST batch (N, 28, 28) or (N, 28, 28, 1) -> uint8 (N, 28, 28, 3)."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[..., tf.newaxis]
    if binarize:
        images = binarize_pixels(images)
    return tf.repeat(images, 3, axis=-1)


def normalize(images, pixel_mean):
    """uint8 RGB batch -> float32 (x - pixel_mean) / 255."""
    return (tf.cast(images, tf.float32) - tf.constant(pixel_mean, tf.float32)) / 255.0


def random_colors(images, seed, part=0, parts=1):
    """uint8 RGB batch -> float32 in 0..255, each image's black and white replaced by random colors.

    Each image draws a background color and a stroke color, each channel
    uniform in 0..255, and its pixels move linearly between the two, so
    about half the digits come out darker than their background. The
    colors depend on `seed` alone, so a resumed run draws the same ones again.
    With parts > 1, `images` are part `part` of a batch cut into `parts`
    equal parts, and get that part of the colors drawn for the whole batch.
    """
    background_seed, stroke_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    count = tf.shape(images)[0]
    shape = tf.stack([count * parts, 1, 1, 3])
    background = tf.random.stateless_uniform(shape, background_seed, 0.0, 255.0)[part * count:][:count]
    stroke = tf.random.stateless_uniform(shape, stroke_seed, 0.0, 255.0)[part * count:][:count]
    return background + (stroke - background) * (tf.cast(images, tf.float32) / 255.0)


def filled_variable(array, name, rows_at_once=1024):
    """A tf.Variable holding `array`, copied into it a block of rows at a time.

    tf.Variable(array) holds three copies for a moment (the array, the tensor
    converted from it, the variable): 122 MB more at the peak for MNIST-M's
    training images, measured. Filled by blocks, the peak holds one block more.
    """
    variable = tf.Variable(tf.zeros(array.shape, array.dtype), trainable=False, name=name)
    for start in range(0, len(array), rows_at_once):
        rows = tf.range(start, min(start + rows_at_once, len(array)))
        variable.scatter_update(tf.IndexedSlices(tf.constant(array[start:start + rows_at_once]), rows))
    return variable


class Domain:
    """One domain's images and labels, with how to turn a uint8 batch into model input.

    Labels of -1 mark images without a label (a target folder without class
    subfolders): such a domain trains the domain classifier only.
    """

    def __init__(self, images, labels, is_mnist, binarize=False):
        # Variables rather than constants: a tf.data function captures a
        # variable by reference, but copies a captured constant into its graph,
        # which held a second copy of every training image (190 MB resident).
        self.images = filled_variable(images, "images")
        self.labels = tf.Variable(tf.cast(labels, tf.int32), trainable=False, name="labels")
        self.is_mnist = is_mnist
        self.binarize = binarize

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def labelled(self):
        return len(self) > 0 and bool(tf.reduce_all(self.labels >= 0))

    def load(self, indices):
        """The uint8 images at `indices`."""
        return tf.gather(self.images, indices)

    def __getitem__(self, part):
        """The uint8 RGB pixels of images[part] (a slice) as a network takes them, as a NumPy array:
        so that a domain is read in batches as the image arrays are (utils/evaluation)."""
        indices = tf.range(*part.indices(len(self)))
        return self.pixels(self.load(indices)).numpy()

    def subset(self, indices):
        """The images at `indices`, with their labels: a held-out part."""
        part = copy.copy(self)
        part.images = tf.Variable(tf.gather(self.images, indices), trainable=False, name="images")
        part.labels = tf.Variable(tf.gather(self.labels, indices), trainable=False, name="labels")
        return part

    def with_labels(self, labels):
        """The same images with other labels (reverse validation's self-labelled target)."""
        relabelled = copy.copy(self)
        relabelled.labels = tf.Variable(tf.cast(labels, tf.int32), trainable=False, name="labels")
        return relabelled

    def pixels(self, images):
        """uint8 batch -> the uint8 RGB pixels a network takes: gray digits repeated, binarized if set."""
        if self.is_mnist:
            return source_to_rgb(images, self.binarize)
        return binarize_pixels(images) if self.binarize else images

    def prepare(self, images, pixel_mean, color_seed=None, part=0, parts=1):
        """uint8 batch -> normalized float32; with color_seed, in random colors (random_colors)."""
        images = self.pixels(images)
        if color_seed is not None:
            images = random_colors(images, color_seed, part, parts)
        return normalize(images, pixel_mean)

    def gather(self, indices, pixel_mean, color_seed=None, part=0, parts=1):
        return (self.prepare(self.load(indices), pixel_mean, color_seed, part, parts),
                tf.gather(self.labels, indices))


class FileDomain(Domain):
    """A domain too large for memory: image files decoded each time a batch draws them.

    `decode` maps one file path (a string tensor) to a uint8 (H, W, C) image
    of a fixed shape (utils/image_folders.decode_file). The training stream
    draws several batches at once (training_dataset's parallel map), so
    decoding runs on all cores while the step trains.
    """

    def __init__(self, paths, labels, decode, image_shape, binarize=False):
        self.paths = tf.constant(paths, tf.string)
        self.labels = tf.cast(tf.constant(labels), tf.int32)
        self.decode = decode
        self.image_shape = tuple(image_shape)
        self.is_mnist = False
        self.binarize = binarize

    def subset(self, indices):
        part = copy.copy(self)
        part.paths, part.labels = tf.gather(self.paths, indices), tf.gather(self.labels, indices)
        return part

    def load(self, indices):
        return tf.map_fn(self.decode, tf.gather(self.paths, indices),
                         fn_output_signature=tf.TensorSpec(self.image_shape, tf.uint8))


@dataclasses.dataclass
class DomainData:
    """What a run trains and evaluates on: both domains' train and test parts, and the pixel mean."""

    source: Domain
    target: Domain
    source_test: Domain
    target_test: Domain
    pixel_mean: list  # Per channel, in 0..255, over the images as training feeds them.
    # Source train images held out of training (config.source_validation_fraction), or None.
    source_validation: Domain = None


# Folded into the seed, so each domain's order and the colors are independent.
SOURCE_STREAM, TARGET_STREAM, COLOR_STREAM = 0, 1, 2


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


def training_dataset(source, target, half_batch, pixel_mean, seed, start_step=0,
                     color_source=False, parts=1, part_ids=(0,)):
    """Endless batches of (source_x, source_y, target_x, target_y), half_batch images each.

    Source and target are shuffled independently, each with a new order
    every epoch of its own; `start_step` skips the batches a resumed run has
    already trained on. color_source: the source images in random colors
    (random_colors), drawn from the seed and the step.

    For replicas (tf.distribute): each step's batch is cut into `parts`
    equal parts, each with half_batch / parts source and as many target
    images, and the dataset gives, step after step, the parts numbered
    `part_ids` in turn. Together the parts are the batch one device trains on.
    """
    color_stream = tf.constant([seed, COLOR_STREAM], tf.int64)

    def draw(source_indices, target_indices, step, part=0):
        color_seed = (tf.random.experimental.stateless_fold_in(color_stream, step)
                       if color_source else None)
        return (*source.gather(source_indices, pixel_mean, color_seed, part, parts),
                *target.gather(target_indices, pixel_mean))

    def cut(source_indices, target_indices, step):
        """This pipeline's parts of one step's indices, one element each."""
        chosen = tf.constant(part_ids, tf.int32)
        return tf.data.Dataset.from_tensor_slices((
            tf.gather(tf.reshape(source_indices, [parts, -1]), chosen),
            tf.gather(tf.reshape(target_indices, [parts, -1]), chosen),
            tf.fill(tf.shape(chosen), step), chosen))

    indices = tf.data.Dataset.zip((
        _index_batches(len(source), half_batch, seed, SOURCE_STREAM, start_step),
        _index_batches(len(target), half_batch, seed, TARGET_STREAM, start_step),
        tf.data.Dataset.range(start_step, 2**62)))
    if parts > 1:  # One replica takes whole batches, without a dataset per step.
        indices = indices.flat_map(cut)
    # Two steps ahead are enough to hide the gather behind the training step;
    # a larger buffer only holds more float images in memory. Batches decoded
    # from files (FileDomain) are drawn several at a time, kept in order, so
    # that decoding uses every core and a batch stays a function of its step.
    streamed = isinstance(source, FileDomain) or isinstance(target, FileDomain)
    parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True) if streamed else {}
    return indices.map(draw, **parallel).prefetch(2 * len(part_ids))


def evaluation_dataset(domain, batch_size, pixel_mean):
    """One pass over a domain in order, as normalized (images, labels) batches."""
    def draw(indices):
        return domain.gather(indices, pixel_mean)

    # One batch drawn ahead hides the gather behind the evaluation of the last;
    # AUTOTUNE's larger buffers held up to 170 MB of float images.
    return tf.data.Dataset.range(len(domain)).batch(batch_size).map(draw).prefetch(1)
