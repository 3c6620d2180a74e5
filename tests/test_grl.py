"""The gradient reversal layer: identity forward, -lambda * upstream backward."""

import numpy as np
import pytest
import tensorflow as tf

from model import GradientReversalLayer, reverse_gradient


def gradient_through(layer, inputs, upstream):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs)
        # d(sum(outputs * upstream)) / d(outputs) = upstream.
        objective = tf.reduce_sum(outputs * upstream)
    return outputs, tape.gradient(objective, inputs)


def test_forward_is_the_identity():
    inputs = tf.random.normal([4, 7], seed=1)
    layer = GradientReversalLayer(initial_lambda=0.7)
    np.testing.assert_array_equal(layer(inputs).numpy(), inputs.numpy())


@pytest.mark.parametrize("strength", [0.0, 0.25, 1.0, 3.5])
def test_gradient_is_minus_lambda_times_upstream(strength):
    inputs = tf.random.normal([5, 3], seed=2)
    upstream = tf.random.normal([5, 3], seed=3)
    layer = GradientReversalLayer()
    layer.set_lambda(strength)
    outputs, gradient = gradient_through(layer, inputs, upstream)
    np.testing.assert_array_equal(outputs.numpy(), inputs.numpy())
    np.testing.assert_allclose(gradient.numpy(), -strength * upstream.numpy(), rtol=0, atol=0)


def test_function_form_takes_a_tensor_strength():
    inputs = tf.constant([[1.0, -2.0]])
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = reverse_gradient(inputs, tf.constant(0.5))
    np.testing.assert_array_equal(tape.gradient(outputs, inputs).numpy(), [[-0.5, -0.5]])


def test_lambda_changes_inside_a_compiled_function_without_retracing():
    layer = GradientReversalLayer()
    inputs = tf.random.normal([3, 4], seed=4)
    upstream = tf.random.normal([3, 4], seed=5)
    traces = []

    @tf.function
    def compiled_gradient(strength):
        traces.append(1)  # Python side effect: runs only while tracing.
        layer.set_lambda(strength)
        return gradient_through(layer, inputs, upstream)[1]

    for strength in (0.0, 0.1, 0.9, 2.0):
        gradient = compiled_gradient(tf.constant(strength))
        np.testing.assert_allclose(gradient.numpy(), -strength * upstream.numpy(), rtol=1e-7)
    assert len(traces) == 1
