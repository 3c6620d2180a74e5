"""The loader of Ganin's original MNIST-M test layout, on tiny folders made here."""

import numpy as np
import pytest
from PIL import Image

from conftest import write_official_layout
from utils.data.official_mnistm import IMAGE_FOLDER, LABELS_FILE, load_official_mnistm_test
from utils.errors import DataError


def random_images(count, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_images_are_centre_cropped_in_the_order_of_the_labels_file(tmp_path):
    images = random_images(3)
    names = write_official_layout(tmp_path, images, [7, 0, 9])
    # The labels file decides the order, not the file names; blank lines are skipped.
    lines = [f"{names[2]} 9", "", f"{names[0]} 7", f"{names[1]} 0"]
    (tmp_path / LABELS_FILE).write_text("\n".join(lines) + "\n")
    loaded, labels = load_official_mnistm_test(str(tmp_path))
    assert loaded.dtype == np.uint8 and loaded.shape == (3, 28, 28, 3)
    np.testing.assert_array_equal(loaded, images[[2, 0, 1], 2:30, 2:30])
    np.testing.assert_array_equal(labels, [9, 7, 0])


def test_a_grayscale_png_becomes_rgb(tmp_path):
    (tmp_path / IMAGE_FOLDER).mkdir()
    gray = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) % 256
    Image.fromarray(gray.astype(np.uint8)).save(tmp_path / IMAGE_FOLDER / "a.png")
    (tmp_path / LABELS_FILE).write_text("a.png 3\n")
    loaded, _ = load_official_mnistm_test(str(tmp_path))
    np.testing.assert_array_equal(loaded[0], np.repeat(gray[2:30, 2:30, None], 3, axis=2))


def break_layout(folder, problem):
    """Writes a valid two-image layout into `folder`, then breaks it as `problem` says."""
    write_official_layout(folder, random_images(2), [1, 2])
    labels = folder / LABELS_FILE
    if problem == "no labels file":
        labels.unlink()
    elif problem == "no image folder":
        for image in (folder / IMAGE_FOLDER).iterdir():
            image.unlink()
        (folder / IMAGE_FOLDER).rmdir()
    elif problem == "listed image missing":
        labels.write_text(labels.read_text() + "00000099.png 4\n")
    elif problem == "unreadable image":
        (folder / IMAGE_FOLDER / "00000001.png").write_bytes(b"\x89PNG not really")
    elif problem == "wrong image size":
        Image.fromarray(random_images(1, size=28)[0]).save(folder / IMAGE_FOLDER / "00000001.png")
    elif problem == "empty labels file":
        labels.write_text("\n")
    else:  # A bad line: the problem is the line itself.
        labels.write_text(labels.read_text() + problem + "\n")


@pytest.mark.parametrize("problem, message", [
    ("no labels file", "labels file .* does not exist"),
    ("no image folder", "image folder .* does not exist"),
    ("listed image missing", "00000099.png' is listed .* but does not exist"),
    ("unreadable image", "Cannot decode .*00000001.png"),
    ("wrong image size", "is 28x28 pixels; the official MNIST-M images are 32x32"),
    ("empty labels file", "lists no images"),
    ("00000002.png", "line 3: expected 'NAME.png LABEL'"),
    ("00000002.png seven", "line 3: .* got '00000002.png seven'"),
    ("00000002.png 12", "line 3: .* label in 0..9"),
    ("00000002.png 1 extra", "line 3"),
])
def test_problems_name_the_file_and_what_to_do(tmp_path, problem, message):
    break_layout(tmp_path, problem)
    with pytest.raises(DataError, match=message) as raised:
        load_official_mnistm_test(str(tmp_path))
    assert "--mnistm_official" in str(raised.value)


def test_a_missing_folder_is_reported(tmp_path):
    with pytest.raises(DataError, match="folder .*nowhere' does not exist"):
        load_official_mnistm_test(str(tmp_path / "nowhere"))
