"""Builds MNIST-M from MNIST and the BSDS500 train images.

    python create_mnistm.py                  # downloads both inputs
    python create_mnistm.py --mnist ../shared/data/mnist.npz --bsds ../shared/data/BSR_bsds500.tgz
    python create_mnistm.py --export-folders DIR   # also MNIST and MNIST-M as image folders

Writes data/mnist_m.npz and data/mnist_m_preview.png, and prints the sha256
of the arrays: the same inputs and seed always give the same sha256. The
defaults come from config.py. Bad input prints one `error:` line and exits 2.

--export-folders DIR writes DIR/mnist/{train,test}/<digit>/<index>.png (gray)
and DIR/mnistm/{train,test}/<digit>/<index>.png (color), 140,000 PNGs, the
layout train.py's --source_dir and --target_dir read (docs/folders.md). It
uses the npz at --out when it exists, and builds it first otherwise.
"""

import argparse
import os
import sys

from tqdm import tqdm

import config
from utils import scripts
from utils.data.folders import write_image_folders
from utils.data.mnistm import build_mnistm, load_mnistm
from utils.errors import DataError
from utils.data.datasets import load_mnist


def parse_arguments(arguments=None):
    defaults = config.Config()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", default=defaults.mnist_path, metavar="PATH",
                        help="Keras-layout mnist.npz; empty: download it with keras.datasets.mnist.")
    parser.add_argument("--bsds", default=defaults.bsds_path, metavar="PATH",
                        help="BSR_bsds500.tgz or a folder holding its extracted BSR/ tree; empty: download it.")
    parser.add_argument("--out", default=defaults.mnistm_path, metavar="PATH",
                        help="Output npz (default: %(default)s); the preview PNG is written beside it.")
    parser.add_argument("--seed", default=defaults.mnistm_seed, type=int,
                        help="Seed of the background choice and crop positions (default: %(default)s).")
    parser.add_argument("--download-dir", default=defaults.download_dir, metavar="PATH",
                        help="Where a downloaded BSR_bsds500.tgz is kept (default: %(default)s).")
    parser.add_argument("--export-folders", default="", metavar="DIR",
                        help="Also write MNIST and MNIST-M as class-subfolder PNGs into DIR (a new folder).")
    parsed = parser.parse_args(arguments)
    if parsed.seed < 0:
        parser.error(f"--seed must be >= 0, got {parsed.seed}")
    return parsed


def export_folders(folder, mnist_path, mnistm_path):
    """Writes MNIST and MNIST-M, train and test, as class-subfolder PNGs under `folder`."""
    x_train, y_train, x_test, y_test = load_mnist(mnist_path or None)
    mnistm = load_mnistm(mnistm_path)
    digits = tuple(str(digit) for digit in range(10))
    parts = {"mnist/train": (x_train, y_train), "mnist/test": (x_test, y_test),
             "mnistm/train": (mnistm["x_train"], mnistm["y_train"]),
             "mnistm/test": (mnistm["x_test"], mnistm["y_test"])}
    with tqdm(total=sum(len(labels) for _, labels in parts.values()), unit="image",
              desc=f"writing {folder}", file=sys.stdout) as progress_bar:
        write_image_folders(folder, parts, digits, progress_bar.update)


def main(arguments=None):
    arguments = parse_arguments(arguments)
    try:
        if arguments.export_folders and os.path.exists(arguments.export_folders):
            # Checked first, so that a taken name fails before minutes of work.
            raise DataError(f"'{arguments.export_folders}' already exists: choose a new folder for "
                            "--export-folders, or delete it first.")
        if not (arguments.export_folders and os.path.isfile(arguments.out)):
            summary = build_mnistm(arguments.mnist, arguments.bsds, arguments.out, seed=arguments.seed,
                                   download_dir=arguments.download_dir)
            print(f"Generated the MNIST-M images in {summary.generation_seconds:.2f} s "
                  f"({summary.total_seconds:.1f} s in all, with loading and writing).")
            print(f"Wrote {summary.path} and {summary.preview_path}")
            print(f"sha256 of the arrays: {summary.sha256}")
        if arguments.export_folders:
            export_folders(arguments.export_folders, arguments.mnist, arguments.out)
            print(f"Wrote MNIST and MNIST-M as image folders under {arguments.export_folders} "
                  f"(from {arguments.out}).")
    except (DataError, OSError) as error:
        # One line, without a traceback: the message already says what to fix.
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
