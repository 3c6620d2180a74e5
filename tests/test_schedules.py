"""The paper's learning-rate and lambda schedules at hand-computed points."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from model import schedules


@pytest.mark.parametrize("progress, expected", [
    (0.0, 0.01),
    (0.5, 0.01 / 6.0 ** 0.75),   # 0.0026084743
    (1.0, 0.01 / 11.0 ** 0.75),  # 0.0016556003
])
def test_learning_rate(progress, expected):
    assert schedules.learning_rate(progress) == pytest.approx(expected, rel=1e-12)
    assert float(schedules.learning_rate(tf.constant(progress))) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("progress, expected", [
    (0.0, 0.0),
    (0.5, 2.0 / (1.0 + math.exp(-5.0)) - 1.0),   # 0.9866142982
    (1.0, 2.0 / (1.0 + math.exp(-10.0)) - 1.0),  # 0.9999092043
])
def test_grl_lambda(progress, expected):
    assert float(schedules.grl_lambda(progress)) == pytest.approx(expected, abs=1e-6)


def test_progress_is_clipped_to_the_unit_interval():
    assert float(schedules.progress(50, 200)) == 0.25
    assert float(schedules.progress(300, 200)) == 1.0


def test_optimizer_follows_the_schedule_by_its_step_counter():
    variable = keras.Variable(1.0)
    optimizer = keras.optimizers.SGD(schedules.PaperLearningRate(total_steps=10))
    optimizer.build([variable])
    for step in range(5):
        assert float(optimizer.learning_rate) == pytest.approx(
            schedules.learning_rate(step / 10), rel=1e-6)
        optimizer.apply_gradients([(np.float32(0.0), variable)])
    assert int(optimizer.iterations) == 5
