"""model/ on its own: the loss as a pure function, the one checkpoint map, and the moving averages,
which Keras keeps in a private attribute."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from config import Config
from model import Networks, dann_loss
from model.optimizer import moving_averages, paper_optimizer


def test_the_dann_loss_is_the_label_loss_plus_the_weighted_domain_loss():
    labels, label_logits = tf.constant([0, 1]), tf.constant([[2.0, 0.0], [0.0, 1.0]])
    domains, domain_logits = tf.constant([0, 0, 1, 1]), tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    total, label_loss, domain_loss = dann_loss(labels, label_logits, domains, domain_logits, domain_loss_weight=0.5)

    def mean_cross_entropy(truth, logits):
        logits = np.asarray(logits, np.float64)
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -np.mean(log_softmax[np.arange(len(truth)), np.asarray(truth)])

    assert float(label_loss) == pytest.approx(mean_cross_entropy(labels, label_logits), rel=1e-6)
    assert float(domain_loss) == pytest.approx(mean_cross_entropy(domains, domain_logits), rel=1e-6)
    assert float(total) == pytest.approx(float(label_loss) + 0.5 * float(domain_loss), rel=1e-6)
    # As one part of a batch twice its size, each loss is its sum over the whole batch's count.
    _, part_label_loss, part_domain_loss = dann_loss(labels, label_logits, domains, domain_logits,
                                                     labelled_count=4, batch_count=8)
    assert float(part_label_loss) == pytest.approx(float(label_loss) / 2, rel=1e-6)
    assert float(part_domain_loss) == pytest.approx(float(domain_loss) / 2, rel=1e-6)


def test_the_checkpoint_map_names_the_three_networks_and_the_optimizer(tmp_path):
    networks = Networks(Config())
    optimizer = paper_optimizer(Config(), total_steps=10)
    optimizer.build(networks.trainable_variables)
    without = [name for name, _ in tf.train.list_variables(networks.checkpoint().write(str(tmp_path / "networks")))]
    for part in ("feature_extractor", "label_classifier", "domain_classifier"):
        assert any(name.startswith(part + "/") for name in without), part
    assert not any(name.startswith("optimizer/") for name in without)
    # With the optimizer, the weights are saved once, under the optimizer that trains them.
    names = [name for name, _ in tf.train.list_variables(networks.checkpoint(optimizer).write(str(tmp_path / "map")))]
    assert sum(name.startswith("optimizer/_trainable_variables/") for name in names) == len(networks.trainable_variables)


def test_the_moving_averages_are_read_where_keras_keeps_them():
    # Keras' SwapEMAWeights reads the same private attribute. A Keras release
    # that renames it fails here, loudly, rather than evaluating the raw weights.
    config = Config(ema_momentum=0.5)
    networks = Networks(config)
    optimizer = paper_optimizer(config, total_steps=10)
    optimizer.build(networks.trainable_variables)
    assert hasattr(optimizer, "_model_variables_moving_average"), (
        f"Keras {keras.__version__} keeps the weights' moving averages elsewhere: update "
        "model/optimizer.moving_averages.")
    averages = moving_averages(optimizer)
    assert len(averages) == len(networks.trainable_variables)
    assert [average.shape for average in averages] == [variable.shape for variable in networks.trainable_variables]
    assert moving_averages(paper_optimizer(Config(), total_steps=10)) is None
    # Under mixed_float16's loss scaling, the averages are the wrapped optimizer's.
    scaled = paper_optimizer(config, total_steps=10, loss_scaling=True)
    scaled.build(networks.trainable_variables)
    assert len(moving_averages(scaled)) == len(networks.trainable_variables)
