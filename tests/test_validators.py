"""The label-free scores of utils/selection/validators.py on inputs whose scores are known."""

import math

import numpy as np
import pytest

from utils.selection import validators


def one_hot(labels, classes=10):
    return np.eye(classes)[np.asarray(labels)]


def test_bnm_scores_confident_diverse_predictions_above_collapsed_and_uniform_ones():
    count, classes = 40, 10
    spread = one_hot(np.arange(count) % classes)
    collapsed = one_hot(np.zeros(count, int))
    uniform = np.full((count, classes), 1 / classes)
    assert validators.bnm(spread) == pytest.approx(math.sqrt(classes / count))
    assert validators.bnm(collapsed) == pytest.approx(1 / math.sqrt(count))
    assert validators.bnm(uniform) == pytest.approx(1 / math.sqrt(count * classes))


def test_snd_is_the_mean_entropy_of_each_images_softmax_over_its_neighbours():
    # 4 clusters of 5 identical one-hot predictions: each image sees 4 neighbours at cosine 1 and
    # 15 at cosine 0, whatever the cluster, so its softmax's entropy is known in closed form.
    clusters, size, temperature = 4, 5, 0.5
    probabilities = one_hot(np.repeat(np.arange(clusters), size), classes=clusters)
    count = clusters * size
    inside, outside = size - 1, count - size
    normaliser = inside * math.exp(1 / temperature) + outside
    p_inside, p_outside = math.exp(1 / temperature) / normaliser, 1 / normaliser
    expected = -(inside * p_inside * math.log(p_inside) + outside * p_outside * math.log(p_outside))
    assert validators.snd(probabilities, temperature) == pytest.approx(expected)
    # Scored in blocks of rows, the same.
    assert validators.snd(probabilities, temperature, rows_at_once=3) == pytest.approx(expected)
    # Denser neighbourhoods score higher: 2 clusters of 10 against 10 clusters of 2.
    dense = one_hot(np.repeat(np.arange(2), 10), classes=10)
    sparse = one_hot(np.repeat(np.arange(10), 2), classes=10)
    assert validators.snd(dense) > validators.snd(sparse)


def test_dev_risk_is_the_weighted_loss_with_the_weights_as_control_variate():
    losses = np.array([2.0, 0.0, 1.0, 3.0])
    # Equal weights: no correction, the mean loss.
    assert validators.dev_risk(np.ones(4), losses) == pytest.approx(1.5)
    # By hand: w l = (1, 0), Cov(w l, w) = -1, Var(w) = 2, so eta = 0.5 and the risk is
    # mean(w l) + eta mean(w) - eta = 0.5 + 0.75 - 0.5.
    assert validators.dev_risk([0.5, 2.5], [2.0, 0.0]) == pytest.approx(0.75)


def test_dev_weights_the_source_images_that_look_like_the_target():
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 1.0, (800, 2))
    target = rng.normal([3.0, 0.0], 1.0, (800, 2))
    # One weight decay of the three keeps the test short; the choice among them is not what it checks.
    one = dict(weight_decays=(1e-3,))
    ratios, accuracy = validators.density_ratios(source, target, np.array([[0.0, 0.0], [3.0, 0.0]]), **one)
    assert accuracy > 0.85 and ratios[1] > 1 > ratios[0] and ratios[1] > 5 * ratios[0]
    # Two classifiers with the same mean source validation loss: the one whose errors sit on the
    # target's side of the source is judged worse.
    validation = rng.normal(0.0, 1.0, (400, 2))
    errors_near_target = np.where(validation[:, 0] > 1, 2.0, 0.1)
    errors_far_from_target = np.where(-validation[:, 0] > 1, 2.0, 0.1)
    assert abs(errors_near_target.mean() - errors_far_from_target.mean()) < 0.2
    near, _ = validators.dev(source, target, validation, errors_near_target, **one)
    far, _ = validators.dev(source, target, validation, errors_far_from_target, **one)
    assert near < far
    # One distribution: the discriminator cannot tell them apart, and the ratios stay near 1.
    ratios, accuracy = validators.density_ratios(source, rng.normal(0.0, 1.0, (800, 2)), validation[:2], **one)
    assert accuracy < 0.6 and np.all((ratios > 0.5) & (ratios < 2.0))


def test_class_ami_is_high_when_the_features_cluster_by_the_classifiers_classes():
    rng = np.random.default_rng(0)
    classes, per_class = 4, 50
    centres = np.eye(classes, 8) * 5
    labels = np.repeat(np.arange(classes), per_class)
    source = centres[labels] + rng.normal(0, 0.3, (len(labels), 8))
    target = centres[labels] + rng.normal(0, 0.3, (len(labels), 8))
    agreeing = validators.class_ami(source, labels, target, one_hot(labels, classes))
    random_predictions = one_hot(rng.integers(0, classes, len(labels)), classes)
    disagreeing = validators.class_ami(source, labels, target, random_predictions)
    assert agreeing == pytest.approx(1.0) and disagreeing < 0.7


def test_samples_are_seeded_and_shared_across_arrays():
    first, second = np.arange(30), np.arange(30) * 10
    a, b = validators.sample([first, second], size=5, seed=3)
    assert np.array_equal(b, a * 10) and len(a) == 5
    assert np.array_equal(validators.sample([first], size=5, seed=3)[0], a)
    assert validators.sample([first], size=30)[0] is first
