"""Ganin's original MNIST-M test set, in the layout it was published in.

    DIR/mnist_m_test/00000000.png ...     9,001 RGB images of 32x32 pixels
    DIR/mnist_m_test_labels.txt           one line per image: "00000000.png 7"

The original images are MNIST digits padded by 2 pixels on each side before
blending, so the center 28x28 crop lines them up with MNIST and with the
28x28 MNIST-M that create_mnistm.py builds.
"""

import os

import numpy as np
from PIL import Image

from utils.errors import DataError
from utils.data.datasets import brief_error

IMAGE_FOLDER = "mnist_m_test"
LABELS_FILE = "mnist_m_test_labels.txt"
ORIGINAL_SIZE = 32
CROP_SIZE = 28
OFFICIAL_FIX = (f"Point --mnistm_official at the folder holding {IMAGE_FOLDER}/ and {LABELS_FILE} "
                "from Ganin's mnist_m.tar.gz, extracted as published.")


def load_official_mnistm_test(folder):
    """Returns (images (N, 28, 28, 3) uint8, labels (N,) uint8) in the order of the labels file.

    Each 32x32 image is center-cropped to 28x28. Raises DataError naming the
    file (and line) when the folder, the labels file or an image is missing,
    an image cannot be decoded or is not 32x32, or a label line does not parse.
    """
    labels_path = os.path.join(folder, LABELS_FILE)
    image_folder = os.path.join(folder, IMAGE_FOLDER)
    for path, kind in ((folder, "folder"), (labels_path, "labels file"), (image_folder, "image folder")):
        if not os.path.exists(path):
            raise DataError(f"The official MNIST-M {kind} '{path}' does not exist. {OFFICIAL_FIX}")
    names, labels = read_labels(labels_path)
    images = np.empty((len(names), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for index, name in enumerate(names):
        images[index] = center_crop(read_image(os.path.join(image_folder, name)))
    return images, np.array(labels, np.uint8)


def read_labels(path):
    """Parses "NAME.png LABEL" lines into ([names], [labels]); blank lines are skipped."""
    names, labels = [], []
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"Cannot read '{path}' ({brief_error(error)}). {OFFICIAL_FIX}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        label = fields[1] if len(fields) == 2 else ""
        if len(fields) != 2 or not label.isdigit() or not 0 <= int(label) <= 9:
            raise DataError(f"'{path}', line {number}: expected 'NAME.png LABEL' with a label in "
                            f"0..9, got '{line.strip()}'. {OFFICIAL_FIX}")
        names.append(fields[0])
        labels.append(int(label))
    if not names:
        raise DataError(f"'{path}' lists no images. {OFFICIAL_FIX}")
    return names, labels


def read_image(path):
    """Decodes one image file to (32, 32, 3) uint8 RGB."""
    if not os.path.isfile(path):
        raise DataError(f"'{path}' is listed in {LABELS_FILE} but does not exist. {OFFICIAL_FIX}")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"Cannot decode '{path}' as an image ({brief_error(error)}); "
                        f"the file may be damaged. {OFFICIAL_FIX}") from error
    if pixels.shape[:2] != (ORIGINAL_SIZE, ORIGINAL_SIZE):
        raise DataError(f"'{path}' is {pixels.shape[0]}x{pixels.shape[1]} pixels; the official "
                        f"MNIST-M images are {ORIGINAL_SIZE}x{ORIGINAL_SIZE}. {OFFICIAL_FIX}")
    return pixels


def center_crop(image):
    """The center CROP_SIZE x CROP_SIZE window of an (H, W, C) image."""
    top = (image.shape[0] - CROP_SIZE) // 2
    left = (image.shape[1] - CROP_SIZE) // 2
    return image[top:top + CROP_SIZE, left:left + CROP_SIZE]
