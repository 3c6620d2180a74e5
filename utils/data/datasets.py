"""The two inputs of MNIST-M: MNIST digits and the BSDS500 train images.

Each loader reads a local file when given a path and downloads otherwise.
Every problem with an input raises DataError, whose message names the file
and says how to fix it, so that scripts can print it as one line.
"""

import contextlib
import io
import os
import posixpath
import tarfile
import zipfile
import zlib

import numpy as np
from PIL import Image
from utils.errors import DataError


BSDS_FILE = "BSR_bsds500.tgz"
# Where BSDS_FILE is downloaded from, tried in order. Each location is here
# because a public record shows it serving this file; BSDS_SHA256 rejects
# anything else a location may serve.
BSDS_URLS = (
    # Berkeley's current address: the address of the paper's era (next) answers
    # with redirects to it, as a wget log in PaddlePaddle/docs shows
    # (doc/paddle/tutorial/cv_case/super_resolution_sub_pixel/super_resolution_sub_pixel.rst).
    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
    # The address of the paper's era, kept in case Berkeley moves the file again
    # and redirects from here as it did before; tensorpack/tensorpack
    # (tensorpack/dataflow/dataset/bsds500.py) records the archive's size for it.
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
    # The Internet Archive's capture of March 2016: the BSDS500 download that the
    # README of liushuai1998/IJCN links, and the capture of Berkeley's page that
    # BIDS/BSDS500 (a copy of the data set's files) links.
    "https://web.archive.org/web/20160306133802/"
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
)
# The official archive (70,763,455 bytes), as projects that download it from
# BSDS_URLS[0] pin it. A local copy is read without this check: an
# images-only repack of the archive, with another sha256, serves as well.
BSDS_SHA256 = "97e49d31764f3912f0c4122707d53062ac9e783ba0f095e447a4d53c1a41af8e"
BSDS_TRAIN_FOLDER = "BSR/BSDS500/data/images/train"
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
MIN_BACKGROUND_SIZE = 28  # MNIST-M takes 28x28 crops.

MNIST_FIX = ("Point --mnist (config mnist_path) at a Keras-layout mnist.npz, "
             "or leave it empty to download MNIST.")
BSDS_FIX = ("Point --bsds (config bsds_path) at the official BSR_bsds500.tgz or at the folder "
            "holding its extracted BSR/ tree, or leave it empty to download it.")

# What a damaged zip or gzip container raises while it is read: the zip and
# tar modules, zlib and gzip (an OSError) do not share a base class.
_CONTAINER_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, tarfile.TarError)




def brief_error(error):
    """The error's type and first sentence: library messages can run over lines and give advice that does not apply."""
    first_line = (str(error).splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line.split('. ')[0].rstrip(':.')}"


def read_npz(path, keys, how_to_fix):
    """Returns {key: array} for `keys` from the npz file at `path`, never unpickling.

    Raises DataError if the file is missing, is not a readable npz archive
    (truncated, corrupt, a single .npy, pickled objects) or lacks a key.
    """
    if not os.path.isfile(path):
        raise DataError(f"'{path}' does not exist or is not a file. {how_to_fix}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"'{path}' holds a single array, not an npz archive. {how_to_fix}")
        with archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise DataError(f"'{path}' has no {', '.join(missing)} (it holds: "
                                f"{', '.join(archive.files) or 'nothing'}). {how_to_fix}")
            # Members are decompressed lazily, so read them all here, where a
            # damaged member fails inside this try.
            return {key: archive[key] for key in keys}
    except DataError:
        raise
    except _CONTAINER_ERRORS as error:
        raise DataError(f"'{path}' is not a readable npz file ({brief_error(error)}); "
                        f"it may be truncated or corrupt. {how_to_fix}") from error


def check_array(array, name, dtype, shape, source, how_to_fix):
    """Raises DataError unless `array` has `dtype` and `shape`.

    `dtype` may be a family such as np.integer; None in `shape` matches any length.
    """
    shape_matches = array.ndim == len(shape) and all(
        expected in (None, actual) for expected, actual in zip(shape, array.shape))
    if not np.issubdtype(array.dtype, dtype) or not shape_matches:
        wanted_shape = "(" + ", ".join("N" if length is None else str(length) for length in shape) + ")"
        raise DataError(f"'{source}': {name} is {array.dtype} of shape {array.shape}, expected "
                        f"{dtype.__name__} of shape {wanted_shape}. {how_to_fix}")


def check_labels(labels, images, name, source, how_to_fix):
    """Raises DataError unless there is one label in 0..9 per image."""
    if len(labels) != len(images):
        raise DataError(f"'{source}': {name} has {len(labels)} labels for {len(images)} images. {how_to_fix}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"'{source}': {name} holds labels outside 0..9. {how_to_fix}")


def load_mnist(path=None):
    """Returns (x_train, y_train, x_test, y_test) of MNIST.

    path: a file in the Keras mnist.npz layout ((N, 28, 28) uint8 images,
    (N,) integer labels); None or "" downloads it with
    keras.datasets.mnist.load_data().
    """
    if path:
        arrays, source = read_npz(path, MNIST_KEYS, MNIST_FIX), path
    else:
        arrays, source = _download_mnist(), "keras.datasets.mnist"
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        check_array(images, f"x_{split}", np.uint8, (None, 28, 28), source, MNIST_FIX)
        check_array(labels, f"y_{split}", np.integer, (None,), source, MNIST_FIX)
        check_labels(labels, images, f"y_{split}", source, MNIST_FIX)
    return tuple(arrays[key] for key in MNIST_KEYS)


def load_bsds_train_images(path=None, download_dir="data/downloads"):
    """Returns the BSDS500 train images as (H, W, 3) uint8 RGB arrays, sorted by file name.

    path: the official BSR_bsds500.tgz (read in place, not extracted), a
    folder holding its extracted BSR/ tree, or the train image folder itself;
    None or "" downloads the archive into `download_dir`. Only
    BSR/BSDS500/data/images/train/*.jpg are used: Thumbs.db, val and test are not.
    """
    if not path:
        path = _download_bsds(download_dir)
    if os.path.isdir(path):
        named_bytes = _read_folder(path)
    elif os.path.isfile(path):
        named_bytes = _read_tarball(path)
    else:
        raise DataError(f"'{path}' does not exist. {BSDS_FIX}")
    if not named_bytes:
        raise DataError(f"'{path}' holds no BSDS500 train images ({BSDS_TRAIN_FOLDER}/*.jpg). {BSDS_FIX}")
    # Sorting by file name makes the order, and so the seeded crops, the same
    # for the archive and for its extracted folder.
    return [_decode(name, data, path) for name, data in sorted(named_bytes)]


def _is_train_jpeg(member_name):
    folder, name = posixpath.split(member_name.removeprefix("./"))
    return folder == BSDS_TRAIN_FOLDER and name.lower().endswith(".jpg")


def _read_tarball(path):
    """Returns [(file name, JPEG bytes)] of the train images in the archive."""
    try:
        with tarfile.open(path, "r:*") as archive:
            return [(posixpath.basename(member.name), archive.extractfile(member).read())
                    for member in archive if member.isfile() and _is_train_jpeg(member.name)]
    except _CONTAINER_ERRORS as error:
        raise DataError(f"'{path}' is not a readable .tgz archive ({brief_error(error)}); "
                        f"it may be truncated or corrupt: download it again. {BSDS_FIX}") from error


def _read_folder(path):
    """Returns [(file name, JPEG bytes)] from the first candidate folder that holds JPEGs."""
    for folder in (os.path.join(path, BSDS_TRAIN_FOLDER),
                   os.path.join(path, BSDS_TRAIN_FOLDER.removeprefix("BSR/")), path):
        names = [name for name in os.listdir(folder)
                 if name.lower().endswith(".jpg")] if os.path.isdir(folder) else []
        if names:
            return [(name, _read_bytes(os.path.join(folder, name))) for name in names]
    return []


def _read_bytes(path):
    with open(path, "rb") as stream:
        return stream.read()


def _decode(name, data, source):
    """Decodes one image to (H, W, 3) uint8 RGB, raising DataError if it cannot be used."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # convert("RGB") repeats a grayscale channel three times and drops
            # an alpha channel, so every background has three color channels.
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"Cannot decode '{name}' in '{source}' as an image ({brief_error(error)}); "
                        f"the file may be damaged: download it again. {BSDS_FIX}") from error
    height, width, _ = pixels.shape
    if height < MIN_BACKGROUND_SIZE or width < MIN_BACKGROUND_SIZE:
        raise DataError(f"'{name}' in '{source}' is {height}x{width} pixels, smaller than the "
                        f"{MIN_BACKGROUND_SIZE}x{MIN_BACKGROUND_SIZE} crops MNIST-M takes. {BSDS_FIX}")
    return pixels


def _download_mnist():
    # Keras is imported here because loading TensorFlow takes seconds and
    # only a download needs it; set up first, as in the scripts.
    from utils.runtime import startup

    startup.set_up()
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:  # Keras raises a bare Exception when the fetch fails.
        raise DataError(f"Cannot download MNIST with keras.datasets.mnist ({error}). Check the internet "
                        f"connection, or download mnist.npz by hand. {MNIST_FIX}") from error
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _download_bsds(download_dir):
    """Downloads BSR_bsds500.tgz into `download_dir` from the first of BSDS_URLS that serves it; returns its path.

    A file already there is used when its sha256 is BSDS_SHA256 (Keras
    downloads it again otherwise). A location fails when it cannot be reached
    or serves a file with another sha256; then the next one is tried.
    """
    from utils.runtime import startup

    startup.set_up()
    import keras

    folder = os.path.abspath(download_dir)
    # get_file falls back to /tmp/.keras when its cache folder does not exist yet.
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, BSDS_FILE)
    failures = []
    for url in BSDS_URLS:
        try:
            return keras.utils.get_file(BSDS_FILE, origin=url, file_hash=BSDS_SHA256, hash_algorithm="sha256",
                                        cache_dir=folder, cache_subdir="")
        except Exception as error:  # Keras raises a bare Exception when the fetch fails, ValueError on a wrong hash.
            # get_file keeps a download whose hash is wrong: remove it, so that
            # nobody takes it for the archive (--bsds would read it unchecked).
            with contextlib.suppress(FileNotFoundError):
                os.remove(target)
            # Keras's fetch errors repeat the URL, which the message already names.
            failures.append(f"{url} ({brief_error(error).replace(f' on {url}', '')})")
    raise DataError(f"Cannot download {BSDS_FILE} from any of its locations: {'; '.join(failures)}. "
                    f"Download it by hand from one of them and pass it with --bsds PATH (config bsds_path), "
                    f"or save it as '{target}', where it is used if its sha256 is {BSDS_SHA256}.")
