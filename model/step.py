"""The DANN training step: one pass of the feature extractor over a batch, the loss, the gradients.

A batch is half source and half target images. The feature extractor sees
both halves in one pass; the label classifier is scored on the labelled half
(source, or target in the target_only baseline) and the domain classifier on
all of it (model/loss.py). The GRL inside the domain classifier flips the
domain gradient on its way into the features (model/grl.py), so one step of
SGD on every weight trains all three networks at once.

This is the maths alone. utils/training/step.py runs it on slices of a
batch side by side and on tf.distribute replicas, and applies the gradients.
"""

import tensorflow as tf

from model.loss import correct, dann_loss


def domain_labels(half):
    """0 for each of the first `half` images (source), 1 for each of the next `half` (target)."""
    return tf.concat([tf.zeros([half], tf.int32), tf.ones([half], tf.int32)], axis=0)


def gradients(networks, variables, batch, labelled_half="source", domain_loss_weight=1.0,
              labelled_count=None, batch_count=None, scale_loss=None):
    """The gradients of the DANN loss on `batch` with respect to `variables`, and its metrics.

    batch: (source images, source labels, target images, target labels),
    as many source as target images. labelled_count and batch_count are the
    whole batch's counts when `batch` is one part of it (dann_loss), so that
    the losses and metrics of all parts add up to the batch's means.
    scale_loss (mixed_float16's loss scaling) is applied to the loss before
    differentiating; the optimizer scales the gradients back.
    """
    source_images, source_labels, target_images, target_labels = batch
    half = tf.shape(source_images)[0]
    images = tf.concat([source_images, target_images], axis=0)
    domains = domain_labels(half)
    labelled_count = labelled_count or half
    batch_count = batch_count or 2 * half
    with tf.GradientTape() as tape:
        features = networks.feature_extractor(images, training=True)
        label_logits = networks.label_classifier(features, training=True)
        domain_logits = networks.domain_classifier(features, training=True)
        if labelled_half == "target":
            labels, labelled_logits = target_labels, label_logits[half:]
        else:
            labels, labelled_logits = source_labels, label_logits[:half]
        total_loss, label_loss, domain_loss = dann_loss(labels, labelled_logits, domains, domain_logits,
                                                        domain_loss_weight, labelled_count, batch_count)
        scaled_loss = scale_loss(total_loss) if scale_loss else total_loss
    metrics = {"label_loss": label_loss, "domain_loss": domain_loss, "total_loss": total_loss,
               f"{labelled_half}_acc": correct(labels, labelled_logits) / tf.cast(labelled_count, tf.float32),
               "domain_acc": correct(domains, domain_logits) / tf.cast(batch_count, tf.float32)}
    return tape.gradient(scaled_loss, variables), metrics
