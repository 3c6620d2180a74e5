"""The DANN loss: the objective of Ganin & Lempitsky (ICML 2015, section 3) and Ganin et al.
(JMLR 2016, section 4), in the form that one SGD step minimizes for every network:

    E = L_y + w * L_d

L_y is the cross-entropy of the label classifier on the labelled half of the
batch (the source images; the target ones in the target_only baseline), L_d
the cross-entropy of the domain classifier on all of it, domain 0 for the
source and 1 for the target. w is config.domain_loss_weight (the paper: 1).
The paper's lambda does not appear: the GRL (model/grl.py) applies it to the
gradient on its way into the features, so L_d trains the domain classifier
at full strength while the features ascend lambda * L_d.
"""

import tensorflow as tf


def cross_entropies(labels, logits):
    """The cross-entropy of each example, in float32 under every precision."""
    logits = tf.cast(logits, tf.float32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def dann_loss(labels, label_logits, domain_labels, domain_logits, domain_loss_weight=1.0,
              labelled_count=None, batch_count=None):
    """(E, L_y, L_d) of one batch, or of one part of it.

    Each loss is a sum over the examples given, divided by labelled_count or
    batch_count: the counts of the whole batch when this is one part of it
    (a slice or a replica's share), so that the parts' losses and gradients
    add up to the whole batch's. None: the examples given are the batch.
    """
    label_loss = tf.nn.compute_average_loss(cross_entropies(labels, label_logits),
                                            global_batch_size=labelled_count)
    domain_loss = tf.nn.compute_average_loss(cross_entropies(domain_labels, domain_logits),
                                             global_batch_size=batch_count)
    return label_loss + domain_loss_weight * domain_loss, label_loss, domain_loss


def correct(labels, logits):
    """How many examples the logits classify right, as a float."""
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.float32))
