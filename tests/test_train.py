"""train.py on tiny synthetic data: logs, checkpoints, resume, divergence, slices and the export."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import train
from config import Config
from utils.cli import parse_overrides
from conftest import (REQUIRED_TAGS, make_trainer, paper_schedules, stop_at, tiny_config,
                      tiny_training_arrays, trained_weights as weights, write_fake_mnist, write_fake_mnistm)
from model import Networks, cross_entropies
from utils.data.datasets import load_mnist
from utils.errors import TrainingError
from utils.runtime import precision
from utils.training.stopping import TrainingStopped
from utils.training.summaries import read_scalars


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
    # The values the next step uses, at p = step / 12.
    for step, value in scalars["schedule/lambda"]:
        assert value == pytest.approx(paper_schedules(step, 12, 0.01)[1], abs=1e-6)
    for step, value in scalars["schedule/learning_rate"]:
        assert value == pytest.approx(paper_schedules(step, 12, 0.01)[0], rel=1e-5)
    assert Config(**json.loads((run_logs / "config.json").read_text())) == config
    assert json.loads((run_logs / "final.json").read_text())["steps"] == 12
    checkpoint_dir = tmp_path / "checkpoints" / config.name
    assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith("ckpt-12")
    assert os.path.isfile(checkpoint_dir / "classifier.keras")


def test_target_only_logs_the_accuracy_of_the_half_it_trains_on(tmp_path):
    config = tiny_config(tmp_path, mode="target_only", epochs=1.0)
    make_trainer(config).run()
    tags = set(read_scalars(str(tmp_path / "logs" / config.name)))
    assert "train/target_acc" in tags and "train/source_acc" not in tags


def networks_logits(trainer, pixels):
    """The networks' logits on (pixels - pixel_mean) / 255, the normalization written out here."""
    normalized = (pixels.astype(np.float64) - np.asarray(trainer.pixel_mean)) / 255.0
    features = trainer.networks.feature_extractor(normalized.astype(np.float32), training=False)
    return trainer.networks.label_classifier(features, training=False).numpy()


def exported_classifier(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path))
    trainer.train_steps(tf.constant(3))
    return trainer, keras.models.load_model(trainer.export())


def test_the_export_takes_raw_pixels_and_gives_the_networks_logits(tmp_path):
    trainer, classifier = exported_classifier(tmp_path)
    pixels = tiny_training_arrays()[1]["x_test"]
    np.testing.assert_allclose(classifier.predict(pixels.astype(np.float32), verbose=0)["logits"],
                               networks_logits(trainer, pixels), rtol=1e-4, atol=1e-5)


def test_the_export_gives_the_networks_logits_on_real_digits(tmp_path, real_data_dir):
    trainer, classifier = exported_classifier(tmp_path)
    digits = load_mnist(os.path.join(real_data_dir, "mnist.npz"))[2][:500]
    pixels = np.repeat(np.where(digits > 0, 255, 0).astype(np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_allclose(classifier.predict(pixels.astype(np.float32), verbose=0)["logits"],
                               networks_logits(trainer, pixels), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("checkpoint_every, stop_step, restored_step", [
    (6, 8, 6),  # A stop between checkpoints, resumed from an epoch boundary.
    (4, 7, 4),  # A stop between checkpoints, resumed from the middle of an epoch (6 steps).
])
def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path, checkpoint_every, stop_step, restored_step):
    settings = dict(checkpoint_every=checkpoint_every, log_every=1, steps_per_call=1)
    uninterrupted = make_trainer(tiny_config(tmp_path / "a", **settings))
    uninterrupted.run()

    config = tiny_config(tmp_path / "b", **settings)
    interrupted = make_trainer(config)
    stop_at(interrupted, stop_step)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert interrupted.step == stop_step

    resumed = make_trainer(config)
    resumed.start(resume=True)
    assert resumed.step == restored_step
    resumed.run(resume=True)
    assert resumed.step == 12
    learning_rate, strength = resumed.dann_step.current_schedule()
    # Bit-identical on any CPU: both runs train in this process, so under one
    # runtime configuration (threads, slices, devices), with op determinism.
    assert float(strength) == pytest.approx(paper_schedules(12, 12, 0.01)[1], rel=1e-6)
    assert float(learning_rate) == pytest.approx(
        paper_schedules(12, 12, 0.01)[0], rel=1e-6)
    for resumed_weight, expected_weight in zip(weights(resumed), weights(uninterrupted)):
        np.testing.assert_array_equal(resumed_weight, expected_weight)
    # Each step is logged once: the points the stopped run wrote after its checkpoint are gone.
    scalars = read_scalars(str(tmp_path / "b" / "logs" / config.name))
    for tag, points in scalars.items():
        assert [step for step, _ in points] == sorted({step for step, _ in points}), tag
    assert len(scalars["train/label_loss"]) == 12


def test_a_run_stopped_before_its_first_checkpoint_starts_again(tmp_path):
    config = tiny_config(tmp_path, log_every=1, steps_per_call=1)
    for resume in (False, False, True):  # Stopped twice, then --resume.
        trainer = make_trainer(config)
        stop_at(trainer, 3)
        with pytest.raises(KeyboardInterrupt):
            trainer.run(resume=resume)
        assert trainer.manager.latest_checkpoint is None
    make_trainer(config).run(resume=True)
    steps = [step for step, _ in read_scalars(str(tmp_path / "logs" / config.name))["train/label_loss"]]
    assert steps == list(range(1, 13))


def test_slices_side_by_side_give_the_whole_batch_gradient(tmp_path):
    # 16 images per half batch: 1, 2 and 4 slices must train the same weights.
    trained = []
    for shards in (1, 2, 4):
        trainer = make_trainer(tiny_config(tmp_path / str(shards), batch_shards=shards,
                                           deterministic=True))
        assert trainer.dann_step.slices == shards
        trainer.train_steps(tf.constant(4))
        trained.append((weights(trainer), {name: float(metric.result())
                                           for name, metric in trainer.metrics.items()}))
    (whole_weights, whole_metrics), *sliced = trained
    # Slices add up a gradient in another order than the whole batch: float
    # rounding, whichever instruction set oneDNN uses, far inside 1e-4.
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
    with pytest.raises(TrainingError, match="Pass --resume"):
        make_trainer(tiny_config(tmp_path)).start(resume=False)
    with pytest.raises(TrainingError, match="differ from the saved run: learning_rate"):
        make_trainer(tiny_config(tmp_path, learning_rate=0.02)).start(resume=True)
    with pytest.raises(TrainingError, match="no checkpoint"):
        make_trainer(tiny_config(tmp_path, run_name="other")).start(resume=True)


@pytest.mark.parametrize("learning_rate, cause, checkpoint_step", [
    (1e40, "a weight became inf or nan", None), (1e30, "the loss became nan", 1)])
def test_a_diverging_run_keeps_no_bad_checkpoint_and_says_how_to_start_again(tmp_path, learning_rate, cause,
                                                                          checkpoint_step):
    # 1e40 is infinite in float32: the first update makes the weights NaN while
    # the loss of that step is still finite. 1e30 keeps them finite for one step.
    config = tiny_config(tmp_path, learning_rate=learning_rate, checkpoint_every=1, steps_per_call=1)
    with pytest.raises(TrainingError, match=f"Training diverged by step [12]: {cause}; ") as raised:
        make_trainer(config).run()
    message = str(raised.value)
    checkpoint_dir = os.path.join(config.checkpoint_dir, config.name)
    if checkpoint_step is None:
        assert "It had saved no checkpoint yet." in message and "checkpoint, saved" not in message
        assert make_trainer(config).manager.latest_checkpoint is None
        # Nothing was saved, so the same command starts the run again from step 0.
        restarted = make_trainer(config)
        restarted.start(resume=False)
        assert restarted.step == 0
    else:
        assert (f"Its last checkpoint, saved before that, is at step {checkpoint_step} in "
                f"'{checkpoint_dir}'.") in message
        restored = make_trainer(config)
        restored.checkpoint.restore(restored.manager.latest_checkpoint)
        assert restored.step == checkpoint_step and restored.dann_step.weights_are_finite()
        # A saved checkpoint is protected: the same command refuses to start over it.
        with pytest.raises(TrainingError, match="already exists"):
            make_trainer(config).start(resume=False)
    # The advice is a command that works: a lower learning rate under a new name.
    advice = message.split("add ")[1].split(" to the same command")[0].split()
    assert advice[:2] == ["--learning_rate", f"{learning_rate / 2:g}"]
    retry = dataclasses.replace(config, **parse_overrides(advice))
    make_trainer(retry).start(resume=False)


def domain_gradients(networks, images, strength):
    """Gradient of the domain loss on the features, through the GRL and around it."""
    networks.gradient_reversal.set_lambda(strength)
    features = networks.feature_extractor(images)
    domain_labels = tf.constant([0, 0, 1, 1])
    after_reversal = networks.domain_classifier.layers[1:]  # The classifier's own layers.
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        through_grl = tf.reduce_mean(cross_entropies(domain_labels, networks.domain_classifier(features)))
        direct = features
        for layer in after_reversal:
            direct = layer(direct)
        own = tf.reduce_mean(cross_entropies(domain_labels, direct))
    return tape.gradient(through_grl, features), tape.gradient(own, features)


def test_in_dann_the_features_ascend_the_domain_loss():
    networks = Networks(Config())
    images = tf.random.normal([4, 28, 28, 3], seed=6)
    reversed_gradient, own_gradient = domain_gradients(networks, images, strength=0.8)
    assert np.abs(own_gradient.numpy()).sum() > 0
    np.testing.assert_allclose(reversed_gradient.numpy(), -0.8 * own_gradient.numpy(), rtol=1e-6)


def test_main_refuses_bad_arguments_before_any_work(capsys):
    assert train.main(["--epoch", "3"]) == 2
    assert "Unknown config key: 'epoch'" in capsys.readouterr().err
    assert train.main(["--batch_size", "7"]) == 2
    assert "batch_size must be even" in capsys.readouterr().err


def test_resume_checks_the_settings_saved_beside_the_checkpoint_when_the_logs_are_elsewhere(tmp_path):
    config = tiny_config(tmp_path)
    make_trainer(config).run()
    saved = (tmp_path / "checkpoints" / config.name / "config.json").read_text()
    elsewhere = tiny_config(tmp_path, log_dir=str(tmp_path / "other"), batch_size=16, learning_rate=0.5)
    with pytest.raises(TrainingError, match="differ from the saved run: batch_size, learning_rate, "
                                                  "log_dir"):
        make_trainer(elsewhere).run(resume=True)
    # The record of what the first steps trained with is kept.
    assert (tmp_path / "checkpoints" / config.name / "config.json").read_text() == saved
    assert not (tmp_path / "other" / config.name / "config.json").exists()


def test_resume_refuses_a_checkpoint_that_does_not_fit_or_has_no_settings(tmp_path):
    config = tiny_config(tmp_path)
    make_trainer(config).run()
    # The same settings on record, but with the moving average's variables, which the checkpoint lacks.
    averaged = dataclasses.replace(config, ema_momentum=0.5)
    for folder in (tmp_path / "logs", tmp_path / "checkpoints"):
        (folder / config.name / "config.json").write_text(averaged.to_json())
    with pytest.raises(TrainingError, match="does not fit this run's networks and optimizer"):
        make_trainer(averaged).start(resume=True)
    for folder in (tmp_path / "logs", tmp_path / "checkpoints"):
        (folder / config.name / "config.json").unlink()
    with pytest.raises(TrainingError, match="has no config.json"):
        make_trainer(config).start(resume=True)


HOLD_FOLDER = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_a_run_that_another_process_is_training_is_refused_before_any_work(tmp_path):
    config = tiny_config(tmp_path)
    folder = tmp_path / "checkpoints" / config.name
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(TrainingError, match="Another process is training this run now"):
            make_trainer(config).run()
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "logs" / config.name).exists()
    make_trainer(config).run()  # Free again once the other process has ended.


def test_a_checkpoint_dir_that_is_a_file_fails_before_anything_is_written(tmp_path, capsys):
    mnist, mnistm = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm, write_fake_mnist(mnist, train_count=32, test_count=8))
    (tmp_path / "file").write_text("not a folder")
    assert train.main(["--mnist", mnist, "--mnistm_path", mnistm, "--epochs", "1", "--batch_size", "32",
                       "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "file")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: Cannot use ") and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("stop_during, where", [("evaluate", "after training, before the export"),
                                                ("export", "after the export, before final.json")])
def test_a_stop_during_the_last_evaluation_or_the_export_is_honoured(tmp_path, stop_during, where):
    config = tiny_config(tmp_path)
    trainer = make_trainer(config)
    original = getattr(trainer, stop_during)

    def then_a_signal_arrives():
        result = original()
        if stop_during == "export" or trainer.step == trainer.total_steps:
            trainer.stop_requested = "SIGTERM"
        return result

    setattr(trainer, stop_during, then_a_signal_arrives)
    with pytest.raises(TrainingStopped, match=f"Stopped by SIGTERM at step 12, {where}; its checkpoint"):
        trainer.run()
    assert trainer.checkpoint_step == 12
    assert not (tmp_path / "logs" / config.name / "final.json").exists()
    # --resume finishes what the stop left: the export and final.json, with no further step.
    final = make_trainer(config).run(resume=True)
    assert final["steps"] == 12
    assert (tmp_path / "checkpoints" / config.name / "classifier.keras").is_file()
    assert json.loads((tmp_path / "logs" / config.name / "final.json").read_text())["steps"] == 12


def test_train_py_says_and_records_which_precision_auto_picked_and_why(tmp_path, monkeypatch, capsys):
    mnist, mnistm = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm, write_fake_mnist(mnist, train_count=32, test_count=8))
    monkeypatch.setattr(precision, "read_cpuinfo", lambda: {"flags": {"avx512f", "avx512_bf16"}})
    assert train.main(["--mnist", mnist, "--mnistm_path", mnistm, "--epochs", "1", "--batch_size", "32",
                       "--run_name", "auto", "--log_dir", str(tmp_path / "logs"),
                       "--checkpoint_dir", str(tmp_path / "checkpoints")]) == 0
    assert "precision: mixed_bfloat16 (auto: native bfloat16 (CPU flags avx512_bf16)" in capsys.readouterr().out
    for folder in ("logs", "checkpoints"):
        saved = json.loads((tmp_path / folder / "auto" / "config.json").read_text())
        assert saved["precision"] == "mixed_bfloat16" and "avx512_bf16" in saved["precision_reason"]
    with pytest.raises(ValueError, match="--precision_reason is not set on the command line"):
        train.parse_arguments(["--precision_reason", "because"])


def test_mixed_float16_is_refused_on_a_machine_without_a_gpu(capsys):
    with pytest.raises(ValueError, match="mixed_float16 is for GPUs"):
        precision.check_fits_hardware("mixed_float16", gpus=[])
    precision.check_fits_hardware("mixed_float16", gpus=["a GPU"])
    precision.check_fits_hardware("mixed_bfloat16", gpus=[])
    if not tf.config.list_physical_devices("GPU"):
        assert train.main(["--precision", "mixed_float16"]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: precision mixed_float16 is for GPUs") and len(error.splitlines()) == 1


def test_a_test_set_smaller_than_the_slice_count_is_evaluated_whole(tmp_path):
    mnist, mnistm = tiny_training_arrays()
    mnist = {**mnist, "x_test": mnist["x_test"][:1], "y_test": mnist["y_test"][:1]}
    mnistm = {**mnistm, "x_test": mnistm["x_test"][:1], "y_test": mnistm["y_test"][:1]}
    trainer = make_trainer(tiny_config(tmp_path, batch_shards=2), (mnist, mnistm))
    results = trainer.evaluate()
    assert results["val/source_acc"] in (0.0, 1.0) and results["val/target_acc"] in (0.0, 1.0)
