"""The shipped weights in pretrained/: each folder loads as a run, with its preset, and reads real digits."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from utils.data import pipeline
from utils.data.datasets import load_mnist
from utils.data.mnistm import build_mnistm, load_mnistm
from utils.evaluation import metrics
from utils.evaluation import trained_run

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = 1000  # The first MNIST test digits: enough to tell 0.98 from 0.7.


def accuracy(classifier, images, labels):
    return metrics.accuracy(metrics.confusion_matrix(classifier, images, labels))


@pytest.mark.parametrize("preset", ["paper", "long"])
def test_the_shipped_weights_load_as_a_run_of_their_preset(preset, real_data_dir):
    run = trained_run.load_run(os.path.join(REPOSITORY, "pretrained", preset))
    assert run.config.preset == preset and run.config.mode == "dann"
    _, _, images, labels = load_mnist(os.path.join(real_data_dir, "mnist.npz"))
    digits = pipeline.source_to_rgb(images[:DIGITS], binarize=run.config.binarize_source)
    assert accuracy(run.classifier, digits.numpy(), labels[:DIGITS]) > 0.97
    # Digits in random colors, as the long preset's training draws them: the
    # long weights read them, the paper's (trained on black and white) much less.
    colored = pipeline.random_colors(digits, tf.constant([0, 9], tf.int64)).numpy()
    colored_accuracy = accuracy(run.classifier, np.round(colored).astype(np.uint8), labels[:DIGITS])
    if preset == "long":
        assert colored_accuracy > 0.95
    else:
        assert colored_accuracy < 0.9


@pytest.fixture(scope="module")
def real_mnistm(tmp_path_factory):
    """MNIST-M built from the real files with the shipped runs' seed, 42 (skips without them)."""
    folder = os.environ.get("DANN_DATA_DIR", "")
    if not all(os.path.isfile(os.path.join(folder, name)) for name in ("mnist.npz", "BSR_bsds500.tgz")):
        pytest.skip("Real data not found: set DANN_DATA_DIR to the folder with mnist.npz and BSR_bsds500.tgz "
                    "(here: ../shared/data).")
    path = str(tmp_path_factory.mktemp("mnistm") / "mnist_m.npz")
    build_mnistm(os.path.join(folder, "mnist.npz"), os.path.join(folder, "BSR_bsds500.tgz"), path, seed=42,
                 log=lambda *_: None)
    return load_mnistm(path)


@pytest.mark.parametrize("preset", ["paper", "long"])
def test_the_shipped_weights_reproduce_their_row_of_the_results(preset, real_mnistm):
    record_path = os.path.join(REPOSITORY, "docs", "results", f"results-{preset}-dann-seed0.json")
    with open(record_path, encoding="utf-8") as stream:
        record = json.load(stream)
    run = trained_run.load_run(os.path.join(REPOSITORY, "pretrained", preset))
    assert run.config.run_name == record["run"] and run.config.precision == record["precision"]
    shipped = accuracy(run.classifier, real_mnistm["x_test"], real_mnistm["y_test"])
    # Bit for bit on the machine that trained them; another CPU kind rounds the float32 sums in
    # another order, which can move an image that sits on a decision boundary (0.0001 each).
    assert shipped == pytest.approx(record["final"]["val/target_acc"], abs=0.0005)
