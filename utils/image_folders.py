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
the pixels for the pixel mean.
"""

import numpy as np
import tensorflow as tf

from utils import folders, pipeline
from utils.reverse_validation import validation_split
from utils.sources import DataError

DECODE_BATCH = 256


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


def decoded_batches(paths, image_shape):
    """Yields (indices, uint8 images) over the files that decode, in order, decoded in parallel.

    Files that fail are dropped here (ignore_errors) and named by
    check_all_decoded, which sees the indices that never came back.
    """
    dataset = (tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.range(len(paths))))
               .map(lambda path, index: (index, decode_file(path, image_shape)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .ignore_errors().batch(DECODE_BATCH).prefetch(2))
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
    total_megabytes = sum(len(images) for images in parts.values()) * image_bytes / 2**20
    in_memory = total_megabytes <= config.in_memory_mb
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
