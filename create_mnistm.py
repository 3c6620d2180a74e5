"""Builds MNIST-M from MNIST and the BSDS500 train images.

    python create_mnistm.py                  # downloads both inputs
    python create_mnistm.py --mnist PATH/mnist.npz --bsds PATH/BSR_bsds500.tgz
    python create_mnistm.py --export_folders DIR   # also MNIST and MNIST-M as image folders

Writes data/mnist_m.npz and data/mnist_m_preview.png, and prints the sha256
of the arrays: the same inputs and seed always give the same sha256. The
defaults come from config.py. Bad input prints one `error:` line and exits 2.

--export_folders DIR writes DIR/mnist/{train,test}/<digit>/<index>.png (gray)
and DIR/mnistm/{train,test}/<digit>/<index>.png (color), 140,000 PNGs, the
layout train.py's --source_dir and --target_dir read (docs/folders.md). It
uses the npz at --out when it exists, and builds it first otherwise.
"""

import os
import sys

from tqdm import tqdm

from config import Config
from utils import cli
from utils import scripts
from utils.data.datasets import load_mnist
from utils.data.folders import write_image_folders
from utils.errors import DataError
from utils.runtime import startup


def parse_arguments(arguments=None):
    """The options, with `settings`: the Config of --mnist, --bsds and --download_dir."""
    defaults = Config()
    parser = cli.Parser(__doc__, settings=("mnist_path", "bsds_path", "download_dir"),
                        renamed={"--download-dir": "--download_dir", "--export-folders": "--export_folders"})
    parser.add_argument("--out", default=defaults.mnistm_path, metavar="PATH",
                        help="Output npz (default: %(default)s); the preview PNG is written beside it.")
    parser.add_argument("--seed", default=defaults.mnistm_seed, type=int,
                        help="Seed of the background choice and crop positions (default: %(default)s).")
    parser.add_argument("--export_folders", default="", metavar="DIR",
                        help="Also write MNIST and MNIST-M as class-subfolder PNGs into DIR (a new folder).")
    parsed, overrides = parser.parse(arguments)
    if parsed.seed < 0:
        raise cli.UsageError(f"--seed must be >= 0, got {parsed.seed}")
    parsed.settings = Config(**overrides)
    return parsed


def export_folders(folder, mnist_path, mnistm_path):
    """Writes MNIST and MNIST-M, train and test, as class-subfolder PNGs under `folder`."""
    from utils.data.mnistm import load_mnistm

    x_train, y_train, x_test, y_test = load_mnist(mnist_path or None)
    mnistm = load_mnistm(mnistm_path)
    digits = tuple(str(digit) for digit in range(10))
    parts = {"mnist/train": (x_train, y_train), "mnist/test": (x_test, y_test),
             "mnistm/train": (mnistm["x_train"], mnistm["y_train"]),
             "mnistm/test": (mnistm["x_test"], mnistm["y_test"])}
    with tqdm(total=sum(len(labels) for _, labels in parts.values()), unit="image",
              desc=f"writing {folder}", file=sys.stdout) as progress_bar:
        write_image_folders(folder, parts, digits, progress_bar.update)


@cli.reports_usage_errors
def main(arguments=None):
    arguments = parse_arguments(sys.argv[1:] if arguments is None else arguments)
    mnist_path, bsds_path = arguments.settings.mnist_path, arguments.settings.bsds_path
    startup.set_up()
    from utils.data.mnistm import build_mnistm

    try:
        if arguments.export_folders and os.path.exists(arguments.export_folders):
            # Checked first, so that a taken name fails before minutes of work.
            raise DataError(f"'{arguments.export_folders}' already exists: choose a new folder for "
                            "--export_folders, or delete it first.")
        if not (arguments.export_folders and os.path.isfile(arguments.out)):
            summary = build_mnistm(mnist_path, bsds_path, arguments.out, seed=arguments.seed,
                                   download_dir=arguments.settings.download_dir)
            print(f"Generated the MNIST-M images in {summary.generation_seconds:.2f} s "
                  f"({summary.total_seconds:.1f} s in all, with loading and writing).")
            print(f"Wrote {summary.path} and {summary.preview_path}")
            print(f"sha256 of the arrays: {summary.sha256}")
        if arguments.export_folders:
            export_folders(arguments.export_folders, mnist_path, arguments.out)
            print(f"Wrote MNIST and MNIST-M as image folders under {arguments.export_folders} "
                  f"(from {arguments.out}).")
    except (DataError, OSError) as error:
        # One line, without a traceback: the message already says what to fix.
        print(cli.one_line(error), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
