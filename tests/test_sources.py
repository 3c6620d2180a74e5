"""Loading MNIST and the BSDS500 train images: good files, downloads (faked) and every bad input."""

import email.message
import hashlib
import io
import os
import pathlib
import re
import sys
import tarfile
import types
import urllib.error
import urllib.request
import urllib.response

import numpy as np
import pytest
from PIL import Image

import create_mnistm
from conftest import encode, fake_backgrounds, truncate, write_fake_bsds_tgz, write_fake_mnist
from utils.data import datasets
from utils.data.datasets import BSDS_SHA256, BSDS_URLS, load_bsds_train_images, load_mnist
from utils.errors import DataError


def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_load_mnist_reads_the_keras_layout(tmp_path):
    path = str(tmp_path / "mnist.npz")
    written = write_fake_mnist(path, train_count=5, test_count=3)
    loaded = load_mnist(path)
    for key, array in zip(("x_train", "y_train", "x_test", "y_test"), loaded):
        np.testing.assert_array_equal(array, written[key])


@pytest.mark.parametrize("replacements, message", [
    ({"y_test": None}, "has no y_test"),
    ({"x_train": np.zeros((12, 28, 27), np.uint8)}, "expected uint8 of shape (N, 28, 28)"),
    ({"x_train": np.zeros((12, 28, 28), np.float32)}, "x_train is float32"),
    ({"y_train": np.zeros(12, np.float64)}, "y_train is float64"),
    ({"y_train": np.zeros(11, np.uint8)}, "11 labels for 12 images"),
    ({"y_test": np.full(6, 10, np.uint8)}, "outside 0..9"),
])
def test_load_mnist_rejects_a_wrong_layout(tmp_path, replacements, message):
    path = str(tmp_path / "mnist.npz")
    write_fake_mnist(path, **replacements)
    with pytest.raises(DataError, match=re.escape(message)) as error:
        load_mnist(path)
    assert path in str(error.value) and "--mnist" in str(error.value)


def test_load_mnist_rejects_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--mnist"):
        load_mnist(str(tmp_path / "absent.npz"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "single array"])
def test_load_mnist_rejects_a_damaged_file(tmp_path, damage):
    path = str(tmp_path / "mnist.npz")
    write_fake_mnist(path)
    if damage == "truncated":
        truncate(path)
    elif damage == "garbage":
        pathlib.Path(path).write_bytes(b"this is not a zip file at all" * 10)
    else:
        with open(path, "wb") as stream:
            np.save(stream, np.zeros(3))
    with pytest.raises(DataError, match="mnist.npz"):
        load_mnist(path)


def test_load_mnist_without_path_uses_keras(tmp_path, monkeypatch):
    """The download branch, with a stand-in keras module so the test stays offline and fast."""
    arrays = write_fake_mnist(str(tmp_path / "mnist.npz"))
    fake_keras = types.SimpleNamespace(datasets=types.SimpleNamespace(mnist=types.SimpleNamespace(
        load_data=lambda: ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])))))
    monkeypatch.setitem(sys.modules, "keras", fake_keras)
    x_train, _, _, y_test = load_mnist(None)
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_bsds_tarball_reader_keeps_train_jpegs_in_name_order(fake_bsds_path):
    """Thumbs.db, folders and val images are skipped; both orientations load, sorted by file name."""
    originals = fake_backgrounds()
    images = load_bsds_train_images(fake_bsds_path)
    names = sorted(originals)
    assert [image.shape for image in images] == [originals[name].shape for name in names]
    for image, name in zip(images, names):
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, decode(encode(originals[name])))


def test_bsds_folder_input_matches_the_archive(tmp_path, fake_bsds_path):
    with tarfile.open(fake_bsds_path) as archive:
        archive.extractall(tmp_path / "extracted", filter="data")
    from_archive = load_bsds_train_images(fake_bsds_path)
    for folder in ("extracted", "extracted/BSR", "extracted/BSR/BSDS500/data/images/train"):
        from_folder = load_bsds_train_images(str(tmp_path / folder))
        assert len(from_folder) == len(from_archive)
        for expected, actual in zip(from_archive, from_folder):
            np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_bsds_grayscale_and_alpha_images_become_rgb(tmp_path, mode):
    pixels = np.random.default_rng(1).integers(0, 256, (30, 40, len(mode)), dtype=np.uint8).squeeze()
    # RGBA cannot be a JPEG; the loader decodes by content, as a .jpg saved as PNG would be.
    data = encode(pixels, "JPEG" if mode == "L" else "PNG")
    path = write_fake_bsds_tgz(str(tmp_path / "bsds.tgz"), {"1.jpg": data})
    (image,) = load_bsds_train_images(path)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    expected = decode(data)
    np.testing.assert_array_equal(image, expected)
    if mode == "L":
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def test_bsds_without_path_downloads_into_the_download_dir(tmp_path, fake_bsds_path, monkeypatch):
    calls = []

    def fake_get_file(name, origin, cache_dir, cache_subdir, **checks):
        calls.append((name, origin, cache_dir, cache_subdir, checks, os.path.isdir(cache_dir)))
        return fake_bsds_path

    monkeypatch.setitem(sys.modules, "keras", types.SimpleNamespace(utils=types.SimpleNamespace(get_file=fake_get_file)))
    download_dir = tmp_path / "downloads"
    assert len(load_bsds_train_images(None, str(download_dir))) == 3
    checks = {"file_hash": BSDS_SHA256, "hash_algorithm": "sha256"}
    assert calls == [("BSR_bsds500.tgz", BSDS_URLS[0], str(download_dir), "", checks, True)]


@pytest.fixture
def fake_internet(monkeypatch, fake_bsds_path):
    """The real keras.utils.get_file over a fake opener: {url: bytes} it serves, and the URLs asked for.

    Any other URL is unreachable, so no test reaches the network. The fake
    archive's sha256 stands in for the official one.
    """
    served, asked = {}, []

    def urlopen(url, data=None):
        asked.append(url)
        if url not in served:
            raise urllib.error.URLError("unreachable in this test")
        return urllib.response.addinfourl(io.BytesIO(served[url]), email.message.Message(), url)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    archive = pathlib.Path(fake_bsds_path).read_bytes()
    monkeypatch.setattr(datasets, "BSDS_SHA256", hashlib.sha256(archive).hexdigest())
    return types.SimpleNamespace(served=served, asked=asked, archive=archive)


@pytest.mark.parametrize("first_location", ["unreachable", "serves another archive"])
def test_bsds_download_tries_the_next_location_when_one_fails(tmp_path, fake_internet, first_location):
    if first_location == "serves another archive":
        # A readable archive, but not the one pinned: only its hash tells them apart.
        other = write_fake_bsds_tgz(str(tmp_path / "other.tgz"), {"1.jpg": encode(np.zeros((30, 30, 3), np.uint8))})
        fake_internet.served[BSDS_URLS[0]] = pathlib.Path(other).read_bytes()
    fake_internet.served[BSDS_URLS[1]] = fake_internet.archive
    download_dir = tmp_path / "downloads"
    assert len(load_bsds_train_images(None, str(download_dir))) == 3
    assert fake_internet.asked == list(BSDS_URLS[:2])
    assert (download_dir / "BSR_bsds500.tgz").read_bytes() == fake_internet.archive


def test_bsds_download_keeps_no_file_when_every_location_serves_another_hash(tmp_path, fake_internet):
    for url in BSDS_URLS:
        fake_internet.served[url] = fake_internet.archive[:len(fake_internet.archive) // 2]
    download_dir = tmp_path / "downloads"
    with pytest.raises(DataError, match="corrupted"):
        load_bsds_train_images(None, str(download_dir))
    assert fake_internet.asked == list(BSDS_URLS)
    assert os.listdir(download_dir) == []


def test_bsds_download_reuses_the_pinned_file_and_replaces_another(tmp_path, fake_internet):
    download_dir = tmp_path / "downloads"
    download_dir.mkdir()
    kept = download_dir / "BSR_bsds500.tgz"
    kept.write_bytes(fake_internet.archive)
    assert len(load_bsds_train_images(None, str(download_dir))) == 3
    assert fake_internet.asked == []
    # An interrupted download left half a file: it is fetched again, not read.
    kept.write_bytes(fake_internet.archive[:1000])
    fake_internet.served[BSDS_URLS[0]] = fake_internet.archive
    assert len(load_bsds_train_images(None, str(download_dir))) == 3
    assert fake_internet.asked == [BSDS_URLS[0]]


def test_script_names_the_file_its_locations_and_the_fix_when_every_download_fails(
        tmp_path, fake_internet, fake_mnist_path, capsys):
    out, download_dir = tmp_path / "out" / "mnist_m.npz", tmp_path / "downloads"
    assert create_mnistm.main(["--mnist", fake_mnist_path, "--out", str(out), "--download_dir", str(download_dir)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Cannot download BSR_bsds500.tgz")
    assert all(url in lines[0] for url in BSDS_URLS) and fake_internet.asked == list(BSDS_URLS)
    assert "--bsds PATH" in lines[0] and str(download_dir / "BSR_bsds500.tgz") in lines[0]
    assert not out.exists() and os.listdir(download_dir) == []


# sha256 of ../shared/data/BSR_bsds500.tgz, the input of every published
# MNIST-M number: an images-only repack of the official archive, so not the
# file a download checks against.
MEASURED_BSDS_SHA256 = "74cdb892919e302cc67168576ad45ac55045d158310dcef3a8e505294b114c9c"


def test_the_real_bsds_copy_is_the_measured_one(real_data_dir):
    with open(os.path.join(real_data_dir, "BSR_bsds500.tgz"), "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    assert digest == MEASURED_BSDS_SHA256
    assert digest != BSDS_SHA256


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("truncated", "not a readable .tgz"),
    ("garbage", "not a readable .tgz"),
    ("no train images", "holds no BSDS500 train images"),
    ("empty folder", "holds no BSDS500 train images"),
    ("unreadable jpeg", "Cannot decode '5.jpg'"),
    ("too small", "smaller than the 28x28"),
])
def test_bsds_rejects_bad_input(tmp_path, fake_bsds_path, case, message):
    path = str(tmp_path / "bsds.tgz")
    if case == "missing":
        path = str(tmp_path / "absent.tgz")
    elif case == "truncated":
        path = fake_bsds_path
        truncate(path)
    elif case == "garbage":
        pathlib.Path(path).write_bytes(b"\x1f\x8b this is not a gzip stream" * 20)
    elif case == "no train images":
        write_fake_bsds_tgz(path, {})
    elif case == "empty folder":
        path = str(tmp_path / "empty")
        os.makedirs(path)
    elif case == "unreadable jpeg":
        write_fake_bsds_tgz(path, {"5.jpg": b"\xff\xd8\xff\xe0 broken jpeg"})
    elif case == "too small":
        write_fake_bsds_tgz(path, {"6.jpg": encode(np.zeros((20, 60, 3), np.uint8))})
    with pytest.raises(DataError, match=message) as error:
        load_bsds_train_images(path)
    assert "--bsds" in str(error.value)
