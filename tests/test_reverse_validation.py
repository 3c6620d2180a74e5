"""Reverse validation: the source validation split, the self-labelling, the reverse run and its JSON,
the label-free scores, bad input; and the shipped weights judged on the real data."""

import dataclasses
import json
import math
import os
import shutil
import signal

import numpy as np
import pytest

import reverse_validation
import train
from config import Config, PRESETS
from conftest import TRAIN_SIZE, tiny_config, tiny_training_arrays
from test_folder_scripts import TINY_RUN
from test_folders import write_class_folder
from test_scripts import stop_while_waiting
from utils.training.trainer import Trainer
from utils.runtime import devices
from utils.selection import reverse_validation as reverse
from utils.selection import validators
from utils.data.mnistm import build_mnistm
from utils.data import splits, training_data
from utils.evaluation import trained_run
from utils.training.summaries import read_scalars

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_split_is_disjoint_complete_and_reproducible():
    train_part, validation = splits.held_out_split(1000, 0.1, 3, splits.SOURCE_VALIDATION_STREAM)
    assert len(validation) == 100 and len(train_part) == 900
    assert not set(train_part) & set(validation)
    assert sorted(np.concatenate([train_part, validation])) == list(range(1000))
    again_train, again_validation = splits.held_out_split(1000, 0.1, 3, splits.SOURCE_VALIDATION_STREAM)
    np.testing.assert_array_equal(validation, again_validation)
    np.testing.assert_array_equal(train_part, again_train)
    assert not np.array_equal(validation, splits.held_out_split(1000, 0.1, 4, splits.SOURCE_VALIDATION_STREAM)[1])
    assert len(splits.held_out_split(1000, 0.0, 3, splits.SOURCE_VALIDATION_STREAM)[1]) == 0


def test_the_paper_defaults_hold_nothing_out():
    assert Config().source_validation_fraction == 0
    assert all("source_validation_fraction" not in overrides for overrides in PRESETS.values())
    with pytest.raises(ValueError, match="source_validation_fraction"):
        Config(source_validation_fraction=1.0)


def image_ids(domain):
    """Each tiny image's identity: its raw bytes."""
    return {image.tobytes() for image in domain.images.numpy()}


def test_a_run_with_a_validation_fraction_trains_without_those_digits():
    mnist, mnistm = tiny_training_arrays()
    config = Config(source_validation_fraction=0.25)
    data = training_data.mnist_data(config, mnist, mnistm)
    assert len(data.source) == TRAIN_SIZE * 3 // 4 and len(data.source_validation) == TRAIN_SIZE // 4
    assert not image_ids(data.source) & image_ids(data.source_validation)
    every_digit = {image.tobytes() for image in mnist["x_train"]}
    assert image_ids(data.source) | image_ids(data.source_validation) == every_digit
    # Each held-out digit keeps its own label.
    by_image = {image.tobytes(): label for image, label in zip(mnist["x_train"], mnist["y_train"])}
    assert all(by_image[image.tobytes()] == label for image, label in
               zip(data.source_validation.images.numpy(), data.source_validation.labels.numpy()))
    assert training_data.mnist_data(Config(), mnist, mnistm).source_validation is None


class PixelSumClassifier:
    """A stand-in export: the logit of class k is largest for the images whose pixel sum is k mod 10."""

    def __call__(self, batch, training=False):
        sums = np.asarray(batch, np.float64).reshape(len(batch), -1).sum(axis=1).astype(np.int64)
        return {"logits": np.eye(10, dtype=np.float32)[sums % 10] * 5.0}


def test_the_reverse_run_learns_the_target_with_the_classifiers_argmax_labels():
    mnist, mnistm = tiny_training_arrays()
    data = training_data.mnist_data(Config(source_validation_fraction=0.25), mnist, mnistm)
    classifier = PixelSumClassifier()
    probabilities = reverse.probabilities(classifier, data.target)
    expected = mnistm["x_train"].reshape(TRAIN_SIZE, -1).sum(axis=1, dtype=np.int64) % 10
    np.testing.assert_array_equal(reverse.self_labels(probabilities), expected)
    assert not np.array_equal(expected, mnistm["y_train"])  # The true labels play no part.

    test_labels = reverse.self_labels(reverse.probabilities(classifier, data.target_test))
    swapped = reverse.reverse_data(data, reverse.self_labels(probabilities), test_labels)
    np.testing.assert_array_equal(swapped.source.images.numpy(), mnistm["x_train"])
    np.testing.assert_array_equal(swapped.source.labels.numpy(), expected)
    assert swapped.target is data.source and swapped.target_test is data.source_validation
    np.testing.assert_array_equal(swapped.source_test.labels.numpy(), test_labels)
    # The forward target keeps its own labels; the reverse domains still turn batches into the same pixels.
    np.testing.assert_array_equal(data.target.labels.numpy(), mnistm["y_train"])
    assert swapped.target.is_mnist and not swapped.source.is_mnist
    # Without a held-out part, the source test set is the validation set.
    plain = training_data.mnist_data(Config(), mnist, mnistm)
    assert reverse.reverse_data(plain, expected, test_labels).target_test is plain.source_test


def test_the_export_sees_the_pixels_training_sees():
    mnist, mnistm = tiny_training_arrays()
    data = training_data.mnist_data(Config(binarize_source=True), mnist, mnistm)
    pixels = np.concatenate([batch for _, batch in trained_run.float_batches(data.source_test, batch_size=16)])
    expected = np.repeat(np.where(mnist["x_test"] > 0, 255, 0)[..., np.newaxis], 3, axis=-1)
    np.testing.assert_array_equal(pixels, expected)


def test_the_label_free_scores_rank_confident_and_spread_predictions_first():
    uniform = validators.prediction_scores(np.full((20, 10), 0.1))
    assert uniform["negative_entropy"] == pytest.approx(-math.log(10))
    assert uniform["information_maximization"] == pytest.approx(0.0, abs=1e-9)
    one_class = validators.prediction_scores(np.eye(10)[np.zeros(20, int)])
    assert one_class["negative_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert one_class["information_maximization"] == pytest.approx(0.0, abs=1e-9)
    spread = validators.prediction_scores(np.eye(10)[np.arange(20) % 10])
    assert spread["information_maximization"] == pytest.approx(math.log(10))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 12-step DANN run on tiny data that held a quarter of its source out."""
    folder = tmp_path_factory.mktemp("reverse")
    mnist, mnistm = tiny_training_arrays()
    np.savez(folder / "mnist.npz", **mnist)
    np.savez(folder / "mnist_m.npz", **mnistm)
    config = tiny_config(folder, source_validation_fraction=0.25, run_name="tiny")
    devices.configure(config.seed, config.deterministic)
    Trainer(config, training_data.mnist_data(config, mnist, mnistm)).run()
    return folder


def run_reverse_validation(folder, *arguments, model=None):
    return reverse_validation.main(["--model", str(model or folder / "checkpoints" / "tiny"), "--mnist",
                                    str(folder / "mnist.npz"), "--mnistm", str(folder / "mnist_m.npz"), *arguments])


def test_the_json_has_its_keys_and_the_reverse_run_is_an_ordinary_run(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_reverse_validation(tiny_run, "--epochs", "1", "--variant", "fresh") == 0
    results = json.loads((tmp_path / "logs" / "tiny-reverse" / "reverse_validation.json").read_text())
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.rindex("\n{\n") + 1:]) == results
    for key in ("reverse_validation_accuracy", "source_validation_accuracy", "negative_entropy",
                "information_maximization", "domain_accuracy", "reverse_steps", "minutes"):
        assert isinstance(results[key], float) or isinstance(results[key], int), key
    assert 0 <= results["reverse_validation_accuracy"] <= 1
    assert results["source_validation_images"] == TRAIN_SIZE // 4
    assert results["source_validation"].startswith("0.25 of the source train images")
    # One epoch of the reverse source (the 96 target images) at 16 + 16 images a step.
    assert results["reverse_steps"] == TRAIN_SIZE // 16
    final = json.loads((tmp_path / "logs" / "tiny-reverse" / "final.json").read_text())
    assert results["reverse_validation_accuracy"] == final["val/target_acc"]
    assert (tmp_path / "checkpoints" / "tiny-reverse" / "classifier.keras").is_file()


def test_the_paper_variant_starts_from_eta_holds_out_t_v_and_scores_its_best_evaluation(
        tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_reverse_validation(tiny_run, "--epochs", "3") == 0
    results = json.loads((tmp_path / "logs" / "tiny-reverse" / "reverse_validation.json").read_text())
    assert results["reverse_variant"] == "paper"
    assert results["reverse_started_from"] == ["feature_extractor", "label_classifier",
                                               "domain_classifier (outputs swapped)"]
    # A tenth of the 96 target images is T_V; the other 86 train: 6 steps a pass, evaluated every step.
    assert results["reverse_target_validation_images"] == 10 and results["reverse_source_images"] == 86
    assert results["reverse_eval_every"] == 1
    scalars = read_scalars(str(tmp_path / "logs" / "tiny-reverse"))
    logged = dict(scalars["val/target_acc"])
    agreement = dict(scalars["val/source_validation_acc"])
    best = results["reverse_best_step"]
    assert results["reverse_validation_accuracy"] == logged[best]
    assert results["reverse_agreement_on_target_validation"] == max(agreement.values()) == agreement[best]
    # Stopped after 3 evaluations without a better one, or ran its 18 steps.
    assert results["reverse_steps"] == (best + 3 if results["reverse_stopped_early"] else 18)


def test_the_reverse_run_starts_from_etas_weights_with_the_domain_outputs_swapped(tiny_run):
    run = trained_run.load_run(str(tiny_run / "checkpoints" / "tiny"))
    config = run.config
    data = training_data.training_data(dataclasses.replace(
        config, mnist_path=str(tiny_run / "mnist.npz"), mnistm_path=str(tiny_run / "mnist_m.npz")))
    trainer = Trainer(dataclasses.replace(config, run_name="start", log_dir=str(tiny_run / "start-logs"),
                                          checkpoint_dir=str(tiny_run / "start-checkpoints")), data)
    started = reverse.start_from(trainer.networks, trainer.optimizer, run)
    assert started[-1] == "domain_classifier (outputs swapped)"
    for name in ("feature_extractor", "label_classifier"):
        for mine, eta in zip(getattr(trainer.networks, name).get_weights(), run.classifier.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, eta)
    kernel, bias = trainer.networks.domain_classifier.get_weights()[-2:]
    eta_kernel, eta_bias = run.domain_networks.domain_classifier.get_weights()[-2:]
    np.testing.assert_array_equal(kernel, eta_kernel[:, ::-1])
    np.testing.assert_array_equal(bias, eta_bias[::-1])


def test_no_score_reads_a_target_label(tiny_run, tmp_path, monkeypatch):
    """Every score, the reverse run's included, is the same with the target labels permuted."""
    arrays = dict(np.load(tiny_run / "mnist_m.npz"))
    rng = np.random.default_rng(5)
    permuted = {**arrays, "y_train": rng.permutation(arrays["y_train"]),
                "y_test": ((arrays["y_test"] + 1 + rng.integers(0, 8, len(arrays["y_test"]))) % 10).astype(np.uint8)}
    assert np.any(permuted["y_train"] != arrays["y_train"]) and np.all(permuted["y_test"] != arrays["y_test"])
    np.savez(tmp_path / "permuted.npz", **permuted)
    scores = []
    for name, mnistm in (("original", tiny_run / "mnist_m.npz"), ("permuted", tmp_path / "permuted.npz")):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        for arguments in (["--scores_only", "--out", "scores.json"], ["--epochs", "2", "--out", "reverse.json"]):
            assert reverse_validation.main(["--model", str(tiny_run / "checkpoints" / "tiny"), "--mnist",
                                            str(tiny_run / "mnist.npz"), "--mnistm", str(mnistm), *arguments]) == 0
        scores.append({key: value for file in ("scores.json", "reverse.json")
                       for key, value in json.loads((tmp_path / name / file).read_text()).items()
                       if "minutes" not in key and key != "out"})
    assert scores[0] == scores[1]
    assert {"reverse_validation_accuracy", "information_maximization", "bnm", "snd", "dev", "class_ami"} <= set(scores[0])


def test_scores_only_scores_the_classifier_without_a_reverse_run(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_reverse_validation(tiny_run, "--scores_only") == 0
    results = json.loads((tmp_path / "results" / "tiny" / "label_free_scores.json").read_text())
    assert {"source_validation_accuracy", "negative_entropy", "information_maximization",
            "domain_accuracy", "bnm", "snd", "dev", "dev_discriminator_accuracy", "class_ami"} <= set(results)
    assert all(isinstance(results[key], float) for key in ("bnm", "snd", "dev", "class_ami"))
    assert "reverse_validation_accuracy" not in results
    assert not (tmp_path / "logs").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("problem, message", [
    ("no classifier", "holds no classifier.keras"),
    ("broken config", "Cannot read the run's config"),
    ("unknown flag", "Unknown config key: 'epoch'"),
    ("no model", "the following arguments are required: --model"),
    ("bad budget", "--epochs must be > 0"),
    ("target_only", "target_only"),
])
def test_bad_input_gives_one_error_line_and_writes_nothing(tiny_run, tmp_path, monkeypatch, capsys, problem,
                                                           message):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "run"
    shutil.copytree(tiny_run / "checkpoints" / "tiny", model)
    arguments = ["--model", str(model)]
    if problem == "no classifier":
        (model / "classifier.keras").unlink()
    elif problem == "broken config":
        (model / "config.json").write_text('{"epochs": ')
    elif problem == "unknown flag":
        arguments += ["--epoch", "1"]
    elif problem == "no model":
        arguments = []
    elif problem == "bad budget":
        arguments += ["--epochs", "0"]
    elif problem == "target_only":
        saved = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**saved, "mode": "target_only"}))
    before = sorted(os.listdir(tmp_path))
    assert reverse_validation.main(arguments) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
    assert sorted(os.listdir(tmp_path)) == before


def test_ctrl_c_while_loading_the_data_gives_one_line_and_writes_nothing(tiny_run, tmp_path):
    code, stderr = stop_while_waiting(
        "reverse_validation.py", "utils.data.training_data.load_mnist_arrays", signal.SIGINT,
        ["--model", str(tiny_run / "checkpoints" / "tiny"), "--mnist", str(tiny_run / "mnist.npz"),
         "--mnistm", str(tiny_run / "mnist_m.npz")], cwd=tmp_path)
    assert code == 130
    assert stderr.strip().splitlines() == ["Stopped by SIGINT; nothing was written."]
    assert os.listdir(tmp_path) == []


@pytest.fixture
def real_mnistm(real_data_dir, tmp_path):
    """MNIST-M built from the real files (seed 42, the published data set)."""
    path = str(tmp_path / "mnist_m.npz")
    build_mnistm(os.path.join(real_data_dir, "mnist.npz"), os.path.join(real_data_dir, "BSR_bsds500.tgz"), path,
                 seed=42, log=lambda *arguments, **keywords: None)
    return path


def test_the_shipped_weights_are_judged_on_the_real_data(real_data_dir, real_mnistm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "paper.json"
    # A fifth of an epoch (188 steps) keeps the test short; the default budget is measured in the docs.
    assert reverse_validation.main([
        "--model", os.path.join(REPOSITORY, "pretrained", "paper"), "--mnist",
        os.path.join(real_data_dir, "mnist.npz"), "--mnistm", real_mnistm, "--epochs", "0.2",
        "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["source_validation"].startswith("the source test set")
    assert results["source_validation_images"] == 10000
    assert results["source_validation_accuracy"] > 0.97  # The paper run's MNIST test accuracy.
    assert results["domain_accuracy"] is None  # pretrained/ holds no checkpoint.
    # Even 188 reverse steps read real digits far above chance from the paper run's MNIST-M labels.
    assert results["reverse_validation_accuracy"] > 0.3


def test_a_run_on_image_folders_is_judged_on_its_held_out_source_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_class_folder(tmp_path / "source", per_class=8, seed=7)
    write_class_folder(tmp_path / "target", seed=8)
    assert train.main(["--source_dir", "source", "--target_dir", "target", "--source_validation_fraction", "0.25",
                       "--run_name", "folders", *TINY_RUN]) == 0
    assert reverse_validation.main(["--model", "checkpoints/folders", "--epochs", "1"]) == 0
    results = json.loads((tmp_path / "logs" / "folders-reverse" / "reverse_validation.json").read_text())
    # 24 source images: a tenth held out for testing (2), then a quarter of the rest (6) for validation.
    assert results["source_validation_images"] == 6
    assert results["source_validation"].startswith("0.25 of the source train images")
    assert 0 <= results["reverse_validation_accuracy"] <= 1
