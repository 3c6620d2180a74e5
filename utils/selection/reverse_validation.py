"""Reverse validation (Ganin et al., JMLR 2016, section 5.1.2, after Zhong et al., 2010) of a
trained classifier, which reads no target label (cheaper scores: validators.py).

Reverse validation of a classifier eta trained from the source S' to the target T':
1. eta labels the target training images T' with its argmax ("self-labelling");
2. the same algorithm, with the same settings, trains a reverse classifier
   eta_r from those self-labelled target images (its source) to the unlabelled
   source training images S' (its target);
3. eta_r's accuracy on source images held out of both trainings (S_V) is the
   reverse validation accuracy of eta. A higher one marks the better eta.

The paper holds out 10% of the source (and of the target, for early
stopping; this project reports final steps, so it has no use for it).
reverse_validation.py runs the procedure; this module holds its parts.
"""

import numpy as np
import tensorflow as tf

from utils.data import pipeline
from utils.evaluation import trained_run

def probabilities(classifier, domain):
    """(N, classes) float64 softmax of an exported classifier over every image of `domain`."""
    batches = [trained_run.predict_logits(classifier, batch) for _, batch in trained_run.float_batches(domain)]
    return tf.nn.softmax(np.concatenate(batches).astype(np.float64)).numpy()


def self_labels(probabilities_of_images):
    """The classifier's own labels: the argmax class of each image."""
    return np.argmax(probabilities_of_images, axis=1).astype(np.int32)


def source_validation(data):
    """S_V: the source images held out of training, else the source test set (labelled, never trained on)."""
    return data.source_validation if data.source_validation is not None else data.source_test


def reverse_data(data, target_labels, target_test_labels):
    """The reverse run's pipeline.DomainData: the domains' roles swapped.

    Its source is the forward target's training images with eta's labels, its
    target the forward source's training images (their labels unused), and it
    is tested on the forward target's test images, again with eta's labels,
    and on the held-out source images S_V with their true labels: the reverse
    validation accuracy. Each domain keeps how it turns a batch into pixels
    (gray digits to RGB, binarized), and the pixel mean, taken over the same
    two training domains, stays `data`'s.
    """
    return pipeline.DomainData(
        source=data.target.with_labels(target_labels), target=data.source,
        source_test=data.target_test.with_labels(target_test_labels), target_test=source_validation(data),
        pixel_mean=list(data.pixel_mean))

