"""Every label-free score of a trained run (utils/selection/validators.py), from its export and its
data: the features and predictions each score needs, computed once. No target label is read."""

import numpy as np
import tensorflow as tf

from model import cross_entropies
from utils.evaluation.features import feature_function
from utils.evaluation.trained_run import BATCH_SIZE
from utils.selection import validators


def outputs(classifier, domain, indices=None, keep_features=True, batch_size=BATCH_SIZE):
    """(features or None, softmax probabilities, logits) of the export on `domain`'s images at
    `indices` (default: all), as float32, float64 and float64 arrays."""
    features_of = feature_function(classifier)
    label_classifier = classifier.get_layer("label_classifier")
    indices = np.arange(len(domain)) if indices is None else np.asarray(indices)
    features, logits = [], []
    for start in range(0, len(indices), batch_size):
        pixels = domain.pixels(domain.load(indices[start:start + batch_size]))
        batch_features = features_of(tf.cast(pixels, tf.float32))
        if keep_features:
            features.append(np.asarray(batch_features, np.float32))
        logits.append(np.asarray(label_classifier(batch_features, training=False), np.float64))
    logits = np.concatenate(logits)
    return (np.concatenate(features) if keep_features else None), tf.nn.softmax(logits).numpy(), logits


def sample_indices(count, seed):
    """validators.sample's rows of a domain of `count` images."""
    return validators.sample([np.arange(count)], seed=seed)[0]


def label_free_scores(classifier, source, source_validation, target, seed=0):
    """Every score of validators.py for the export on the source training images, the held-out
    source images (with their true labels: source labels are allowed) and the target training
    images (without theirs), and the target probabilities that the reverse run self-labels from."""
    # The predictions of every target image; the features of a sample (seeded per domain, as in
    # validators.sample), which is all DEV and ClassAMI use.
    _, target_probabilities, _ = outputs(classifier, target, keep_features=False)
    target_rows = sample_indices(len(target), seed + 1)
    target_features, _, _ = outputs(classifier, target, target_rows)
    source_rows = sample_indices(len(source), seed)
    source_features, _, _ = outputs(classifier, source, source_rows)
    source_labels = source.labels.numpy()[source_rows]
    validation_features, _, validation_logits = outputs(classifier, source_validation)
    validation_losses = cross_entropies(source_validation.labels.numpy(), validation_logits).numpy()
    dev, discriminator_accuracy = validators.dev(source_features, target_features, validation_features,
                                                 validation_losses, seed)
    scores = {**validators.prediction_scores(target_probabilities), "dev": dev,
              "dev_discriminator_accuracy": discriminator_accuracy,
              "class_ami": validators.class_ami(source_features, source_labels, target_features,
                                                target_probabilities[target_rows], seed)}
    return scores, target_probabilities
