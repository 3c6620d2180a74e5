"""Lists the images of a folder and their classes, refusing layouts that would train on the wrong labels.

The layout is Keras' image_dataset_from_directory convention: one subfolder
per class, named after it, holding that class's images (at any depth); class
names sorted give the labels 0, 1, ... A source folder must have it. A
target folder may have it, or hold its images loose: its labels, when its
subfolders are all source classes, serve evaluation only.

Symbolic links are followed, files and folders alike, as the user put them
there: a class folder may link to images stored elsewhere. Two kinds of link
would silently train on wrong labels or forever, and are refused with the
link's name: a link to a folder that holds it (its own folder, the class
folder, the scanned folder or one above), whose reading would loop, and a
link that makes one image file count twice, in two classes or twice in one
(the file's real path decides). A link that leads nowhere is refused too.

Every problem raises DataError with a message naming the folder or file, so
that the scripts can print it as one `error:` line before any work starts.
"""

import dataclasses
import os

import numpy as np

from utils.data import splits
from utils.errors import DataError
from utils.files import atomic_new_folder

# The formats that tf.io.decode_image reads, as image_dataset_from_directory lists them.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
UNLABELLED = -1


@dataclasses.dataclass
class ImageList:
    """Image paths in a fixed order, their labels (UNLABELLED without one), and the class names."""

    paths: list
    labels: np.ndarray
    class_names: tuple

    def __len__(self):
        return len(self.paths)

    @property
    def labelled(self):
        return len(self.labels) > 0 and bool(np.all(self.labels != UNLABELLED))

    def subset(self, indices):
        return ImageList([self.paths[index] for index in indices], self.labels[indices], self.class_names)


def is_image(name):
    """Image files by extension; hidden files (.DS_Store, ._x.png from macOS) are not images."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def images_under(folder, role):
    """Every image below `folder`, at any depth, in sorted path order; refuses a loop or a file met twice."""
    found = sorted(image_files_under(folder, role))
    check_each_file_once(found, folder, role)
    return [path for path, _ in found]


def image_files_under(folder, role, outer=()):
    """(path, real path) of every image below `folder`, links followed, hidden files and folders skipped.

    `outer` holds the real paths of folders around `folder` that are being
    read (the scanned folder around a class folder): a link back into one
    of them, or into a folder on the way down, is a loop.
    """
    real = os.path.realpath(folder)
    if any(is_within(held, real) for held in outer):
        raise DataError(f"{role}: '{folder}' is a link to '{real}', which holds it: reading it would loop "
                        "forever. Remove the link, or make it point to a folder outside.")
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        raise DataError(f"{role}: the folder '{folder}' cannot be read: {error.strerror}.") from error
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            check_link_leads_somewhere(entry.path, role)
        if entry.is_dir():
            found.extend(image_files_under(entry.path, role, (*outer, real)))
        elif is_image(entry.name):
            found.append((entry.path, os.path.realpath(entry.path) if entry.is_symlink()
                          else os.path.join(real, entry.name)))
    return found


def is_within(folder, container):
    """Whether the real path `folder` is `container` or lies inside it."""
    return folder == container or folder.startswith(container.rstrip(os.sep) + os.sep)


def check_link_leads_somewhere(path, role):
    """Refuses a link whose target is missing: what it should have added would be skipped unseen."""
    if os.path.islink(path) and not os.path.exists(path):
        raise DataError(f"{role}: '{path}' is a link to '{os.readlink(path)}', which does not exist. "
                        "Remove the link or fix its target.")


def check_each_file_once(found, top, role):
    """Refuses two paths of `found` ((path, real path) pairs below `top`) that are one file."""
    first_path = {}
    for path, real in found:
        if real not in first_path:
            first_path[real] = path
            continue
        link = first_link(path, top) or first_link(first_path[real], top) or path
        raise DataError(f"{role}: the link '{link}' makes the image file '{real}' count twice, as "
                        f"'{first_path[real]}' and as '{path}'. Remove the link: each image is read once, "
                        "with one label.")


def first_link(path, top):
    """The first symbolic link on the way from `top` down to `path` (maybe `path` itself), or None."""
    steps = os.path.relpath(path, top).split(os.sep)
    for depth in range(1, len(steps) + 1):
        candidate = os.path.join(top, *steps[:depth])
        if os.path.islink(candidate):
            return candidate
    return None


def read_layout(folder, role):
    """(class subfolders, loose images) at the top of `folder`, both sorted; refuses what cannot be read.

    role names the folder in messages, such as "--source_dir".
    """
    if not os.path.isdir(folder):
        raise DataError(f"{role} '{folder}' is not a folder. Check the path.")
    try:
        entries = sorted(os.listdir(folder))
    except OSError as error:
        raise DataError(f"{role} '{folder}' cannot be read: {error.strerror}.") from error
    for name in entries:
        if not name.startswith("."):
            check_link_leads_somewhere(os.path.join(folder, name), role)
    subfolders = [name for name in entries
                  if not name.startswith(".") and os.path.isdir(os.path.join(folder, name))]
    loose = [name for name in entries if is_image(name) and os.path.isfile(os.path.join(folder, name))]
    if subfolders and loose:
        raise DataError(f"{role} '{folder}' mixes class subfolders ({', '.join(subfolders[:3])}) with loose "
                        f"images ({', '.join(loose[:3])}): their class is unknown. Move each loose image "
                        "into its class's subfolder, or out of the folder.")
    if not subfolders and not loose:
        raise DataError(f"{role} '{folder}' holds no images ({', '.join(IMAGE_EXTENSIONS)}). Check the path.")
    return subfolders, loose


def labelled_images(folder, role, class_names):
    """The images of `class_names`' subfolders of `folder`, labelled by their index in class_names."""
    found, labels = [], []
    for label, name in enumerate(class_names):
        subfolder = os.path.join(folder, name)
        in_class = (sorted(image_files_under(subfolder, role, (os.path.realpath(folder),)))
                    if os.path.isdir(subfolder) else [])
        found.extend(in_class)
        labels.extend([label] * len(in_class))
    check_each_file_once(found, folder, role)
    paths = [path for path, _ in found]
    if not paths:
        raise DataError(f"{role} '{folder}': its class subfolders hold no images "
                        f"({', '.join(IMAGE_EXTENSIONS)}). Check the path.")
    return ImageList(paths, np.asarray(labels, np.int32), tuple(class_names))


def scan_source(folder, role="--source_dir"):
    """The labelled source images: one subfolder per class, the class names sorted."""
    subfolders, loose = read_layout(folder, role)
    if not subfolders:
        raise DataError(f"{role} '{folder}' has loose images ({', '.join(loose[:3])}) but no class "
                        "subfolders: the source needs one subfolder per class, such as "
                        f"{os.path.join(folder, 'cat')}/ and {os.path.join(folder, 'dog')}/.")
    if len(subfolders) < 2:
        raise DataError(f"{role} '{folder}' has one class subfolder ({subfolders[0]}): a classifier "
                        "needs at least two classes.")
    images = labelled_images(folder, role, subfolders)
    empty = [name for name in subfolders if not np.any(images.labels == subfolders.index(name))]
    if empty:
        raise DataError(f"{role}: the class folder '{os.path.join(folder, empty[0])}' holds no images "
                        f"({', '.join(IMAGE_EXTENSIONS)}). Add images or remove it.")
    return images


def scan_labelled_test(folder, class_names, role="--source_test_dir"):
    """A labelled test folder: its class subfolders must be source classes (some may be missing)."""
    subfolders, loose = read_layout(folder, role)
    if not subfolders:
        raise DataError(f"{role} '{folder}' has no class subfolders: a source test folder is laid out "
                        "like --source_dir, one subfolder per class.")
    check_classes(folder, role, subfolders, class_names)
    return labelled_images(folder, role, class_names)


def scan_target(folder, class_names, role="--target_dir", test=False):
    """Target images; labelled when its subfolders are all source classes.

    A target training folder whose subfolders are not source classes is
    taken as unlabelled (its subfolders are only a way to store images). A
    target test folder (test=True) with such subfolders is refused: its
    labels would be compared with classes the model does not have.
    """
    subfolders, loose = read_layout(folder, role)
    if loose:
        paths = [os.path.join(folder, name) for name in loose]
        check_each_file_once([(path, os.path.realpath(path)) for path in paths], folder, role)
        return ImageList(paths, np.full(len(paths), UNLABELLED, np.int32), tuple(class_names))
    if test:
        check_classes(folder, role, subfolders, class_names)
    if set(subfolders) <= set(class_names):
        return labelled_images(folder, role, class_names)
    paths = images_under(folder, role)
    if not paths:
        raise DataError(f"{role} '{folder}' holds no images ({', '.join(IMAGE_EXTENSIONS)}). Check the path.")
    return ImageList(paths, np.full(len(paths), UNLABELLED, np.int32), tuple(class_names))


def check_classes(folder, role, subfolders, class_names):
    unknown = [name for name in subfolders if name not in class_names]
    if unknown:
        raise DataError(f"{role} '{folder}' has classes that are not source classes: {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''} (source classes: {', '.join(class_names)}). "
                        "Rename or remove those subfolders.")


def held_out_split(images, fraction, seed, stream):
    """(train part, held-out part) of an ImageList: a seeded random `fraction`, at least one
    image, is held out (utils/data/splits.py). Each part keeps the list's order. Refuses a
    list too small to split.
    """
    kept, held_out = splits.held_out_split(len(images), fraction, seed, stream, at_least=1)
    if not len(kept):
        raise DataError(f"{len(images)} image(s) in the folder are too few to hold {fraction:g} of them out "
                        "for testing: add images or give a test folder.")
    return images.subset(kept), images.subset(held_out)


def write_image_folders(folder, parts, class_names, progress=None):
    """Writes {subfolder: (uint8 images, labels)} as folder/subfolder/<class>/<index>.png, all or nothing.

    The files go to a temporary folder beside `folder`, renamed to it once
    every image is written, so an interruption leaves no half-written tree.
    Gray (N, H, W) images are written as gray PNGs. progress(count) is
    called after each image. Refuses a `folder` that exists.
    """
    from PIL import Image  # Only writing needs Pillow; reading uses TensorFlow.

    with atomic_new_folder(folder, error=DataError) as temporary:
        for subfolder, (images, labels) in parts.items():
            for name in class_names:
                os.makedirs(os.path.join(temporary, subfolder, name))
            width = len(str(len(images)))
            for index, (image, label) in enumerate(zip(images, labels)):
                Image.fromarray(image).save(
                    os.path.join(temporary, subfolder, class_names[label], f"{index:0{width}d}.png"))
                if progress:
                    progress(1)
