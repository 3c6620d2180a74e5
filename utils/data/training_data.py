"""What a run trains and is tested on, built from its Config: MNIST -> MNIST-M, or image folders.

training_data(config) is the one entry point; both paths give a
pipeline.DomainData whose pixel mean is that of the images as training
feeds them (utils/data/pixel_mean.py), the normalization of the reference code.
"""

import os

import numpy as np

from utils.data import folders, image_files, pipeline, pixel_mean, splits
from utils.data.datasets import load_mnist
from utils.data.mnistm import build_mnistm, load_mnistm
from utils.errors import DataError

MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


def training_data(config, log=print):
    """The run's pipeline.DomainData: its image folders when it names them, else MNIST and MNIST-M."""
    if config.uses_folders:
        return folder_data(config, log)
    return mnist_data(config, *load_mnist_arrays(config, log))


def load_mnist_arrays(config, log=print):
    """MNIST and MNIST-M arrays; MNIST-M is built first when its file is missing."""
    mnist_path = config.mnist_path or None
    mnist = dict(zip(MNIST_KEYS, load_mnist(mnist_path)))
    if not os.path.exists(config.mnistm_path):
        log(f"{config.mnistm_path} not found: building MNIST-M (seed {config.mnistm_seed}).")
        build_mnistm(mnist_path, config.bsds_path or None, config.mnistm_path,
                     seed=config.mnistm_seed, download_dir=config.download_dir)
    return mnist, load_mnistm(config.mnistm_path)


def mnist_training_digits(config, count):
    """(train indices, source validation indices) of the MNIST train digits (source_validation_fraction)."""
    kept, held_out = splits.held_out_split(count, config.source_validation_fraction, config.held_out_seed,
                                           splits.SOURCE_VALIDATION_STREAM)
    if not len(held_out):
        raise DataError(f"source_validation_fraction {config.source_validation_fraction:g} of "
                        f"{count} digits holds none out: raise it, or set it to 0.")
    return kept, held_out


def mnist_pixel_mean(config, training_digits, mnistm_images):
    """The pixel mean an MNIST -> MNIST-M run normalizes with: the MNIST train digits it trains on
    (without its source validation part), as the config feeds them, and the MNIST-M train images."""
    return pixel_mean.fed_pixel_mean(
        pixel_mean.fed_sums(training_digits, 3, config.binarize_source, config.color_source),
        pixel_mean.fed_sums(mnistm_images, 3))


def mnist_data(config, mnist, mnistm):
    """The pipeline.DomainData of the MNIST (source) and MNIST-M (target) arrays.

    With source_validation_fraction, that part of the MNIST train digits is
    held out of training as the source validation part (reverse validation).
    """
    if config.source_validation_fraction:  # Else no copy: the digits are 47 MB.
        training, validation = mnist_training_digits(config, len(mnist["y_train"]))
        mnist = {**mnist, "x_train": mnist["x_train"][training], "y_train": mnist["y_train"][training],
                 "x_validation": mnist["x_train"][validation], "y_validation": mnist["y_train"][validation]}
    mean = mnist_pixel_mean(config, mnist["x_train"], mnistm["x_train"])

    def source(split):
        return pipeline.Domain(mnist[f"x_{split}"], mnist[f"y_{split}"], is_mnist=True,
                               binarize=config.binarize_source)

    def target(split):
        return pipeline.Domain(mnistm[f"x_{split}"], mnistm[f"y_{split}"], is_mnist=False)

    return pipeline.DomainData(source("train"), target("train"), source("test"), target("test"), mean,
                               source_validation=source("validation") if "x_validation" in mnist else None)


def require_mnistm(mnistm_path):
    """Raises DataError, saying how to get the file, when MNIST-M is not at `mnistm_path`."""
    if not os.path.isfile(mnistm_path):
        raise DataError(f"MNIST-M not found at '{mnistm_path}'. Build it with "
                        "`python create_mnistm.py`, or point --mnistm at it.")


def mnist_pixel_mean_from_files(config, mnist_path, mnistm_path):
    """mnist_pixel_mean of a run's config from the files; mnist_path "" downloads MNIST."""
    require_mnistm(mnistm_path)
    digits = load_mnist(mnist_path or None)[0]
    if config.source_validation_fraction:
        digits = digits[mnist_training_digits(config, len(digits))[0]]
    return mnist_pixel_mean(config, digits, load_mnistm(mnistm_path)["x_train"])


def load_test_sets(mnist_path, mnistm_path, binarize_source, mnistm_train=False):
    """{"mnist": (images, labels), "mnistm": (images, labels)}: both test sets as uint8 RGB, as training saw them.

    The export normalizes pixels itself, but the gray-to-RGB step (and the
    binarization the run was trained with) happens outside it, so it is done here.
    mnistm_train adds "mnistm_train": the MNIST-M train images and labels.
    mnist_path "" downloads MNIST. Raises DataError when a file is missing or damaged.
    """
    require_mnistm(mnistm_path)
    _, _, mnist_images, mnist_labels = load_mnist(mnist_path or None)
    mnistm = load_mnistm(mnistm_path)
    test_sets = {"mnist": (pipeline.source_to_rgb(mnist_images, binarize=binarize_source).numpy(), mnist_labels),
                 "mnistm": (mnistm["x_test"], mnistm["y_test"])}
    if mnistm_train:
        test_sets["mnistm_train"] = (mnistm["x_train"], mnistm["y_train"])
    return test_sets


def folder_classes(config):
    """The source folder's sorted class names, after checking that both training folders are given."""
    if not (config.source_dir and config.target_dir):
        raise DataError("Image folders need both --source_dir (labelled, one subfolder per class) and "
                        "--target_dir (images, labels not needed).")
    return folders.scan_source(config.source_dir).class_names


def scan_folders(config):
    """{part: ImageList} of the four parts (source, target and their tests), and the class names;
    with source_validation_fraction, a fifth: source_validation, held out of the source."""
    source = folders.scan_source(config.source_dir)
    class_names = source.class_names
    target = folders.scan_target(config.target_dir, class_names)
    parts = {"source": source, "target": target}
    for name, stream, test_folder in (("source", splits.SOURCE_TEST_STREAM, config.source_test_dir),
                                      ("target", splits.TARGET_TEST_STREAM, config.target_test_dir)):
        if test_folder:
            parts[f"{name}_test"] = (folders.scan_labelled_test(test_folder, class_names) if name == "source"
                                     else folders.scan_target(test_folder, class_names, "--target_test_dir", True))
        else:
            parts[name], parts[f"{name}_test"] = folders.held_out_split(
                parts[name], config.held_out_fraction, config.held_out_seed, stream)
    if config.source_validation_fraction:
        train, validation = splits.held_out_split(len(parts["source"]), config.source_validation_fraction,
                                                  config.held_out_seed, splits.SOURCE_VALIDATION_STREAM)
        if not len(train) or not len(validation):
            raise DataError(f"--source_dir '{config.source_dir}': {len(parts['source'])} training image(s) "
                            f"are too few to hold {config.source_validation_fraction:g} of them out for "
                            "validation. Add images, or set --source_validation_fraction 0.")
        source = parts["source"]
        parts["source"], parts["source_validation"] = source.subset(train), source.subset(validation)
    return parts, class_names


def folder_data(config, log=print):
    """A pipeline.DomainData from the run's image folders (config.class_names must be set from them).

    Images are decoded as utils/data/image_files.py says, held in memory up
    to in_memory_mb and streamed from disk above it. log receives one line
    per folder and the memory decision.
    """
    parts, class_names = scan_folders(config)
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
    image_files.check_training_fits(config, total_bytes, in_memory)
    image_files.check_decoding_fits(config.image_shape, "lower --image_size.")
    log(f"{total_megabytes:.0f} MB of pixels at {config.image_size}x{config.image_size}x{config.image_channels}: "
        + ("held in memory" if in_memory else f"above in_memory_mb ({config.in_memory_mb}), decoded from disk "
           "batch by batch") + ". Checking every image first.")
    domains, fed = {}, []
    for name, images in parts.items():
        binarize = name.startswith("source") and config.binarize_source
        labels_note = f"{len(config.class_names)} classes" if images.labelled else "no labels"
        log(f"  {name}: {len(images)} images ({labels_note})")
        array, sums = image_files.read_all(images, config.image_shape, keep=in_memory, binarize=binarize)
        domains[name] = (pipeline.Domain(array, images.labels, is_mnist=False, binarize=binarize) if in_memory
                         else pipeline.FileDomain(images.paths, images.labels,
                                                  lambda path: image_files.decode_file(path, config.image_shape),
                                                  config.image_shape, binarize=binarize))
        if name in ("source", "target"):
            colored = name == "source" and config.color_source
            fed.append((np.full(config.image_channels, pixel_mean.COLORED_MEAN * sums[1]), sums[1]) if colored
                       else sums)
    return pipeline.DomainData(domains["source"], domains["target"], domains["source_test"],
                               domains["target_test"], pixel_mean.fed_pixel_mean(*fed),
                               source_validation=domains.get("source_validation"))
