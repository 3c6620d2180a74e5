"""Image folders as DANN domains: decoded with TensorFlow, resized, held in memory or streamed.

Each file is read with tf.io.decode_image (PNG, JPEG, BMP, GIF's first
frame), as RGB, then resized to the configured side with bilinear
interpolation (image_dataset_from_directory's default) and, for
image_channels 1, turned grey. Images already at the configured size keep
their exact pixels, so MNIST written as PNGs trains on the npz's own pixels.

Memory: when the run's images take at most config.in_memory_mb megabytes
as uint8, they are decoded once and held in memory (pipeline.Domain), as
the MNIST arrays are. Above it, each batch is decoded from disk when the
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
from utils import folders, pipeline
from utils.reverse_validation import validation_split
from utils.sources import DataError

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


def pixel_sums(images, binarize):
    """Per-channel int64 sums of uint8 images (N, H, W, C), as binarised (x > 0 -> 255) when asked."""
    flat = images.reshape(-1, images.shape[-1])
    return (np.count_nonzero(flat, axis=0) * 255 if binarize else flat.sum(axis=0, dtype=np.int64))


def read_all(images, image_shape, keep, binarize=False):
    """Decodes every file of an ImageList: (uint8 array or None when not kept, per-channel sums)."""
    array = np.empty((len(images), *image_shape), np.uint8) if keep else None
    decoded = np.zeros(len(images), bool)
    sums = np.zeros(image_shape[-1], np.int64)
    for indices, batch in decoded_batches(images.paths, image_shape):
        decoded[indices] = True
        sums += pixel_sums(batch, binarize)
        if keep:
            array[indices] = batch
    check_all_decoded(images.paths, decoded)
    return array, sums


def scan(config):
    """{part: ImageList} of the four parts (source, target and their tests), and the class names;
    with source_validation_fraction, a fifth: source_validation, held out of the source."""
    source = folders.scan_source(config.source_dir)
    class_names = source.class_names
    target = folders.scan_target(config.target_dir, class_names)
    parts = {"source": source, "target": target}
    for name, stream, test_folder in (("source", 0, config.source_test_dir), ("target", 1, config.target_test_dir)):
        if test_folder:
            parts[f"{name}_test"] = (folders.scan_labelled_test(test_folder, class_names) if name == "source"
                                     else folders.scan_target(test_folder, class_names, "--target_test_dir", True))
        else:
            parts[name], parts[f"{name}_test"] = folders.held_out_split(
                parts[name], config.held_out_fraction, config.held_out_seed, stream)
    if config.source_validation_fraction:
        train, validation = validation_split(len(parts["source"]), config.source_validation_fraction,
                                             config.held_out_seed)
        if not len(train) or not len(validation):
            raise DataError(f"--source_dir '{config.source_dir}': {len(parts['source'])} training image(s) "
                            f"are too few to hold {config.source_validation_fraction:g} of them out for "
                            "validation. Add images, or set --source_validation_fraction 0.")
        source = parts["source"]
        parts["source"], parts["source_validation"] = source.subset(train), source.subset(validation)
    return parts, class_names


def load_folder_data(config, log=print):
    """A pipeline.DomainData from the run's image folders (config.class_names must be set from them).

    log receives one line per folder and the memory decision.
    """
    parts, class_names = scan(config)
    if class_names != config.class_names:
        raise DataError(f"--source_dir '{config.source_dir}' has the classes {', '.join(class_names)}, "
                        f"but the config says {', '.join(config.class_names) or 'none'}: set class_names "
                        "from the folder (train.py does).")
    if config.mode == "target_only" and not parts["target"].labelled:
        raise DataError(f"--mode target_only trains on target labels, and --target_dir "
                        f"'{config.target_dir}' has none: put its images in subfolders named after the "
                        f"source classes ({', '.join(config.class_names[:5])}...).")
    image_bytes = int(np.prod(config.image_shape))
    total_bytes = sum(len(images) for images in parts.values()) * image_bytes
    total_megabytes = total_bytes / 2**20
    in_memory = total_megabytes <= config.in_memory_mb
    check_training_fits(config, total_bytes, in_memory)
    check_decoding_fits(config.image_shape, "lower --image_size.")
    log(f"{total_megabytes:.0f} MB of pixels at {config.image_size}x{config.image_size}x{config.image_channels}: "
        + ("held in memory" if in_memory else f"above in_memory_mb ({config.in_memory_mb}), decoded from disk "
           "batch by batch") + ". Checking every image first.")
    domains, sums, pixel_count = {}, np.zeros(config.image_channels), 0
    for name, images in parts.items():
        binarize = name.startswith("source") and config.binarize_source
        labels_note = f"{len(config.class_names)} classes" if images.labelled else "no labels"
        log(f"  {name}: {len(images)} images ({labels_note})")
        array, part_sums = read_all(images, config.image_shape, keep=in_memory, binarize=binarize)
        domains[name] = (pipeline.Domain(array, images.labels, is_mnist=False, binarize=binarize) if in_memory
                         else pipeline.FileDomain(images.paths, images.labels,
                                                  lambda path: decode_file(path, config.image_shape),
                                                  config.image_shape, binarize=binarize))
        if name in ("source", "target"):
            # The mean of what training feeds: random colours average 127.5 on every channel.
            coloured = name == "source" and config.colour_source
            sums = sums + (127.5 * len(images) * image_bytes / config.image_channels if coloured else part_sums)
            pixel_count += len(images) * image_bytes // config.image_channels
    return pipeline.DomainData(domains["source"], domains["target"], domains["source_test"],
                               domains["target_test"], [float(value) for value in sums / pixel_count],
                               source_validation=domains.get("source_validation"))
