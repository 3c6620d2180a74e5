"""Copies a class-subfolder tree with some classes cut to a fraction of their images: a target
whose classes are imbalanced, to see how a label-free judge behaves there.

    python tools/cut_classes.py DIR/mnistm/train MNISTM_CUT/train --classes 0 1 --keep 0.1
    python tools/cut_classes.py DIR/mnistm/test MNISTM_CUT/test --classes 0 1 --keep 0.1

IN holds one subfolder per class (create_mnistm.py --export_folders writes
such trees). Each named class keeps a seeded draw of --keep of its images
(at least one); the other classes are copied whole. OUT must not exist, and
is written all or nothing. Bad input prints one `error:` line and exits 2.
"""

import argparse
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.data.folders import scan_source  # noqa: E402
from utils.errors import DataError  # noqa: E402
from utils.files import atomic_new_folder  # noqa: E402


def parse_arguments(arguments):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="IN", help="A folder with one subfolder per class.")
    parser.add_argument("out", metavar="OUT", help="The new folder.")
    parser.add_argument("--classes", nargs="+", required=True, help="The class subfolders to cut.")
    parser.add_argument("--keep", type=float, required=True, help="Fraction of each cut class kept, in (0, 1].")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the draw (default: 0).")
    options = parser.parse_args(arguments)
    if not 0 < options.keep <= 1:
        parser.error(f"--keep must be in (0, 1], got {options.keep}")
    return options


def kept_images(images, classes, keep, seed):
    """{class name: the sorted paths kept}; a cut class keeps a seeded round(keep * count), at least 1."""
    unknown = sorted(set(classes) - set(images.class_names))
    if unknown:
        raise DataError(f"--classes {' '.join(unknown)}: no such class subfolder; the classes are "
                        f"{', '.join(images.class_names)}.")
    rng = np.random.default_rng(seed)
    kept = {}
    for label, name in enumerate(images.class_names):
        paths = [path for path, image_label in zip(images.paths, images.labels) if image_label == label]
        if name in classes:
            count = max(1, round(keep * len(paths)))
            paths = [paths[index] for index in np.sort(rng.choice(len(paths), count, replace=False))]
        kept[name] = paths
    return kept


def write_copy(source, out, kept):
    """Copies the kept files to out/<class>/ as they lay under source/<class>/, through a temporary
    folder renamed once complete."""
    with atomic_new_folder(out, error=DataError) as temporary:
        for name, paths in kept.items():
            os.makedirs(os.path.join(temporary, name))
            for path in paths:
                target = os.path.join(temporary, name, os.path.relpath(path, os.path.join(source, name)))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(path, target)


def main(arguments=None):
    options = parse_arguments(sys.argv[1:] if arguments is None else arguments)
    try:
        kept = kept_images(scan_source(options.source, role="IN"), options.classes, options.keep, options.seed)
        write_copy(options.source, options.out, kept)
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {options.out}: " + ", ".join(f"{name} {len(paths)}" for name, paths in kept.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
