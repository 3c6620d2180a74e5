"""Measures of a classifier on labelled images: confusion matrices, accuracies, the domain accuracy.

Counts are summed over batches and divided once at the end, so a short last
batch weighs exactly as much as its images (no mean of per-batch means).
Images go in as raw pixels 0..255, converted to float32 one batch at a
time: the exported classifier normalizes them itself.
"""

import numpy as np

from utils.evaluation.features import feature_function
from utils.evaluation.trained_run import BATCH_SIZE, class_count, float_batches, predict_logits


def confusion_of(labels, logits, classes):
    """(classes, classes) int64 counts of one batch: rows the true class, columns the predicted one.

    The one way this project counts a classifier's answers: training's
    evaluations, evaluate.py, the domain accuracy and the folder evaluations
    all add these up.
    """
    truth = np.asarray(labels, np.int64)
    return np.bincount(truth * classes + np.argmax(logits, axis=-1),
                       minlength=classes ** 2).reshape(classes, classes)


def confusion_matrix(classifier, images, labels, batch_size=BATCH_SIZE):
    """The confusion matrix of an exported classifier on raw pixels, summed over batches."""
    confusion = None
    for start, batch in float_batches(images, batch_size):
        logits = predict_logits(classifier, batch)
        batch_confusion = confusion_of(labels[start:start + len(batch)], logits, logits.shape[-1])
        confusion = batch_confusion if confusion is None else confusion + batch_confusion
    if confusion is None:  # No images: the export says how many classes.
        confusion = np.zeros((class_count(classifier),) * 2, np.int64)
    return confusion


def accuracy(confusion):
    """Correct over seen: the trace over the total of a confusion matrix."""
    return float(np.trace(confusion) / max(confusion.sum(), 1))


def per_class_accuracy(confusion):
    """Accuracy per true class; None for a class with no test images."""
    seen = confusion.sum(axis=1)
    return [float(confusion[digit, digit] / seen[digit]) if seen[digit] else None
            for digit in range(len(confusion))]


def domain_accuracy(run, source_images, target_images, batch_size=BATCH_SIZE):
    """The domain classifier's accuracy on source (domain 0) and target (domain 1) images.

    Returns {"source": ..., "target": ..., "overall": ...}; overall is correct
    over seen on both sets together, as training's val/domain_acc.
    """
    features = feature_function(run.classifier, run.domain_networks.feature_extractor)
    confusions = []
    for domain, images in enumerate((source_images, target_images)):
        confusion = np.zeros((2, 2), np.int64)
        for _, batch in float_batches(images, batch_size):
            logits = run.domain_networks.domain_classifier(features(batch), training=False)
            confusion += confusion_of(np.full(len(batch), domain), np.asarray(logits), 2)
        confusions.append(confusion)
    return {"source": accuracy(confusions[0]), "target": accuracy(confusions[1]),
            "overall": accuracy(confusions[0] + confusions[1])}
