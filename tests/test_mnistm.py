"""The MNIST-M recipe, the build (npz, preview, atomic writes), the script and the real data."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import create_mnistm
from conftest import fake_backgrounds, fake_mnist_arrays, replace_arrays, write_fake_bsds_tgz, write_fake_mnist
from utils.data import mnistm
from utils.data.mnistm import (arrays_sha256, build_mnistm, draw_crop_positions, load_mnistm,
                               make_mnistm_images)
from utils.errors import DataError
from utils.data.datasets import load_bsds_train_images, load_mnist

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quiet(message):
    """A log function for build_mnistm that keeps test output short."""


def recipe(crop, digit):
    """The recipe written the slow, obvious way: uint8(|crop - 255 * (digit > 0)|) on every channel."""
    binarized = np.where(digit > 0, 255, 0)[..., None]
    return np.abs(crop.astype(np.int16) - binarized).astype(np.uint8)


def all_crops(backgrounds):
    """Every 28x28 crop of every background, stacked: (K, 28, 28, 3)."""
    return np.concatenate([
        np.lib.stride_tricks.sliding_window_view(image, (28, 28), axis=(0, 1))
        .reshape(-1, 3, 28, 28).transpose(0, 2, 3, 1) for image in backgrounds])


def test_crop_positions_stay_inside_each_image_and_reach_its_edges():
    shapes = [(52, 36, 3), (36, 52, 3)]  # Portrait and landscape.
    positions = draw_crop_positions(20000, shapes, np.random.default_rng(0))
    heights, widths = np.array([shape[:2] for shape in shapes]).T
    assert set(positions.image_index) == {0, 1}
    assert (positions.row >= 0).all() and (positions.column >= 0).all()
    assert (positions.row <= heights[positions.image_index] - 28).all()
    assert (positions.column <= widths[positions.image_index] - 28).all()
    portrait = positions.image_index == 0
    assert positions.row[portrait].max() == 24 and positions.column[~portrait].max() == 24


def test_every_pixel_is_the_absolute_difference_of_its_crop_and_digit():
    digits = fake_mnist_arrays(train_count=300)["x_train"]
    backgrounds = list(fake_backgrounds().values())
    images, positions = make_mnistm_images(digits, backgrounds, np.random.default_rng(5))
    assert images.shape == (300, 28, 28, 3) and images.dtype == np.uint8
    for image, digit, index, row, column in zip(images, digits, *positions):
        crop = backgrounds[index][row:row + 28, column:column + 28]
        np.testing.assert_array_equal(image, recipe(crop, digit))


def test_same_seed_gives_identical_images_and_another_seed_differs():
    digits = fake_mnist_arrays(train_count=50)["x_train"]
    backgrounds = list(fake_backgrounds().values())
    first, _ = make_mnistm_images(digits, backgrounds, np.random.default_rng(7))
    again, _ = make_mnistm_images(digits, backgrounds, np.random.default_rng(7))
    other, _ = make_mnistm_images(digits, backgrounds, np.random.default_rng(8))
    assert first.tobytes() == again.tobytes()
    assert not np.array_equal(first, other)


def test_build_writes_recoverable_images_mnist_labels_mean_and_preview(tmp_path, fake_mnist_path, fake_bsds_path):
    out = str(tmp_path / "out" / "mnist_m.npz")
    summary = build_mnistm(fake_mnist_path, fake_bsds_path, out, seed=1, log=quiet)
    arrays = load_mnistm(out)
    x_train, y_train, x_test, y_test = load_mnist(fake_mnist_path)
    assert arrays["x_train"].shape == (12, 28, 28, 3) and arrays["x_test"].shape == (6, 28, 28, 3)
    np.testing.assert_array_equal(arrays["y_train"], y_train)
    np.testing.assert_array_equal(arrays["y_test"], y_test)
    assert summary.sha256 == arrays_sha256(arrays)

    # JPEG is lossy, so the crops are searched in the images as the loader decodes them.
    crops = all_crops(load_bsds_train_images(fake_bsds_path))
    for images, digits in ((arrays["x_train"], x_train), (arrays["x_test"], x_test)):
        for image, digit in zip(images, digits):
            assert any(np.array_equal(image, recipe(crop, digit)) for crop in crops)

    both_domains = np.concatenate([np.repeat(x_train[..., None], 3, axis=3), arrays["x_train"]])
    np.testing.assert_allclose(arrays["pixel_mean"], both_domains.reshape(-1, 3).mean(axis=0), rtol=1e-6)
    with Image.open(summary.preview_path) as preview:
        assert preview.format == "PNG" and preview.width > preview.height > 0
    assert sorted(os.listdir(tmp_path / "out")) == ["mnist_m.npz", "mnist_m_preview.png"]


def test_build_is_deterministic_for_a_seed(tmp_path, fake_mnist_path, fake_bsds_path):
    def sha(seed, name):
        return build_mnistm(fake_mnist_path, fake_bsds_path, str(tmp_path / name), seed=seed, log=quiet).sha256

    assert sha(3, "a.npz") == sha(3, "b.npz")
    assert sha(3, "a.npz") != sha(4, "c.npz")


def test_unwritable_output_fails_before_the_inputs_are_read(tmp_path):
    regular_file = tmp_path / "a_file"
    regular_file.write_text("not a folder")
    # The inputs do not exist either: the output error must come first.
    with pytest.raises(OSError, match="Cannot write to folder") as error:
        build_mnistm(str(tmp_path / "absent.npz"), str(tmp_path / "absent.tgz"),
                     str(regular_file / "mnist_m.npz"), log=quiet)
    assert not isinstance(error.value, DataError)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        build_mnistm(str(tmp_path / "absent.npz"), str(tmp_path / "absent.tgz"), str(tmp_path), log=quiet)


@pytest.mark.parametrize("broken", ["missing mnist", "corrupt mnist", "wrong mnist dtype", "no train images"])
def test_bad_input_leaves_no_output_file(tmp_path, fake_mnist_path, fake_bsds_path, broken):
    if broken == "missing mnist":
        os.remove(fake_mnist_path)
    elif broken == "corrupt mnist":
        with open(fake_mnist_path, "wb") as stream:
            stream.write(b"PK\x03\x04 truncated zip")
    elif broken == "wrong mnist dtype":
        write_fake_mnist(fake_mnist_path, x_test=np.zeros((6, 28, 28), np.int32))
    else:
        write_fake_bsds_tgz(fake_bsds_path, {})
    with pytest.raises(DataError):
        build_mnistm(fake_mnist_path, fake_bsds_path, str(tmp_path / "out" / "mnist_m.npz"), log=quiet)
    assert not (tmp_path / "out").exists()  # Nor the folder the files would have gone to.
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError):
        build_mnistm(fake_mnist_path, fake_bsds_path, str(tmp_path / "out" / "mnist_m.npz"), log=quiet)
    assert os.listdir(tmp_path / "out") == []


def test_failure_while_writing_leaves_neither_file(tmp_path, fake_mnist_path, fake_bsds_path, monkeypatch):
    def interrupted(*arguments, **keywords):
        raise KeyboardInterrupt

    monkeypatch.setattr(mnistm, "save_mnistm_preview", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_mnistm(fake_mnist_path, fake_bsds_path, str(tmp_path / "out" / "mnist_m.npz"), log=quiet)
    assert not (tmp_path / "out").exists()  # Nor the folder made for them.
    (tmp_path / "out").mkdir()
    with pytest.raises(KeyboardInterrupt):
        build_mnistm(fake_mnist_path, fake_bsds_path, str(tmp_path / "out" / "mnist_m.npz"), log=quiet)
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("key, array, message", [
    ("pixel_mean", None, "has no pixel_mean"),
    ("x_train", np.zeros((2, 28, 28), np.uint8), "expected uint8 of shape (N, 28, 28, 3)"),
    ("y_test", np.zeros(2, np.int64), "y_test is int64"),
])
def test_load_mnistm_rejects_a_wrong_layout(tmp_path, key, array, message):
    arrays = {"x_train": np.zeros((2, 28, 28, 3), np.uint8), "y_train": np.zeros(2, np.uint8),
              "x_test": np.zeros((2, 28, 28, 3), np.uint8), "y_test": np.zeros(2, np.uint8),
              "pixel_mean": np.zeros(3, np.float32)}
    path = str(tmp_path / "mnist_m.npz")
    np.savez(path, **replace_arrays(arrays, {key: array}))
    with pytest.raises(DataError, match="create_mnistm.py") as error:
        load_mnistm(path)
    assert message in str(error.value)


def test_script_prints_one_error_line_and_exits_2_on_bad_input(tmp_path):
    out = tmp_path / "out" / "mnist_m.npz"
    result = subprocess.run(
        [sys.executable, "create_mnistm.py", "--mnist", str(tmp_path / "absent.npz"),
         "--bsds", str(tmp_path / "absent.tgz"), "--out", str(out)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "absent.npz" in lines[0]
    assert "Traceback" not in result.stderr and not out.exists()


def test_script_builds_from_local_files(tmp_path, fake_mnist_path, fake_bsds_path, capsys):
    out = str(tmp_path / "mnist_m.npz")
    assert create_mnistm.main(["--mnist", fake_mnist_path, "--bsds", fake_bsds_path, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert f"sha256 of the arrays: {arrays_sha256(load_mnistm(out))}" in printed
    assert os.path.isfile(str(tmp_path / "mnist_m_preview.png"))


# The sha256 of MNIST-M built with seed 42 from ../shared/data, published in
# docs/mnistm.md: every published number was measured on these arrays.
PUBLISHED_SHA256 = "ff2a1dedd3402bee467794d34c27c296f6b3b64c69e01e16b4baa2435d293ac4"


def test_the_docs_publish_the_pinned_sha256():
    with open(os.path.join(REPOSITORY, "docs", "mnistm.md"), encoding="utf-8") as stream:
        assert PUBLISHED_SHA256 in stream.read()


def test_real_data_builds_the_published_data_set_twice_identically(real_data_dir, tmp_path):
    mnist_path = os.path.join(real_data_dir, "mnist.npz")
    bsds_path = os.path.join(real_data_dir, "BSR_bsds500.tgz")
    digests = []
    for name in ("first.npz", "second.npz"):
        summary = build_mnistm(mnist_path, bsds_path, str(tmp_path / name), seed=42, log=quiet)
        digests.append(summary.sha256)
    arrays = load_mnistm(str(tmp_path / "first.npz"))
    _, y_train, _, y_test = load_mnist(mnist_path)
    assert arrays["x_train"].shape == (60000, 28, 28, 3) and arrays["x_train"].dtype == np.uint8
    assert arrays["x_test"].shape == (10000, 28, 28, 3) and arrays["x_test"].dtype == np.uint8
    assert arrays["y_train"].dtype == np.uint8 and arrays["pixel_mean"].dtype == np.float32
    np.testing.assert_array_equal(arrays["y_train"], y_train)
    np.testing.assert_array_equal(arrays["y_test"], y_test)
    assert digests[0] == digests[1] == arrays_sha256(arrays) == PUBLISHED_SHA256
