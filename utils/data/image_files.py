"""Image files as a run reads them: decoded with TensorFlow and resized, every file checked, and
the memory a folder run needs checked before any of it is decoded.

Each file is read with tf.io.decode_image (PNG, JPEG, BMP, GIF's first
frame), as RGB, then resized to the configured side with bilinear
interpolation (image_dataset_from_directory's default) and, for
image_channels 1, turned gray. Images already at the configured size keep
their exact pixels, so MNIST written as PNGs trains on the npz's own pixels.

Memory (utils/data/training_data.folder_data): when the run's images take at
most config.in_memory_mb megabytes as uint8, they are decoded once and held
in memory (pipeline.Domain), as the MNIST arrays are. Above it, each batch is decoded from disk when the
training stream draws it (pipeline.FileDomain), in parallel, with no full
copy in memory. Either way one first pass decodes every file: it finds any
that cannot be decoded, and names it, before training starts, and it sums
the pixels for the pixel mean. Before it, a run that cannot fit in the
memory available is refused (check_training_fits).
"""

import os

import numpy as np
import tensorflow as tf

from model.networks import build_feature_extractor
from utils.data import pixel_mean
from utils.errors import DataError

DECODE_BATCH = 256
# Large images are decoded fewer at a time, so that a batch of them stays near this size.
DECODE_BATCH_BYTES = 64 * 2**20
FLOAT_BYTES = 4  # Networks and training batches are float32.


def decode_file(path, image_shape):
    """One image file (a string tensor path) -> uint8 (size, size, channels)."""
    size, _, channels = image_shape
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    same_size = tf.logical_and(tf.shape(image)[0] == size, tf.shape(image)[1] == size)
    image = tf.cond(same_size, lambda: tf.cast(image, tf.float32),
                    lambda: tf.image.resize(image, [size, size], method="bilinear"))
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def decode_batch_size(image_shape):
    """How many images decoded_batches decodes at a time: DECODE_BATCH, fewer for large images."""
    return int(np.clip(DECODE_BATCH_BYTES // np.prod(image_shape), 1, DECODE_BATCH))


def decoded_batches(paths, image_shape):
    """Yields (indices, uint8 images) over the files that decode, in order, decoded in parallel.

    Files that fail are dropped here (ignore_errors) and named by
    check_all_decoded, which sees the indices that never came back.
    """
    dataset = (tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.range(len(paths))))
               .map(lambda path, index: (index, decode_file(path, image_shape)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .ignore_errors().batch(decode_batch_size(image_shape)).prefetch(2))
    for indices, images in dataset:
        yield indices.numpy(), images.numpy()


def check_all_decoded(paths, decoded):
    """Raises DataError naming the first file that did not decode.

    The file is not decoded again to learn TensorFlow's reason: that would
    log a warning line of TensorFlow's own, and its message is internal text.
    """
    if decoded.all():
        return
    failed = [paths[index] for index in np.flatnonzero(~decoded)]
    others = f" (and {len(failed) - 1} more file(s))" if len(failed) > 1 else ""
    raise DataError(f"Cannot decode the image '{failed[0]}'{others}: it is not a readable PNG/JPEG/BMP/GIF. "
                    "Replace or remove it; no image is skipped silently.")


def available_memory():
    """Bytes of memory free for new allocations: Linux's MemAvailable, else all physical memory, or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits_in_memory(needed, what, remedy):
    """Raises DataError when `needed` bytes (what `what` takes) exceed the memory available now."""
    available = available_memory()
    if available is not None and needed > available:
        raise DataError(f"{what} would need {needed / 2**20:,.0f} MB of memory, and {available / 2**20:,.0f} "
                        f"MB are available: {remedy}")


def shape_text(image_shape):
    return "x".join(str(side) for side in image_shape)


def check_decoding_fits(image_shape, remedy):
    """Refuses, before decoding, images too large for one decoding batch, as uint8 and as float32, to fit."""
    count = decode_batch_size(image_shape)
    check_fits_in_memory(count * int(np.prod(image_shape)) * (1 + FLOAT_BYTES),
                         f"{count} decoded image(s) at {shape_text(image_shape)}", remedy)


def check_training_fits(config, pixel_bytes, in_memory):
    """Refuses, before decoding, a run that cannot fit in memory.

    Each amount is a lower bound of what training holds, so that only a run
    sure to fail is refused: the networks (trained_dense_bytes), one training
    batch (training_batch_bytes), and the pixels (pixel_bytes) when held in
    memory.
    """
    features, network = trained_dense_bytes(config)
    check_fits_in_memory(network, f"The first dense layers on the {features:,} features of "
                         f"{config.image_size}x{config.image_size} images, trained", "lower --image_size.")
    batch = training_batch_bytes(config)
    check_fits_in_memory(batch, f"A training batch of {config.batch_size} images at "
                         f"{shape_text(config.image_shape)} and its first convolution's output",
                         "lower --batch_size or --image_size.")
    if in_memory:
        check_fits_in_memory(pixel_bytes + batch, "The folders' pixels held in memory and a training batch",
                             "lower --in_memory_mb, to decode them from disk batch by batch, or --image_size.")


def trained_dense_bytes(config):
    """(feature count, bytes) of the dense layers on the features: float32 weights, their gradients,
    and the optimizer's copies (momentum, moving average). They grow with the image's area."""
    features = build_feature_extractor(config.image_shape, config.conv1_filters, config.conv2_filters,
                                       config.kernel_size).output_shape[-1]
    copies = 2 + (config.momentum > 0) + (config.ema_momentum > 0)
    return features, copies * features * (config.label_hidden_units + config.domain_hidden_units) * FLOAT_BYTES


def training_batch_bytes(config):
    """One training batch as float32, and its first convolution's output, which the step keeps for
    the gradients: in float32, or bfloat16 (2 bytes) in any other precision."""
    side = config.image_size - config.kernel_size + 1
    activation_bytes = FLOAT_BYTES if config.precision == "float32" else 2
    return config.batch_size * (int(np.prod(config.image_shape)) * FLOAT_BYTES
                                + side * side * config.conv1_filters * activation_bytes)


def read_all(images, image_shape, keep, binarize=False):
    """Decodes every file of an ImageList, checking that each decodes: (the uint8 array, or None
    when not kept; the per-channel sums and pixel count as training feeds them, pixel_mean.fed_sums)."""
    array = np.empty((len(images), *image_shape), np.uint8) if keep else None
    decoded = np.zeros(len(images), bool)
    sums, count = np.zeros(image_shape[-1]), 0
    for indices, batch in decoded_batches(images.paths, image_shape):
        decoded[indices] = True
        batch_sums, batch_count = pixel_mean.fed_sums(batch, image_shape[-1], binarize)
        sums, count = sums + batch_sums, count + batch_count
        if keep:
            array[indices] = batch
    check_all_decoded(images.paths, decoded)
    return array, (sums, count)
