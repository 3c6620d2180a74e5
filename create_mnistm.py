"""Builds MNIST-M from MNIST and the BSDS500 train images.

    python create_mnistm.py                  # downloads both inputs
    python create_mnistm.py --mnist ../shared/data/mnist.npz --bsds ../shared/data/BSR_bsds500.tgz

Writes data/mnist_m.npz and data/mnist_m_preview.png, and prints the sha256
of the arrays: the same inputs and seed always give the same sha256. The
defaults come from config.py. Bad input prints one `error:` line and exits 2.
"""

import argparse
import sys

import config
from utils.mnistm import build_mnistm
from utils.sources import DataError


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
    parsed = parser.parse_args(arguments)
    if parsed.seed < 0:
        parser.error(f"--seed must be >= 0, got {parsed.seed}")
    return parsed


def main(arguments=None):
    arguments = parse_arguments(arguments)
    try:
        summary = build_mnistm(arguments.mnist, arguments.bsds, arguments.out, seed=arguments.seed,
                               download_dir=arguments.download_dir)
    except (DataError, OSError) as error:
        # One line, without a traceback: the message already says what to fix.
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    print(f"Generated the MNIST-M images in {summary.generation_seconds:.2f} s "
          f"({summary.total_seconds:.1f} s in all, with loading and writing).")
    print(f"Wrote {summary.path} and {summary.preview_path}")
    print(f"sha256 of the arrays: {summary.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
