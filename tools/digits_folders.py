"""Writes scikit-learn's 8x8 digits (load_digits, shipped inside the package) as class-subfolder PNGs.

    python tools/digits_folders.py DIR

A small second pair for train.py's image folders: these 1,797 digits as the
source, MNIST as the target (create_mnistm.py --export_folders writes it):

    python train.py --source_dir DIR --target_dir MNIST/train --target_test_dir MNIST/test \
        --binarize_source false --epochs 100

The 17 gray levels (0..16) become 0..255; train.py resizes the 8x8 images to
its image_size. Exits 2 with one `error:` line when DIR exists.
"""

import os
import sys

import numpy as np
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.data.folders import write_image_folders  # noqa: E402
from utils.errors import DataError  # noqa: E402


def main(arguments):
    if len(arguments) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    try:
        write_image_folders(arguments[0], {".": (images, digits.target)}, tuple(str(digit) for digit in range(10)))
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {len(images)} digits (8x8) under {arguments[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
