"""Reverse validation (Ganin et al., JMLR 2016, section 5.1.2, after Zhong et al., 2010) of a
trained classifier, which reads no target label (cheaper scores: validators.py).

Reverse validation of a classifier eta trained from the source S to the target T:
1. eta labels the target training images with its argmax ("self-labelling");
2. the same algorithm, with the same settings, trains a reverse classifier
   eta_r from those self-labelled target images (its source) to the unlabelled
   source training images (its target);
3. eta_r's accuracy on source images held out of both trainings (S_V) is the
   reverse validation accuracy of eta. A higher one marks the better eta.

Two variants (reverse_validation.py --variant):

    paper  as the paper runs it: a seeded 10% of the target training images,
           T_V, is held out of the reverse run with eta's labels, and the
           reverse run stops early on its accuracy there ("the self-labeled
           validation set {(x, eta(x))} is used as an early stopping
           criterion during the learning of eta_r"); eta_r starts from eta's
           weights ("we also observed better accuracies when we initialized
           the learning of the reverse classifier with the configuration
           learned by the network eta"). The score is eta_r's S_V accuracy at
           its best evaluation on T_V.
    fresh  eta_r starts from new weights and trains a fixed budget on all the
           self-labelled target images; the score is its final step's.

reverse_validation.py runs the procedure; this module holds its parts.
"""

import numpy as np
import tensorflow as tf

from model.optimizer import moving_averages
from utils.data import pipeline, splits
from utils.evaluation import trained_run

# The paper's share of the target training images held out as T_V.
TARGET_VALIDATION_FRACTION = 0.1


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


def reverse_data(data, target_labels, target_test_labels, held_out_seed=None):
    """The reverse run's pipeline.DomainData: the domains' roles swapped.

    Its source is the forward target's training images with eta's labels, its
    target the forward source's training images (their labels unused), and it
    is tested on the forward target's test images, again with eta's labels,
    and on the held-out source images S_V with their true labels: the reverse
    validation accuracy. With held_out_seed (the paper's variant), a seeded
    TARGET_VALIDATION_FRACTION of the self-labelled target images is T_V:
    held out of the reverse source, it is the reverse run's source validation
    set, which early stopping watches. Each domain keeps how it turns a batch
    into pixels (gray digits to RGB, binarized), and the pixel mean, taken
    over the same two training domains, stays `data`'s.
    """
    source, validation = data.target.with_labels(target_labels), None
    if held_out_seed is not None:
        kept, held_out = splits.held_out_split(len(source), TARGET_VALIDATION_FRACTION, held_out_seed,
                                               splits.TARGET_VALIDATION_STREAM, at_least=1)
        source, validation = source.subset(kept), source.subset(held_out)
    return pipeline.DomainData(
        source=source, target=data.source,
        source_test=data.target_test.with_labels(target_test_labels), target_test=source_validation(data),
        pixel_mean=list(data.pixel_mean), source_validation=validation)


def start_from(networks, optimizer, run):
    """Sets the reverse run's networks to eta's weights; returns which networks started from them.

    The feature extractor and label classifier come from eta's export (the
    weights it is judged by, the moving averages where it kept them). The
    domain classifier comes from eta's checkpoint when the run folder has one,
    with its two outputs swapped, since source and target swap roles; an
    export alone holds none, and it then starts from new weights. The
    optimizer's moving averages, when it keeps them, restart from these weights.
    """
    for name in ("feature_extractor", "label_classifier"):
        getattr(networks, name).set_weights(run.classifier.get_layer(name).get_weights())
    started = ["feature_extractor", "label_classifier"]
    if run.domain_networks is not None:
        weights = run.domain_networks.domain_classifier.get_weights()
        # The logits layer's kernel (hidden, 2) and bias (2) are the last two arrays.
        weights[-2], weights[-1] = weights[-2][:, ::-1], weights[-1][::-1]
        networks.domain_classifier.set_weights(weights)
        started.append("domain_classifier (outputs swapped)")
    for average, variable in zip(moving_averages(optimizer) or [], networks.trainable_variables):
        average.assign(variable)
    return started
