"""MNIST-M: MNIST digits blended over random crops of BSDS500 train images.

The recipe of Ganin & Lempitsky (2015) and its reference TF code: binarize
the MNIST digit into an RGB image d that is 255 where the pixel is > 0 and 0
elsewhere, take a random 28x28 crop c of a random BSDS500 train image, and
store uint8(|c - d|). The digit shows as the color negative of the texture.

The train split comes from the 60,000 MNIST train digits and the test split
from the 10,000 test digits, in MNIST order and with MNIST's labels. One
seeded generator draws every image index and crop corner, train split first,
so the same inputs and seed give byte-identical arrays.
"""

import collections
import hashlib
import os
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from utils.files import atomic_path, check_writable
from utils.plots import save_mnistm_preview
from utils.data import pixel_mean
from utils.data.datasets import check_array, check_labels, load_bsds_train_images, load_mnist, read_npz

CROP_SIZE = 28
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test", "pixel_mean")
MNISTM_FIX = "Delete it and run `python create_mnistm.py` to build it again."

CropPositions = collections.namedtuple("CropPositions", ["image_index", "row", "column"])
BuildSummary = collections.namedtuple(
    "BuildSummary", ["path", "preview_path", "sha256", "generation_seconds", "total_seconds"])


def draw_crop_positions(count, background_shapes, rng):
    """Draws for each of `count` digits a background index and the top-left corner of its crop.

    The corner is uniform over the chosen image's own valid positions, so
    landscape (321x481) and portrait (481x321) images are both cropped inside.
    """
    heights, widths = np.array([shape[:2] for shape in background_shapes]).T
    image_index = rng.integers(0, len(background_shapes), size=count)
    row = rng.integers(0, heights[image_index] - CROP_SIZE + 1)
    column = rng.integers(0, widths[image_index] - CROP_SIZE + 1)
    return CropPositions(image_index, row, column)


def gather_crops(backgrounds, positions):
    """Returns the (N, 28, 28, 3) uint8 crops at `positions`, looping over backgrounds, not digits."""
    crops = np.empty((len(positions.image_index), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for index, background in enumerate(backgrounds):
        chosen = np.flatnonzero(positions.image_index == index)
        # A view of every 28x28 window, shaped (rows, columns, 3, 28, 28):
        # indexing it copies only the chosen crops.
        windows = sliding_window_view(background, (CROP_SIZE, CROP_SIZE), axis=(0, 1))
        crops[chosen] = windows[positions.row[chosen], positions.column[chosen]].transpose(0, 2, 3, 1)
    return crops


def blend(digits, crops, chunk_size=2048):
    """Turns `crops` in place into uint8 |crop - d|, d = 255 on all channels where the digit is > 0, else 0.

    digits: (N, 28, 28) uint8; crops: (N, 28, 28, 3) uint8, overwritten and returned.
    """
    # For d in {0, 255}, |c - d| equals c XOR d on uint8 (c - 0 = c, and
    # 255 - c flips every bit of c), which needs no signed copy of 165 MB.
    # Chunks of a few thousand digits keep the three-channel mask in cache;
    # in place and chunked, this runs three times faster than one whole-array XOR.
    for start in range(0, len(digits), chunk_size):
        chunk = slice(start, start + chunk_size)
        binarized = np.where(digits[chunk] > 0, np.uint8(255), np.uint8(0))
        np.bitwise_xor(crops[chunk], np.repeat(binarized[..., None], 3, axis=3), out=crops[chunk])
    return crops


def make_mnistm_images(digits, backgrounds, rng):
    """Returns (MNIST-M images, the CropPositions used) for `digits`, drawing from `rng`."""
    positions = draw_crop_positions(len(digits), [image.shape for image in backgrounds], rng)
    return blend(digits, gather_crops(backgrounds, positions)), positions


def arrays_sha256(arrays):
    """Hex sha256 over the arrays in sorted key order: each key, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def preview_path_for(out_path):
    """data/mnist_m.npz -> data/mnist_m_preview.png."""
    return os.path.splitext(out_path)[0] + "_preview.png"


def build_mnistm(mnist_path, bsds_path, out_path, seed=42, download_dir="data/downloads", log=print):
    """Builds MNIST-M and writes it to `out_path` (npz) with a preview PNG beside it.

    mnist_path / bsds_path: local files as load_mnist and
    load_bsds_train_images take them; None or "" downloads into download_dir.
    The npz holds x_train (60000, 28, 28, 3) uint8, y_train (60000,) uint8,
    x_test (10000, 28, 28, 3) uint8, y_test (10000,) uint8 and pixel_mean (3,)
    float32. Both files are written atomically, and only once everything has
    succeeded, so a failure leaves neither. Returns a BuildSummary.
    """
    start = time.perf_counter()
    preview_path = preview_path_for(out_path)
    # Checked first, so that a bad output path fails before downloads and work.
    check_writable(out_path)
    check_writable(preview_path)

    log(f"Loading MNIST from {mnist_path or 'keras.datasets.mnist (download)'}")
    x_train, y_train, x_test, y_test = load_mnist(mnist_path)
    log(f"Loading BSDS500 train images from {bsds_path or 'a download (utils/sources.BSDS_URLS)'}")
    backgrounds = load_bsds_train_images(bsds_path, download_dir)

    log(f"Blending {len(x_train) + len(x_test)} digits over {len(backgrounds)} backgrounds (seed {seed})")
    generation_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    train_images, _ = make_mnistm_images(x_train, backgrounds, rng)
    test_images, _ = make_mnistm_images(x_test, backgrounds, rng)
    generation_seconds = time.perf_counter() - generation_start

    arrays = {"x_train": train_images, "y_train": y_train.astype(np.uint8),
              "x_test": test_images, "y_test": y_test.astype(np.uint8),
              "pixel_mean": np.asarray(pixel_mean.fed_pixel_mean(pixel_mean.fed_sums(x_train, 3),
                                                               pixel_mean.fed_sums(train_images, 3)), np.float32)}
    log(f"Writing {out_path} and {preview_path}")
    with atomic_path(out_path) as npz_temporary, atomic_path(preview_path) as preview_temporary:
        # A stream, because np.savez adds ".npz" to a path that lacks it.
        # Uncompressed: compression saves a fifth of the size but takes seconds to write and read.
        with open(npz_temporary, "wb") as stream:
            np.savez(stream, **arrays)
        save_mnistm_preview(preview_temporary, x_train, train_images)
    return BuildSummary(out_path, preview_path, arrays_sha256(arrays), generation_seconds,
                        time.perf_counter() - start)


def load_mnistm(path):
    """Returns {key: array} of an MNIST-M npz written by build_mnistm, checking its layout.

    Raises DataError naming the fix when the file is missing, damaged or not
    in the layout that build_mnistm writes.
    """
    arrays = read_npz(path, ARRAY_KEYS, MNISTM_FIX)
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        check_array(images, f"x_{split}", np.uint8, (None, CROP_SIZE, CROP_SIZE, 3), path, MNISTM_FIX)
        check_array(labels, f"y_{split}", np.uint8, (None,), path, MNISTM_FIX)
        check_labels(labels, images, f"y_{split}", path, MNISTM_FIX)
    check_array(arrays["pixel_mean"], "pixel_mean", np.float32, (3,), path, MNISTM_FIX)
    return arrays

