"""The gradient reversal layer (GRL) of Ganin & Lempitsky (2015), section 3.3.

Forward it is the identity; backward it multiplies the incoming gradient by
-lambda. Placed between the feature extractor and the domain classifier, it
lets one SGD step minimise the domain loss for the domain classifier while
maximising it for the features, which pushes the features to be
domain-invariant.
"""

import keras
import tensorflow as tf


def reverse_gradient(inputs, strength):
    """Returns `inputs` unchanged; the gradient flowing back is multiplied by -strength.

    `strength` is the paper's lambda. It is read as a tensor, so a compiled
    caller can change it every step without retracing.
    """

    @tf.custom_gradient
    def _reverse(features):
        def gradient(upstream):
            return -tf.cast(strength, upstream.dtype) * upstream

        return tf.identity(features), gradient

    return _reverse(inputs)


class GradientReversalLayer(keras.layers.Layer):
    """Keras layer around `reverse_gradient`, holding lambda in a non-trainable variable.

    The training step sets lambda each step with `set_strength(value)`, where
    value = 2 / (1 + exp(-gamma * p)) - 1 (see utils.schedules.grl_lambda).
    Setting 0 blocks every gradient from the domain classifier to the
    features, which is how the source-only baseline keeps training the domain
    classifier as a probe without adapting the features.
    """

    def __init__(self, initial_strength=0.0, **kwargs):
        super().__init__(**kwargs)
        # Not autocast: under a mixed dtype policy lambda stays float32, and
        # reverse_gradient casts it to the gradient's dtype itself.
        self.initial_strength = float(initial_strength)
        self.strength = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_strength),
            trainable=False, autocast=False, name="strength")

    def set_strength(self, value):
        self.strength.assign(tf.cast(value, self.strength.dtype))

    def call(self, inputs):
        return reverse_gradient(inputs, tf.convert_to_tensor(self.strength))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initial_strength": self.initial_strength}
