"""The shipped weights in pretrained/: each folder loads as a run, with its preset, and reads real digits."""

import os

import numpy as np
import pytest
import tensorflow as tf

from utils.data import pipeline
from utils.data.datasets import load_mnist
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
