"""The paper's MNIST architecture (Ganin et al., JMLR 2016, figure 4 and section 5.2).

    feature extractor: conv 5x5x32 - ReLU - max-pool 2 - conv 5x5x48 - ReLU - max-pool 2
    label classifier:  FC100 - ReLU - FC100 - ReLU - FC10
    domain classifier: GRL - FC100 - ReLU - FC2

Convolutions use 'valid' padding as in the original model (28 -> 24 -> 12 ->
8 -> 4), giving 4 * 4 * 48 = 768 features. The classifiers return logits;
the losses apply the softmax.

`dtype` is a Keras dtype policy (config.precision, utils/precision.py). Under
a mixed policy the layers compute in bfloat16 or float16 and keep float32
weights; the logits layers compute in float32 under every policy, so that the
losses and the softmax see float32 (as the Keras mixed precision guide advises).
"""

import keras
from keras import layers

from model.grl import GradientReversalLayer
from utils import precision

IMAGE_SHAPE = (28, 28, 3)
NUM_CLASSES = 10
NUM_DOMAINS = 2


def build_feature_extractor(conv1_filters=32, conv2_filters=48, kernel_size=5, dtype="float32"):
    return keras.Sequential([
        keras.Input(shape=IMAGE_SHAPE),
        layers.Conv2D(conv1_filters, kernel_size, activation="relu", name="conv1", dtype=dtype),
        layers.MaxPooling2D(2, name="pool1", dtype=dtype),
        layers.Conv2D(conv2_filters, kernel_size, activation="relu", name="conv2", dtype=dtype),
        layers.MaxPooling2D(2, name="pool2", dtype=dtype),
        layers.Flatten(name="flatten", dtype=dtype),
    ], name="feature_extractor")


def build_label_classifier(feature_size, hidden_units=100, dtype="float32"):
    return keras.Sequential([
        keras.Input(shape=(feature_size,)),
        layers.Dense(hidden_units, activation="relu", name="fc1", dtype=dtype),
        layers.Dense(hidden_units, activation="relu", name="fc2", dtype=dtype),
        layers.Dense(NUM_CLASSES, name="logits", dtype="float32"),
    ], name="label_classifier")


def build_domain_classifier(feature_size, hidden_units=100, dtype="float32"):
    return keras.Sequential([
        keras.Input(shape=(feature_size,)),
        GradientReversalLayer(name="gradient_reversal", dtype=dtype),
        layers.Dense(hidden_units, activation="relu", name="fc1", dtype=dtype),
        layers.Dense(NUM_DOMAINS, name="logits", dtype="float32"),
    ], name="domain_classifier")


class DANN:
    """The three networks of one run, built from a Config, in its precision."""

    def __init__(self, config):
        self.config = config
        self.dtype_policy, _ = precision.resolve(config.precision)
        self.feature_extractor = build_feature_extractor(
            config.conv1_filters, config.conv2_filters, config.kernel_size, self.dtype_policy)
        feature_size = self.feature_extractor.output_shape[-1]
        self.label_classifier = build_label_classifier(
            feature_size, config.label_hidden_units, self.dtype_policy)
        self.domain_classifier = build_domain_classifier(
            feature_size, config.domain_hidden_units, self.dtype_policy)
        self.gradient_reversal = self.domain_classifier.get_layer("gradient_reversal")

    @property
    def trainable_variables(self):
        return (self.feature_extractor.trainable_variables
                + self.label_classifier.trainable_variables
                + self.domain_classifier.trainable_variables)

    def classifier(self, pixel_mean):
        """Feature extractor + label classifier as one model taking raw RGB pixels (0..255).

        The normalisation (x - pixel_mean) / 255 is built in, so the exported
        model needs no preprocessing code beside it.
        """
        feature_extractor, label_classifier = self.feature_extractor, self.label_classifier
        if self.dtype_policy != "float32":
            # float32 copies with the same weights: the export computes in float32 whatever the
            # run trained in (a mixed policy keeps its weights in float32, so nothing is rounded).
            config = self.config
            feature_extractor = build_feature_extractor(config.conv1_filters, config.conv2_filters,
                                                        config.kernel_size)
            label_classifier = build_label_classifier(feature_extractor.output_shape[-1],
                                                      config.label_hidden_units)
            feature_extractor.set_weights(self.feature_extractor.get_weights())
            label_classifier.set_weights(self.label_classifier.get_weights())
        inputs = keras.Input(shape=IMAGE_SHAPE, name="rgb_pixels")
        normalised = layers.Normalization(
            mean=list(pixel_mean), variance=[255.0 ** 2] * 3, name="normalise")(inputs)
        logits = label_classifier(feature_extractor(normalised))
        return keras.Model(inputs, logits, name="dann_classifier")
