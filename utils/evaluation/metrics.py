"""Measures of a classifier on labelled images: confusion matrices, accuracies, the domain accuracy.

Counts are summed over batches and divided once at the end, so a short last
batch weighs exactly as much as its images (no mean of per-batch means).
Images go in as raw pixels 0..255, converted to float32 one batch at a
time: the exported classifier normalizes them itself.
"""

import numpy as np

from utils.evaluation.features import feature_function
from utils.evaluation.trained_run import BATCH_SIZE, class_count, float_batches, predict_logits


def confusion_matrix(classifier, images, labels, batch_size=BATCH_SIZE):
    """(classes, classes) int64 counts, rows the true class, columns the predicted one, summed over batches."""
    confusion = None
    for start, batch in float_batches(images, batch_size):
        logits = predict_logits(classifier, batch)
        classes = logits.shape[-1]
        if confusion is None:
            confusion = np.zeros((classes, classes), np.int64)
        truth = np.asarray(labels[start:start + len(batch)], np.int64)
        confusion += np.bincount(truth * classes + np.argmax(logits, axis=-1),
                                 minlength=classes ** 2).reshape(classes, classes)
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
    over seen on both sets together, as train.py's val/domain_acc.
    """
    features = feature_function(run.classifier, run.domain_networks.feature_extractor)
    correct, seen = [], []
    for domain, images in enumerate((source_images, target_images)):
        hits = 0
        for _, batch in float_batches(images, batch_size):
            logits = run.domain_networks.domain_classifier(features(batch), training=False)
            hits += int(np.sum(np.argmax(np.asarray(logits), axis=-1) == domain))
        correct.append(hits)
        seen.append(len(images))
    return {"source": correct[0] / max(seen[0], 1), "target": correct[1] / max(seen[1], 1),
            "overall": sum(correct) / max(sum(seen), 1)}


