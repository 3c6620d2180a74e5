"""Shared fixtures: tiny MNIST and BSDS500 files that the tests make, and the real files when present."""

import io
import math
import os
import pathlib
import stat
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from config import Config
from utils.data import training_data
from utils.data.datasets import BSDS_TRAIN_FOLDER
from utils.data.official_mnistm import IMAGE_FOLDER, LABELS_FILE
from utils.runtime import devices, precision
from utils.training.trainer import Trainer

# The TensorBoard tags that train.py must write.
REQUIRED_TAGS = {
    "schedule/learning_rate", "schedule/lambda", "train/label_loss", "train/domain_loss",
    "train/total_loss", "train/source_acc", "train/domain_acc", "val/source_acc",
    "val/target_acc", "val/target_loss", "val/domain_acc",
}


REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python SCRIPT --help` as __main__ in a fresh process; prints its exit code and whether TensorFlow loaded.
HELP_PROGRAM = """import runpy, sys
sys.argv = [{script!r}, '--help']
try:
    runpy.run_path({script!r}, run_name='__main__')
except SystemExit as ended:
    print(ended.code)
print('tensorflow' in sys.modules)
"""


def help_without_tensorflow(script):
    """(the exit code of `python script --help`, whether it imported TensorFlow, its stderr); script is
    relative to the repository."""
    completed = subprocess.run([sys.executable, "-c", HELP_PROGRAM.format(script=script)], cwd=REPOSITORY,
                               capture_output=True, text=True, timeout=120, check=False)
    *_, code, loaded = ["", ""] + completed.stdout.splitlines()
    return code, loaded == "True", completed.stderr


def fake_mnist_arrays(train_count=12, test_count=6, seed=0):
    """Tiny MNIST arrays in the Keras layout, about half of each image 0 so binarization sees both values."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", train_count), ("test", test_count)):
        gray = rng.integers(1, 256, (count, 28, 28), dtype=np.uint8)
        arrays[f"x_{split}"] = np.where(rng.random(gray.shape) < 0.5, gray, np.uint8(0))
        arrays[f"y_{split}"] = rng.integers(0, 10, count, dtype=np.uint8)
    return arrays


def replace_arrays(arrays, replacements):
    """Returns a copy of `arrays` where each replacement sets an array, or drops it when None."""
    replaced = dict(arrays)
    for key, array in replacements.items():
        if array is None:
            del replaced[key]
        else:
            replaced[key] = array
    return replaced


def write_fake_mnist(path, train_count=12, test_count=6, **replacements):
    """Writes a tiny mnist.npz and returns its arrays; `replacements` (see replace_arrays) break it on purpose."""
    arrays = replace_arrays(fake_mnist_arrays(train_count, test_count), replacements)
    np.savez(path, **arrays)
    return arrays


def fake_backgrounds(seed=0):
    """Noise images, named as in BSDS500, in both orientations; noise makes every 28x28 crop unique."""
    rng = np.random.default_rng(seed)
    shapes = {"2092.jpg": (36, 52, 3), "100075.jpg": (52, 36, 3), "8049.jpg": (40, 40, 3)}
    return {name: rng.integers(0, 256, shape, dtype=np.uint8) for name, shape in shapes.items()}


def encode(pixels, image_format="JPEG"):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, quality=95)
    return buffer.getvalue()


def write_fake_bsds_tgz(path, train_files=None):
    """Writes a tiny BSR_bsds500.tgz laid out like the official one and returns its path.

    train_files maps a file name to its bytes (default: fake_backgrounds()
    as JPEGs). Like the official archive, it also holds folder members, a
    Thumbs.db and a val image, which the loader must skip.
    """
    if train_files is None:
        train_files = {name: encode(pixels) for name, pixels in fake_backgrounds().items()}
    with tarfile.open(path, "w:gz") as archive:
        for folder in ("BSR", "BSR/BSDS500", BSDS_TRAIN_FOLDER):
            member = tarfile.TarInfo(folder)
            member.type = tarfile.DIRTYPE
            archive.addfile(member)
        members = {f"{BSDS_TRAIN_FOLDER}/Thumbs.db": b"\xd0\xcf\x11\xe0 not an image",
                   "BSR/BSDS500/data/images/val/3096.jpg": encode(np.zeros((40, 60, 3), np.uint8))}
        members.update({f"{BSDS_TRAIN_FOLDER}/{name}": data for name, data in train_files.items()})
        for name, data in members.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def truncate(path):
    """Cuts a file to half its length, as an interrupted download would."""
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[:len(data) // 2])


def write_fake_mnistm(path, mnist_arrays, seed=1):
    """Random RGB images with MNIST's labels, in the layout of create_mnistm.py."""
    rng = np.random.default_rng(seed)
    arrays = {f"x_{split}": rng.integers(0, 256, (len(mnist_arrays[f"y_{split}"]), 28, 28, 3), dtype=np.uint8)
              for split in ("train", "test")}
    arrays.update(y_train=mnist_arrays["y_train"], y_test=mnist_arrays["y_test"],
                  pixel_mean=np.array([120.0, 110.0, 100.0], np.float32))
    np.savez(path, **arrays)


def write_official_layout(folder, images, labels, names=None):
    """Writes images (N, H, W, 3) uint8 as DIR/mnist_m_test/*.png and their labels file; returns the names."""
    names = names or [f"{index:08d}.png" for index in range(len(images))]
    (folder / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
    for name, pixels in zip(names, images):
        Image.fromarray(pixels).save(folder / IMAGE_FOLDER / name)
    (folder / LABELS_FILE).write_text("".join(f"{name} {label}\n" for name, label in zip(names, labels)))
    return names


# Set by pytest_sessionfinish, used by pytest_unconfigure.
SESSION_EXIT_STATUS = [0]


def pytest_sessionfinish(session, exitstatus):
    SESSION_EXIT_STATUS[0] = int(exitstatus)


def pytest_unconfigure(config):
    """Ends the test process once pytest has reported, without the interpreter's shutdown.

    A tf.data iterator still alive at interpreter shutdown (the tests build
    dozens of trainers, each with a prefetching training stream) can wait
    forever in its destructor for its prefetch thread: the suite printed its
    summary and then hung. Everything pytest writes is written by now.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(SESSION_EXIT_STATUS[0])


@pytest.fixture(autouse=True)
def auto_precision_as_without_native_bfloat16(monkeypatch):
    """In this process, `precision auto` resolves as on a CPU without native bfloat16 (float32),
    so that the suite computes alike on every CPU kind. Tests of auto pass their own flags."""
    monkeypatch.setattr(precision, "read_cpuinfo", lambda: {"flags": set()})
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])


@pytest.fixture
def fake_mnist_path(tmp_path):
    path = str(tmp_path / "mnist.npz")
    write_fake_mnist(path)
    return path


@pytest.fixture
def fake_bsds_path(tmp_path):
    return write_fake_bsds_tgz(str(tmp_path / "BSR_bsds500.tgz"))


@pytest.fixture
def real_data_dir():
    """The folder with the real mnist.npz and BSR_bsds500.tgz, from $DANN_DATA_DIR; skips without it."""
    folder = os.environ.get("DANN_DATA_DIR", "")
    if not all(os.path.isfile(os.path.join(folder, name)) for name in ("mnist.npz", "BSR_bsds500.tgz")):
        pytest.skip("Real data not found: set DANN_DATA_DIR to the folder with mnist.npz and BSR_bsds500.tgz "
                    "(here: ../shared/data).")
    return folder


# Tiny training data: 96 images a domain, 6 steps an epoch at 16 + 16 images;
# test sets of unequal sizes, so that a swapped domain label shows.
TRAIN_SIZE, SOURCE_TEST_SIZE, TARGET_TEST_SIZE = 96, 40, 30


def tiny_training_arrays(seed=0):
    """MNIST-shaped and MNIST-M-shaped random uint8 arrays, each domain with its own random labels."""
    rng = np.random.default_rng(seed)
    mnist = {"x_train": rng.integers(0, 256, (TRAIN_SIZE, 28, 28), dtype=np.uint8),
             "y_train": rng.integers(0, 10, TRAIN_SIZE).astype(np.uint8),
             "x_test": rng.integers(0, 256, (SOURCE_TEST_SIZE, 28, 28), dtype=np.uint8),
             "y_test": rng.integers(0, 10, SOURCE_TEST_SIZE).astype(np.uint8)}
    mnistm = {"x_train": rng.integers(0, 256, (TRAIN_SIZE, 28, 28, 3), dtype=np.uint8),
              "y_train": rng.integers(0, 10, TRAIN_SIZE).astype(np.uint8),
              "x_test": rng.integers(0, 256, (TARGET_TEST_SIZE, 28, 28, 3), dtype=np.uint8),
              "y_test": rng.integers(0, 10, TARGET_TEST_SIZE).astype(np.uint8),
              "pixel_mean": np.array([120.0, 110.0, 100.0], np.float32)}
    return mnist, mnistm


def tiny_config(tmp_path, **overrides):
    """2 epochs = 12 steps of 16 + 16 images, deterministic, in float32 (as on every CPU kind), with
    logs and checkpoints under tmp_path."""
    settings = dict(epochs=2.0, batch_size=32, log_every=2, eval_every=4, checkpoint_every=6,
                    steps_per_call=3, deterministic=True, precision="float32", log_dir=str(tmp_path / "logs"),
                    checkpoint_dir=str(tmp_path / "checkpoints"))
    return Config(**{**settings, **overrides})


def make_trainer(config, arrays=None, **trainer_arguments):
    devices.configure(config.seed, config.deterministic)
    data = training_data.mnist_data(config, *(arrays or tiny_training_arrays()))
    return Trainer(config, data, slices=devices.slices_for(config), **trainer_arguments)


def trained_weights(trainer):
    return [variable.numpy() for variable in trainer.variables]


def stop_at(trainer, stop_step, request=None):
    """Once training reaches stop_step: raises KeyboardInterrupt inside trainer.run(), an abrupt
    end that saves nothing; or, given a request, sets it as trainer.stop_requested, as main's
    signal handler does."""
    train_steps = trainer.train_steps

    def train_then_stop(num_steps):
        train_steps(num_steps)
        if trainer.step >= stop_step:
            if request is None:
                raise KeyboardInterrupt
            trainer.stop_requested = request

    trainer.train_steps = train_then_stop


def paper_schedules(step, total_steps, initial_rate):
    """The paper's (lr, lambda) at p = step / total_steps, written out here rather than imported."""
    progress = step / total_steps
    return (initial_rate / (1 + 10 * progress) ** 0.75,
            2 / (1 + math.exp(-10 * progress)) - 1)


def make_null_device(path):
    """A character device like /dev/null (1, 3); needs root, or the test is skipped."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a character device needs root (CAP_MKNOD)")
