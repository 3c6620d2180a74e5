"""The DANN step against an independent computation, and the conventions it must keep.

The expected values are computed here from the trainer's weights with plain
TensorFlow ops (convolution, pooling, matrix products, log-softmax), not with
the project's networks, losses or schedules, so a mistake in any of those
shows up as a mismatch.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (SOURCE_TEST_SIZE, TARGET_TEST_SIZE, make_trainer, paper_schedules, tiny_config,
                      tiny_training_arrays, trained_weights as weights)
from utils.evaluation import metrics, trained_run

HALF_BATCH = 16  # tiny_config's batch_size is 32.
FEATURE_VARIABLES = 4  # conv1 kernel and bias, conv2 kernel and bias.
LABEL_VARIABLES = 6  # fc1, fc2 and logits of the label classifier.


# The networks written out with plain ops: conv 5x5 valid - ReLU - max-pool 2, twice,
# flatten; FC-ReLU-FC-ReLU-FC for labels; FC-ReLU-FC for domains.
def reference_features(variables, images):
    conv1_kernel, conv1_bias, conv2_kernel, conv2_bias = variables[:FEATURE_VARIABLES]
    hidden = tf.nn.relu(tf.nn.conv2d(images, conv1_kernel, 1, "VALID") + conv1_bias)
    hidden = tf.nn.max_pool2d(hidden, 2, 2, "VALID")
    hidden = tf.nn.relu(tf.nn.conv2d(hidden, conv2_kernel, 1, "VALID") + conv2_bias)
    hidden = tf.nn.max_pool2d(hidden, 2, 2, "VALID")
    return tf.reshape(hidden, [tf.shape(hidden)[0], -1])


def dense_stack(layer_variables, inputs):
    """Dense layers from (kernel, bias) pairs, ReLU between them, logits out."""
    pairs = list(zip(layer_variables[::2], layer_variables[1::2]))
    for kernel, bias in pairs[:-1]:
        inputs = tf.nn.relu(tf.matmul(inputs, kernel) + bias)
    kernel, bias = pairs[-1]
    return tf.matmul(inputs, kernel) + bias


def reference_logits(variables, images):
    """(label logits, domain logits) of the three networks, without any gradient reversal."""
    features = reference_features(variables, images)
    label_end = FEATURE_VARIABLES + LABEL_VARIABLES
    return (dense_stack(variables[FEATURE_VARIABLES:label_end], features),
            dense_stack(variables[label_end:], features))


def mean_cross_entropy(labels, logits):
    log_probabilities = tf.nn.log_softmax(logits)
    return -tf.reduce_mean(tf.gather(log_probabilities, labels, axis=1, batch_dims=1))


def expected_gradients(variables, batch, strength, label_half, domain_weight=1.0):
    """The DANN gradient of every variable, from the label and domain losses taken apart.

    features: label gradient - strength * domain_weight * domain gradient;
    domain classifier: domain_weight * the plain domain gradient; label
    classifier: the label gradient of the labelled half (source, or target in
    target_only).
    """
    source_images, source_labels, target_images, target_labels = batch
    count = len(source_labels)
    domain_labels = np.array([0] * count + [1] * count)  # 0 is source, 1 is target.
    variables = [tf.constant(value) for value in variables]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(variables)
        label_logits, domain_logits = reference_logits(
            variables, tf.concat([source_images, target_images], axis=0))
        if label_half == "source":
            label_loss = mean_cross_entropy(source_labels, label_logits[:count])
        else:
            label_loss = mean_cross_entropy(target_labels, label_logits[count:])
        domain_loss = mean_cross_entropy(domain_labels, domain_logits)
    label_gradients = tape.gradient(label_loss, variables, unconnected_gradients="zero")
    domain_gradients = tape.gradient(domain_loss, variables, unconnected_gradients="zero")
    return [label.numpy() - (strength if index < FEATURE_VARIABLES else -1.0) * domain_weight * domain.numpy()
            for index, (label, domain) in enumerate(zip(label_gradients, domain_gradients))]


def random_batch(seed):
    rng = np.random.default_rng(seed)
    images = lambda: rng.uniform(-0.5, 0.5, (HALF_BATCH, 28, 28, 3)).astype(np.float32)  # noqa: E731
    labels = lambda: rng.integers(0, 10, HALF_BATCH).astype(np.int32)  # noqa: E731
    return images(), labels(), images(), labels()


@pytest.mark.parametrize("mode, shards, settings", [
    ("dann", 1, {}), ("dann", 2, {}), ("source_only", 2, {}), ("target_only", 2, {}),
    ("dann", 2, {"lambda_max": 0.5, "domain_loss_weight": 2.0}),
])
def test_one_step_moves_each_network_along_its_own_gradient(tmp_path, mode, shards, settings):
    # Momentum 0: one SGD step moves each weight by -lr * its gradient, so the
    # gradient the step used is (before - after) / lr.
    trainer = make_trainer(tiny_config(tmp_path, mode=mode, batch_shards=shards, momentum=0.0,
                                       learning_rate=1.0, **settings))
    assert trainer.total_steps == 12
    step = 3  # p = 0.25: lambda = 0.848, lr = 0.391.
    trainer.optimizer.iterations.assign(step)
    rate, strength = paper_schedules(step, trainer.total_steps, initial_rate=1.0)
    strength *= settings.get("lambda_max", 1.0)
    if mode != "dann":
        strength = 0.0  # The baselines keep every domain gradient out of the features.
    before = weights(trainer)
    batch = random_batch(seed=11)
    trainer.dann_step.train_step(*(tf.constant(part) for part in batch))
    expected = expected_gradients(before, batch, strength,
                                  label_half="target" if mode == "target_only" else "source",
                                  domain_weight=settings.get("domain_loss_weight", 1.0))
    for index, (old, new, gradient) in enumerate(zip(before, weights(trainer), expected)):
        name = trainer.variables[index].path
        assert np.abs(gradient).max() > 0, name
        np.testing.assert_allclose((old - new) / rate, gradient, rtol=2e-3,
                                   atol=2e-3 * np.abs(gradient).max(), err_msg=name)
    assert int(trainer.optimizer.iterations) == step + 1


def test_in_dann_the_reversed_domain_gradient_is_large_enough_to_tell_apart(tmp_path):
    # Guards the test above: were lambda left at 0 or its sign flipped, the
    # feature gradients would differ from the expected ones by more than its tolerance.
    trainer = make_trainer(tiny_config(tmp_path))
    batch = random_batch(seed=11)
    variables = weights(trainer)
    with_reversal = expected_gradients(variables, batch, 0.848, "source")
    without = expected_gradients(variables, batch, 0.0, "source")
    for index in range(FEATURE_VARIABLES):
        difference = np.abs(with_reversal[index] - without[index]).max()
        assert difference > 0.05 * np.abs(without[index]).max()


@pytest.mark.parametrize("mode, reads_target_labels", [("dann", False), ("source_only", False),
                                                       ("target_only", True)])
def test_only_target_only_reads_the_target_labels(tmp_path, mode, reads_target_labels):
    trained = []
    for permute in (False, True):
        mnist, mnistm = tiny_training_arrays()
        if permute:
            mnistm["y_train"] = np.random.default_rng(3).permutation(mnistm["y_train"])
        trainer = make_trainer(tiny_config(tmp_path / str(permute), mode=mode), (mnist, mnistm))
        trainer.train_steps(tf.constant(6))
        trained.append(weights(trainer))
    identical = all(np.array_equal(first, second) for first, second in zip(*trained))
    assert identical != reads_target_labels


def set_domain_prediction(trainer, domain):
    """Makes the domain classifier predict `domain` for every image."""
    kernel, bias = trainer.networks.domain_classifier.get_layer("logits").weights
    kernel.assign(tf.zeros_like(kernel))
    bias.assign(tf.one_hot(domain, 2) * 10.0)


@pytest.mark.parametrize("domain", [0, 1])
def test_domain_label_0_is_source_and_1_is_target_in_validation(tmp_path, domain):
    trainer = make_trainer(tiny_config(tmp_path))
    set_domain_prediction(trainer, domain)
    right = SOURCE_TEST_SIZE if domain == 0 else TARGET_TEST_SIZE
    assert trainer.evaluate()["val/domain_acc"] == pytest.approx(
        right / (SOURCE_TEST_SIZE + TARGET_TEST_SIZE), abs=1e-6)


@pytest.mark.parametrize("domain", [0, 1])
def test_domain_label_0_is_source_and_1_is_target_in_evaluate(tmp_path, domain):
    trainer = make_trainer(tiny_config(tmp_path))
    set_domain_prediction(trainer, domain)
    run = trained_run.TrainedRun("tiny", trainer.networks.classifier(trainer.pixel_mean), trainer.config, "",
                                domain_networks=trainer.networks)
    mnist, mnistm = tiny_training_arrays()
    source = np.repeat(mnist["x_test"][..., None], 3, axis=-1)
    result = metrics.domain_accuracy(run, source, mnistm["x_test"])
    assert (result["source"], result["target"]) == ((1.0, 0.0) if domain == 0 else (0.0, 1.0))


def fed_images(mnist_images, binarize):
    """The source digits as training feeds them: RGB, binarized to 0/255 when asked."""
    gray = np.where(mnist_images > 0, 255, 0) if binarize else mnist_images
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float64)


@pytest.mark.parametrize("binarize", [True, False])
def test_the_pixel_mean_is_that_of_the_images_training_feeds(tmp_path, binarize):
    mnist, mnistm = tiny_training_arrays()
    trainer = make_trainer(tiny_config(tmp_path, binarize_source=binarize))
    fed = np.concatenate([fed_images(mnist["x_train"], binarize), mnistm["x_train"]])
    np.testing.assert_allclose(trainer.pixel_mean, fed.mean(axis=(0, 1, 2)), rtol=1e-6)


def test_with_random_colors_the_pixel_mean_takes_the_digits_at_their_mean_color(tmp_path):
    mnist, mnistm = tiny_training_arrays()
    trainer = make_trainer(tiny_config(tmp_path, color_source=True))
    digits = np.full(mnist["x_train"].shape + (3,), 127.5)
    fed = np.concatenate([digits, mnistm["x_train"]])
    np.testing.assert_allclose(trainer.pixel_mean, fed.mean(axis=(0, 1, 2)), rtol=1e-6)
    # The digits as drawn: 200 batches of 16 images. An image's mean over its
    # pixels and channels varies by about 74 / sqrt(3), so the mean of 3,200
    # is 127.5 with a standard deviation near 0.8.
    drawn = [next(trainer.iterator)[0].numpy() * 255 + trainer.pixel_mean for _ in range(200)]
    assert abs(np.mean(drawn) - 127.5) < 3


def test_evaluation_sums_over_batches_with_a_short_last_one(tmp_path):
    # Batches of 16: 40 source images are 16 + 16 + 8, 30 target images 16 + 14.
    trainer = make_trainer(tiny_config(tmp_path), evaluation_batch_size=16)
    trainer.train_steps(tf.constant(3))  # Away from the initial weights, so predictions vary.
    mnist, mnistm = tiny_training_arrays()
    variables = [tf.constant(value) for value in weights(trainer)]
    mean = np.asarray(trainer.pixel_mean)
    expected = {}
    for domain, (name, images, labels) in enumerate((
            ("source", fed_images(mnist["x_test"], binarize=True), mnist["y_test"]),
            ("target", mnistm["x_test"].astype(np.float64), mnistm["y_test"]))):
        label_logits, domain_logits = reference_logits(variables, ((images - mean) / 255).astype(np.float32))
        label_logits, domain_logits = label_logits.numpy(), domain_logits.numpy()
        expected[f"val/{name}_acc"] = np.mean(label_logits.argmax(axis=1) == labels)
        expected[f"val/{name}_loss"] = float(mean_cross_entropy(labels.astype(np.int32), label_logits))
        expected[f"{name}_domain_correct"] = np.sum(domain_logits.argmax(axis=1) == domain)
    expected["val/domain_acc"] = ((expected.pop("source_domain_correct") + expected.pop("target_domain_correct"))
                                  / (SOURCE_TEST_SIZE + TARGET_TEST_SIZE))
    results = trainer.evaluate()
    assert set(results) == set(expected)
    for tag, value in expected.items():
        assert results[tag] == pytest.approx(value, rel=1e-4, abs=1e-6), tag


def test_two_steps_follow_sgd_with_the_configured_momentum(tmp_path):
    # Keras SGD: velocity = momentum * velocity - lr * gradient; weight += velocity.
    trainer = make_trainer(tiny_config(tmp_path, momentum=0.9, learning_rate=1.0))
    weights_now = weights(trainer)
    velocity = [np.zeros_like(weight) for weight in weights_now]
    for step in range(2):
        rate, strength = paper_schedules(step, trainer.total_steps, initial_rate=1.0)
        batch = random_batch(seed=20 + step)
        gradients = expected_gradients(weights_now, batch, strength, "source")
        velocity = [0.9 * moved - rate * gradient for moved, gradient in zip(velocity, gradients)]
        weights_now = [weight + moved for weight, moved in zip(weights_now, velocity)]
        trainer.dann_step.train_step(*(tf.constant(part) for part in batch))
    for index, (actual, expected) in enumerate(zip(weights(trainer), weights_now)):
        np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-5, err_msg=trainer.variables[index].path)


def test_with_ema_evaluation_and_export_use_the_moving_average_and_training_the_weights(tmp_path):
    # Keras' SGD(use_ema): the average starts as the weights after the first
    # step, then average = 0.5 * average + 0.5 * weights after each step.
    trainer = make_trainer(tiny_config(tmp_path, ema_momentum=0.5))
    average = None
    for step in range(3):
        trainer.dann_step.train_step(*(tf.constant(part) for part in random_batch(seed=30 + step)))
        now = weights(trainer)
        average = now if average is None else [0.5 * old + 0.5 * new for old, new in zip(average, now)]
    classifier = keras.models.load_model(trainer.export())
    pixels = tiny_training_arrays()[1]["x_test"]
    normalized = ((pixels - np.asarray(trainer.pixel_mean)) / 255).astype(np.float32)
    expected = reference_logits([tf.constant(value) for value in average], normalized)[0].numpy()
    np.testing.assert_allclose(classifier.predict(pixels.astype(np.float32), verbose=0)["logits"], expected,
                               rtol=1e-4, atol=1e-5)
    assert trainer.evaluate()["val/target_acc"] == pytest.approx(
        np.mean(expected.argmax(axis=1) == tiny_training_arrays()[1]["y_test"]))
    for weight, after_step in zip(weights(trainer), now):  # Swapped back for training.
        np.testing.assert_array_equal(weight, after_step)
