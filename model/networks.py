"""The paper's MNIST architecture (Ganin et al., JMLR 2016, figure 4 and section 5.2).

    feature extractor: conv 5x5x32 - ReLU - max-pool 2 - conv 5x5x48 - ReLU - max-pool 2
    label classifier:  FC100 - ReLU - FC100 - ReLU - FC10
    domain classifier: GRL - FC100 - ReLU - FC2

Convolutions use 'valid' padding as in the original model (28 -> 24 -> 12 ->
8 -> 4), giving 4 * 4 * 48 = 768 features. The classifiers return logits;
the losses apply the softmax. The input size and the number of classes come
from the Config (image folders may have other sizes and classes than MNIST);
config.smallest_image_size is the smallest side this arithmetic allows.

`dtype` is a Keras dtype policy (config.precision, utils/runtime/precision.py). Under
a mixed policy the layers compute in bfloat16 or float16 and keep float32
weights; the logits layers compute in float32 under every policy, so that the
losses and the softmax see float32 (as the Keras mixed precision guide advises).
"""

import keras
import tensorflow as tf
from keras import layers

from model.grl import GradientReversalLayer

NUM_DOMAINS = 2


def build_feature_extractor(image_shape=(28, 28, 3), conv1_filters=32, conv2_filters=48, kernel_size=5,
                            dtype="float32"):
    return keras.Sequential([
        keras.Input(shape=image_shape),
        layers.Conv2D(conv1_filters, kernel_size, activation="relu", name="conv1", dtype=dtype),
        layers.MaxPooling2D(2, name="pool1", dtype=dtype),
        layers.Conv2D(conv2_filters, kernel_size, activation="relu", name="conv2", dtype=dtype),
        layers.MaxPooling2D(2, name="pool2", dtype=dtype),
        layers.Flatten(name="flatten", dtype=dtype),
    ], name="feature_extractor")


def build_label_classifier(feature_size, hidden_units=100, num_classes=10, dtype="float32"):
    return keras.Sequential([
        keras.Input(shape=(feature_size,)),
        layers.Dense(hidden_units, activation="relu", name="fc1", dtype=dtype),
        layers.Dense(hidden_units, activation="relu", name="fc2", dtype=dtype),
        layers.Dense(num_classes, name="logits", dtype="float32"),
    ], name="label_classifier")


def build_domain_classifier(feature_size, hidden_units=100, dtype="float32"):
    return keras.Sequential([
        keras.Input(shape=(feature_size,)),
        GradientReversalLayer(name="gradient_reversal", dtype=dtype),
        layers.Dense(hidden_units, activation="relu", name="fc1", dtype=dtype),
        layers.Dense(NUM_DOMAINS, name="logits", dtype="float32"),
    ], name="domain_classifier")


class Networks:
    """The three networks of one run, built from a Config, in the Keras dtype policy `dtype`."""

    def __init__(self, config, dtype="float32"):
        self.config = config
        self.image_shape = config.image_shape
        self.class_names = config.classes
        self.dtype_policy = dtype
        self.feature_extractor, self.label_classifier = self.build_classifier_parts(self.dtype_policy)
        self.domain_classifier = build_domain_classifier(
            self.feature_extractor.output_shape[-1], config.domain_hidden_units, self.dtype_policy)
        self.gradient_reversal = self.domain_classifier.get_layer("gradient_reversal")

    def build_classifier_parts(self, dtype):
        """A new feature extractor and label classifier of this run's shapes, in `dtype`."""
        config = self.config
        feature_extractor = build_feature_extractor(
            config.image_shape, config.conv1_filters, config.conv2_filters, config.kernel_size, dtype)
        label_classifier = build_label_classifier(feature_extractor.output_shape[-1],
                                                  config.label_hidden_units, len(config.classes), dtype)
        return feature_extractor, label_classifier

    def checkpoint(self, optimizer=None):
        """The tf.train.Checkpoint of a run: the three networks, and the optimizer when given.

        Training saves and restores this map, and evaluation restores it, so
        the names in a checkpoint are written in this one place.
        """
        parts = dict(feature_extractor=self.feature_extractor, label_classifier=self.label_classifier,
                     domain_classifier=self.domain_classifier)
        return tf.train.Checkpoint(**parts, **({"optimizer": optimizer} if optimizer is not None else {}))

    @property
    def trainable_variables(self):
        return (self.feature_extractor.trainable_variables
                + self.label_classifier.trainable_variables
                + self.domain_classifier.trainable_variables)

    def classifier(self, pixel_mean):
        """Feature extractor + label classifier as one model taking raw pixels (0..255).

        The normalization (x - pixel_mean) / 255 is built in, so the exported
        model needs no preprocessing code beside it. It returns a dict:
        "logits", "probabilities" (softmax) and "class_name", the name of the
        most probable class. The names live in a StringLookup layer, a Keras
        built-in, so loading the file needs no code of this project:
        model.get_layer("class_names").get_vocabulary() lists them in label order.
        """
        feature_extractor, label_classifier = self.feature_extractor, self.label_classifier
        if self.dtype_policy != "float32":
            # float32 copies with the same weights: the export computes in float32 whatever the
            # run trained in (a mixed policy keeps its weights in float32, so nothing is rounded).
            feature_extractor, label_classifier = self.build_classifier_parts("float32")
            feature_extractor.set_weights(self.feature_extractor.get_weights())
            label_classifier.set_weights(self.label_classifier.get_weights())
        channels = self.image_shape[-1]
        inputs = keras.Input(shape=self.image_shape, name="pixels")
        normalized = layers.Normalization(
            mean=list(pixel_mean), variance=[255.0 ** 2] * channels, name="normalise")(inputs)
        logits = label_classifier(feature_extractor(normalized))
        probabilities = layers.Softmax(name="probabilities")(logits)
        class_name = layers.StringLookup(vocabulary=list(self.class_names), invert=True,
                                         num_oov_indices=0, name="class_names")(
            keras.ops.argmax(logits, axis=-1))
        return keras.Model(inputs, {"logits": logits, "probabilities": probabilities,
                                    "class_name": class_name}, name="dann_classifier")
