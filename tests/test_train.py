"""train.py on tiny synthetic data: the step's gradients, logs, checkpoints, resume, export."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import train
from config import Config
from conftest import REQUIRED_TAGS
from model import DANN
from utils import schedules, system
from utils.summaries import read_scalars

def tiny_arrays(size=96, test_size=40, seed=0):
    """MNIST-shaped and MNIST-M-shaped random uint8 arrays with random labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size).astype(np.uint8)
    test_labels = rng.integers(0, 10, test_size).astype(np.uint8)
    mnist = {"x_train": rng.integers(0, 256, (size, 28, 28), dtype=np.uint8), "y_train": labels,
             "x_test": rng.integers(0, 256, (test_size, 28, 28), dtype=np.uint8),
             "y_test": test_labels}
    mnistm = {"x_train": rng.integers(0, 256, (size, 28, 28, 3), dtype=np.uint8), "y_train": labels,
              "x_test": rng.integers(0, 256, (test_size, 28, 28, 3), dtype=np.uint8),
              "y_test": test_labels, "pixel_mean": np.array([120.0, 110.0, 100.0], np.float32)}
    return mnist, mnistm


def tiny_config(tmp_path, **overrides):
    # 96 images, 16 per half-batch: 6 steps an epoch; 2 epochs = 12 steps.
    settings = dict(epochs=2.0, batch_size=32, log_every=2, eval_every=4, checkpoint_every=6,
                    steps_per_call=3, log_dir=str(tmp_path / "logs"),
                    checkpoint_dir=str(tmp_path / "checkpoints"))
    return Config(**{**settings, **overrides})


def make_trainer(config):
    system.configure(config.seed, config.deterministic)
    return train.Trainer(config, *tiny_arrays())


def weights(trainer):
    return [variable.numpy() for variable in trainer.variables]


def test_a_short_run_writes_logs_config_checkpoint_and_export(tmp_path):
    config = tiny_config(tmp_path)
    trainer = make_trainer(config)
    final = trainer.run()
    assert trainer.total_steps == 12 and final["steps"] == 12
    run_logs = tmp_path / "logs" / config.name
    scalars = read_scalars(str(run_logs))
    assert REQUIRED_TAGS <= set(scalars)
    assert [step for step, _ in scalars["train/label_loss"]] == [2, 4, 6, 8, 10, 12]
    assert [step for step, _ in scalars["val/target_acc"]] == [4, 8, 12]
    for step, value in scalars["schedule/lambda"]:
        assert value == pytest.approx(float(schedules.grl_lambda(step / 12)), abs=1e-6)
    for step, value in scalars["schedule/learning_rate"]:
        assert value == pytest.approx(schedules.learning_rate(step / 12), rel=1e-5)
    assert json.loads((run_logs / "config.json").read_text()) == dataclasses.asdict(config)
    assert json.loads((run_logs / "final.json").read_text())["steps"] == 12
    checkpoint_dir = tmp_path / "checkpoints" / config.name
    assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith("ckpt-12")
    classifier = keras.models.load_model(str(checkpoint_dir / "classifier.keras"))
    images = tiny_arrays()[1]["x_test"][:5]
    assert classifier.predict(images.astype(np.float32), verbose=0).shape == (5, 10)


def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    uninterrupted = make_trainer(tiny_config(tmp_path / "a", deterministic=True))
    uninterrupted.run()

    config = tiny_config(tmp_path / "b", deterministic=True)
    interrupted = make_trainer(config)
    save = interrupted.manager.save

    def save_then_stop(checkpoint_number):
        save(checkpoint_number=checkpoint_number)
        raise KeyboardInterrupt  # As if the user pressed Ctrl-C right after the first checkpoint.

    interrupted.manager.save = save_then_stop
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert interrupted.step == 6

    resumed = make_trainer(config)
    resumed.run(resume=True)
    assert resumed.step == uninterrupted.step == 12
    for schedule_value, expected in zip(resumed.current_schedule(), uninterrupted.current_schedule()):
        assert float(schedule_value) == pytest.approx(float(expected), rel=1e-7)
    for resumed_weight, expected_weight in zip(weights(resumed), weights(uninterrupted)):
        np.testing.assert_array_equal(resumed_weight, expected_weight)


def test_slices_side_by_side_give_the_whole_batch_gradient(tmp_path):
    # 16 images per half batch: 1, 2 and 4 slices must train the same weights.
    trained = []
    for shards in (1, 2, 4):
        trainer = make_trainer(tiny_config(tmp_path / str(shards), batch_shards=shards,
                                           deterministic=True))
        assert trainer.shards == shards
        trainer.train_steps(tf.constant(4))
        trained.append((weights(trainer), {name: float(metric.result())
                                           for name, metric in trainer.metrics.items()}))
    (whole_weights, whole_metrics), *sliced = trained
    for slice_weights, slice_metrics in sliced:
        for slice_weight, whole_weight in zip(slice_weights, whole_weights):
            np.testing.assert_allclose(slice_weight, whole_weight, rtol=1e-4, atol=1e-6)
        assert slice_metrics == pytest.approx(whole_metrics, rel=1e-4)


def test_evaluation_is_the_same_for_any_number_of_slices(tmp_path):
    results = [make_trainer(tiny_config(tmp_path / str(shards), batch_shards=shards)).evaluate()
               for shards in (1, 2, 4)]
    for result in results[1:]:
        assert result == pytest.approx(results[0], rel=1e-5)


def test_resume_refuses_changed_settings_and_fresh_runs_refuse_to_overwrite(tmp_path):
    make_trainer(tiny_config(tmp_path)).run()
    with pytest.raises(train.TrainingError, match="Pass --resume"):
        make_trainer(tiny_config(tmp_path)).start(resume=False)
    with pytest.raises(train.TrainingError, match="differ from the saved run: learning_rate"):
        make_trainer(tiny_config(tmp_path, learning_rate=0.02)).start(resume=True)
    with pytest.raises(train.TrainingError, match="no checkpoint"):
        make_trainer(tiny_config(tmp_path, run_name="other")).start(resume=True)


def test_a_diverging_run_stops_with_a_message(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path, learning_rate=1e30, checkpoint_every=1))
    with pytest.raises(train.TrainingError, match="The loss became"):
        trainer.run()


def domain_gradients(networks, images, strength):
    """Gradient of the domain loss on the features, through the GRL and around it."""
    networks.gradient_reversal.set_strength(strength)
    features = networks.feature_extractor(images)
    domain_labels = tf.constant([0, 0, 1, 1])
    after_reversal = networks.domain_classifier.layers[1:]  # The classifier's own layers.
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        through_grl = train.cross_entropy(domain_labels, networks.domain_classifier(features))
        direct = features
        for layer in after_reversal:
            direct = layer(direct)
        own = train.cross_entropy(domain_labels, direct)
    return tape.gradient(through_grl, features), tape.gradient(own, features)


def test_in_dann_the_features_ascend_the_domain_loss():
    networks = DANN(Config())
    images = tf.random.normal([4, 28, 28, 3], seed=6)
    reversed_gradient, own_gradient = domain_gradients(networks, images, strength=0.8)
    assert np.abs(own_gradient.numpy()).sum() > 0
    np.testing.assert_allclose(reversed_gradient.numpy(), -0.8 * own_gradient.numpy(), rtol=1e-6)


@pytest.mark.parametrize("mode", ["source_only", "target_only"])
def test_baselines_keep_domain_gradients_out_of_the_features(tmp_path, mode):
    trainer = make_trainer(tiny_config(tmp_path, mode=mode))
    trainer.train_steps(tf.constant(3))
    _, strength = trainer.current_schedule()
    assert float(strength) == 0.0
    trainer.networks.gradient_reversal.set_strength(strength)
    images = tf.random.normal([4, 28, 28, 3], seed=7)
    with tf.GradientTape(persistent=True) as tape:
        features = trainer.networks.feature_extractor(images)
        loss = train.cross_entropy(tf.constant([0, 0, 1, 1]),
                                   trainer.networks.domain_classifier(features))
    feature_gradients = tape.gradient(loss, trainer.networks.feature_extractor.trainable_variables)
    assert all(not np.any(gradient.numpy()) for gradient in feature_gradients)
    # The domain classifier itself still learns: it is a probe of domain separability.
    probe_gradients = tape.gradient(loss, trainer.networks.domain_classifier.trainable_variables)
    assert any(np.any(gradient.numpy()) for gradient in probe_gradients)


def test_main_refuses_bad_arguments_before_any_work(capsys):
    assert train.main(["--epoch", "3"]) == 2
    assert "Unknown config key: 'epoch'" in capsys.readouterr().err
    assert train.main(["--batch_size", "7"]) == 2
    assert "batch_size must be even" in capsys.readouterr().err
