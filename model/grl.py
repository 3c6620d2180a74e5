"""The gradient reversal layer (GRL) of Ganin & Lempitsky (2015), section 3.3.

Forward it is the identity; backward it multiplies the incoming gradient by
-lambda. Placed between the feature extractor and the domain classifier, it
lets one SGD step minimize the domain loss for the domain classifier while
maximizing it for the features, which pushes the features to be
domain-invariant.
"""

import keras
import tensorflow as tf


def reverse_gradient(inputs, lambda_):
    """Returns `inputs` unchanged; the gradient flowing back is multiplied by -lambda_.

    lambda_ is read as a tensor, so a compiled caller can change it every
    step without retracing.
    """

    @tf.custom_gradient
    def _reverse(features):
        def gradient(upstream):
            return -tf.cast(lambda_, upstream.dtype) * upstream

        return tf.identity(features), gradient

    return _reverse(inputs)


class GradientReversalLayer(keras.layers.Layer):
    """Keras layer around `reverse_gradient`, holding lambda in a non-trainable variable.

    The training step sets lambda each step with `set_lambda(value)`, where
    value = 2 / (1 + exp(-gamma * p)) - 1 (model/schedules.grl_lambda).
    Setting 0 blocks every gradient from the domain classifier to the
    features, which is how the source-only baseline keeps training the domain
    classifier as a probe without adapting the features.
    """

    def __init__(self, initial_lambda=0.0, **kwargs):
        super().__init__(**kwargs)
        # Not autocast: under a mixed dtype policy lambda stays float32, and
        # reverse_gradient casts it to the gradient's dtype itself.
        self.initial_lambda = float(initial_lambda)
        self.lambda_ = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_lambda),
            trainable=False, autocast=False, name="lambda")

    def set_lambda(self, value):
        self.lambda_.assign(tf.cast(value, self.lambda_.dtype))

    def call(self, inputs):
        return reverse_gradient(inputs, tf.convert_to_tensor(self.lambda_))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initial_lambda": self.initial_lambda}
