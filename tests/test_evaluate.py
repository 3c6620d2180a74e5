"""evaluate.py and utils/evaluation/ on a tiny run trained here."""

import json
import os
import re
import signal
import stat

import numpy as np
import pytest
from PIL import Image

import evaluate
import train
from config import Config
from conftest import (make_null_device, fake_mnist_arrays, make_trainer, stop_at, tiny_config, tiny_training_arrays,
                      write_fake_bsds_tgz, write_fake_mnist, write_fake_mnistm, write_official_layout)
from test_scripts import stop_while_waiting
from utils.training.trainer import Trainer
from utils.runtime import devices
from utils.data.mnistm import load_mnistm
from utils.evaluation import metrics
from utils.evaluation import trained_run
from utils.data import training_data
from utils.training.stopping import TrainingStopped


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished six-step DANN run on tiny random data: {paths..., "final": final.json}."""
    folder = tmp_path_factory.mktemp("tiny_run")
    mnist = fake_mnist_arrays(train_count=48, test_count=30)
    np.savez(folder / "mnist.npz", **mnist)
    write_fake_mnistm(folder / "mnist_m.npz", mnist)
    official = folder / "official"
    padded = np.pad(load_mnistm(str(folder / "mnist_m.npz"))["x_test"], ((0, 0), (2, 2), (2, 2), (0, 0)))
    write_official_layout(official, padded, mnist["y_test"])
    config = Config(epochs=1.0, batch_size=16, log_every=3, eval_every=3, checkpoint_every=3, steps_per_call=3,
                    run_name="tiny", log_dir=str(folder / "logs"), checkpoint_dir=str(folder / "checkpoints"))
    devices.configure(config.seed)
    final = Trainer(config, training_data.mnist_data(config, mnist, load_mnistm(str(folder / "mnist_m.npz")))).run()
    return {"folder": folder, "checkpoint": str(folder / "checkpoints" / "tiny"), "final": final,
            "data": ["--mnist", str(folder / "mnist.npz"), "--mnistm", str(folder / "mnist_m.npz")],
            "official": str(official)}


def run_evaluate(tiny_run, out, *arguments, model=None, data=None):
    return evaluate.main(["--model", model or tiny_run["checkpoint"], "--out", str(out),
                          *(data or tiny_run["data"]), *arguments])


def test_a_checkpoint_folder_reproduces_the_runs_final_evaluation(tiny_run, tmp_path, capsys):
    out = tmp_path / "results" / "evaluation.json"
    assert run_evaluate(tiny_run, out, "--mnistm_official", tiny_run["official"]) == 0
    results = json.loads(out.read_text())
    final = tiny_run["final"]
    assert results["mnist_test_accuracy"] == pytest.approx(final["val/source_acc"], abs=1e-6)
    assert results["mnistm_test_accuracy"] == pytest.approx(final["val/target_acc"], abs=1e-6)
    assert results["domain_accuracy"]["overall"] == pytest.approx(final["val/domain_acc"], abs=1e-6)
    # The official layout holds the same images padded by 2: the center crop recovers them.
    assert results["mnistm_official_test_accuracy"] == results["mnistm_test_accuracy"]
    assert results["config"].endswith("tiny/config.json") and results["binarize_source"] is True
    for name in ("mnist", "mnistm", "mnistm_official"):
        assert np.sum(results["confusion_matrices"][name]) == results["test_images"][name] == 30
        assert len(results["per_class_accuracy"][name]) == 10
        png = tmp_path / "results" / f"evaluation_confusion_{name}.png"
        assert png.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "MNIST-M test (target)" in printed and "domain accuracy: " in printed


def test_a_run_with_a_moving_average_evaluates_the_averaged_weights(tiny_run, tmp_path):
    # The export and the final evaluation use the averages; evaluate.py restores
    # them from the checkpoint for the domain classifier too.
    config = Config(epochs=1.0, batch_size=16, eval_every=3, checkpoint_every=3, steps_per_call=3,
                    ema_momentum=0.5, run_name="tiny_ema", log_dir=str(tmp_path / "logs"),
                    checkpoint_dir=str(tmp_path / "checkpoints"))
    devices.configure(config.seed)
    mnist = dict(np.load(tiny_run["data"][1]))
    final = Trainer(config, training_data.mnist_data(config, mnist, load_mnistm(tiny_run["data"][3]))).run()
    out = tmp_path / "evaluation.json"
    assert run_evaluate(tiny_run, out, model=str(tmp_path / "checkpoints" / "tiny_ema")) == 0
    results = json.loads(out.read_text())
    assert results["mnist_test_accuracy"] == pytest.approx(final["val/source_acc"], abs=1e-6)
    assert results["mnistm_test_accuracy"] == pytest.approx(final["val/target_acc"], abs=1e-6)
    assert results["domain_accuracy"]["overall"] == pytest.approx(final["val/domain_acc"], abs=1e-6)


def test_a_keras_file_alone_reports_domain_accuracy_unavailable(tiny_run, tmp_path):
    out = tmp_path / "evaluation.json"
    assert run_evaluate(tiny_run, out, model=tiny_run["checkpoint"] + "/classifier.keras") == 0
    results = json.loads(out.read_text())
    assert results["domain_accuracy"] is None
    assert results["domain_accuracy_note"].startswith("unavailable")
    assert results["model"] == "tiny" and "mnistm_official_test_accuracy" not in results


def test_mnistm_train_adds_the_train_labels_accuracy(tiny_run, tmp_path):
    out = tmp_path / "evaluation.json"
    assert run_evaluate(tiny_run, out, "--mnistm_train") == 0
    results = json.loads(out.read_text())
    mnistm = load_mnistm(str(tiny_run["folder"] / "mnist_m.npz"))
    classifier = trained_run.load_classifier(tiny_run["checkpoint"] + "/classifier.keras")
    predictions = np.argmax(classifier(mnistm["x_train"].astype(np.float32))["logits"], axis=-1)
    assert results["test_images"]["mnistm_train"] == len(mnistm["x_train"]) == 48
    assert results["mnistm_train_accuracy"] == pytest.approx(np.mean(predictions == mnistm["y_train"]))
    assert (tmp_path / "evaluation_confusion_mnistm_train.png").stat().st_size > 1000


@pytest.mark.parametrize("problem, message", [
    ("missing model", "does not exist. Pass a .keras file"),
    ("damaged model", "Cannot load .* as a Keras model"),
    ("missing MNIST-M", "MNIST-M not found at"),
    ("broken official folder", "mnist_m_test_labels.txt' does not exist"),
    ("output is a folder", "is a folder"),
])
def test_bad_input_gives_one_error_line_and_writes_nothing(tiny_run, tmp_path, capsys, problem, message):
    out, model, extra, data = tmp_path / "out" / "evaluation.json", tiny_run["checkpoint"], [], None
    if problem == "missing model":
        model = str(tmp_path / "nowhere.keras")
    elif problem == "damaged model":
        model = str(tmp_path / "damaged.keras")
        (tmp_path / "damaged.keras").write_bytes(b"not a zip")
    elif problem == "missing MNIST-M":
        # In place of the run's own MNIST-M: evaluate.py refuses a setting given twice.
        data = [tiny_run["data"][0], tiny_run["data"][1], "--mnistm", str(tmp_path / "missing.npz")]
    elif problem == "broken official folder":
        extra = ["--mnistm_official", str(tmp_path)]
    else:
        out.mkdir(parents=True)
    assert run_evaluate(tiny_run, out, *extra, model=model, data=data) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert re.search(message, error), error
    assert [path for path in tmp_path.glob("out/**/*") if path.is_file()] == []


def make_symlink(path):
    (path.parent / "target.csv").write_text("kept\n")
    os.symlink(path.parent / "target.csv", path)


@pytest.mark.parametrize("make, kind", [(os.mkfifo, "a named pipe (FIFO)"), (make_null_device, "a character device"),
                                        (make_symlink, "a symbolic link")])
def test_an_output_that_is_not_a_regular_file_is_refused_and_kept(tiny_run, tmp_path, capsys, make, kind):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        Image.fromarray(np.full((28, 28, 3), 40 * index, np.uint8)).save(images / f"{index}.png")
    out = tmp_path / "predictions.csv"
    make(out)
    before = os.lstat(out)
    assert run_evaluate(tiny_run, out, "--predict", str(images)) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert f"is {kind}, not a regular file" in error and "Choose another output path" in error
    after = os.lstat(out)
    assert (stat.S_IFMT(after.st_mode), after.st_rdev, after.st_ino) == (
        stat.S_IFMT(before.st_mode), before.st_rdev, before.st_ino)
    if kind == "a symbolic link":
        assert (tmp_path / "target.csv").read_text() == "kept\n"


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_while_loading_gives_one_line_and_leaves_nothing(tiny_run, tmp_path, signal_number):
    # The default output, results/tiny/, would be made in the working folder.
    code, stderr = stop_while_waiting("evaluate.py", "utils.data.training_data.load_test_sets", signal_number,
                                      ["--model", tiny_run["checkpoint"], *tiny_run["data"]], cwd=tmp_path)
    assert code == 128 + signal_number
    assert stderr.strip().splitlines() == [f"Stopped by {signal.Signals(signal_number).name}; nothing was written."]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("settings", [{}, {"ema_momentum": 0.5}, {"source_validation_fraction": 0.25}],
                         ids=["weights", "moving average", "source validation part"])
def test_a_run_without_its_export_is_measured_at_its_latest_checkpoint(tmp_path, capsys, settings):
    mnist, mnistm = tiny_training_arrays()
    np.savez(tmp_path / "mnist.npz", **mnist)
    np.savez(tmp_path / "mnist_m.npz", **mnistm)
    data = ["--mnist", str(tmp_path / "mnist.npz"), "--mnistm", str(tmp_path / "mnist_m.npz")]
    trainer = make_trainer(tiny_config(tmp_path, run_name="stopped", **settings), (mnist, mnistm))
    stop_at(trainer, 6, request="SIGINT")  # As Ctrl-C: a checkpoint at step 6, no export.
    with pytest.raises(TrainingStopped):
        trainer.run()
    folder = tmp_path / "checkpoints" / "stopped"
    assert not (folder / trained_run.EXPORT_NAME).exists()
    test_sets = training_data.load_test_sets(data[1], data[3], binarize_source=True)
    pixels = test_sets["mnistm"][0].astype(np.float32)
    # The classifier the export would hold: the weights, or with EMA their averages.
    with trainer.dann_step.evaluation_weights():
        expected = trainer.networks.classifier(trainer.pixel_mean)
        expected_logits = trained_run.predict_logits(expected, pixels)
        expected_accuracy = {name: metrics.accuracy(metrics.confusion_matrix(expected, *test_set))
                             for name, test_set in test_sets.items()}
    if "ema_momentum" in settings:
        assert not np.allclose(trained_run.predict_logits(expected, pixels), expected_logits, atol=1e-4)

    out = tmp_path / "evaluation.json"
    assert evaluate.main(["--model", str(folder), "--out", str(out), *data]) == 0
    results = json.loads(out.read_text())
    assert results["checkpoint_step"] == 6
    assert results["mnist_test_accuracy"] == expected_accuracy["mnist"]
    assert results["mnistm_test_accuracy"] == expected_accuracy["mnistm"]
    assert results["domain_accuracy"] is not None
    assert "its latest checkpoint, step 6: the folder holds no classifier.keras yet" in capsys.readouterr().out
    # Closer than the accuracies: the same logits, so the same weights and pixel mean.
    run = trained_run.load_run(str(folder), training_pixel_mean=lambda config: (
        training_data.mnist_pixel_mean_from_files(config, data[1], data[3])))
    assert run.checkpoint_step == 6
    np.testing.assert_allclose(trained_run.predict_logits(run.classifier, pixels), expected_logits, atol=1e-5)


def test_without_model_and_pretrained_weights_it_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert evaluate.main([]) == 2
    assert "pretrained weights 'pretrained/paper' are missing" in capsys.readouterr().err


def test_the_confusion_matrix_sums_counts_over_uneven_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (23, 28, 28, 3), dtype=np.uint8)
    labels = rng.integers(0, 9, 23)  # Digit 9 never occurs.

    def classifier(batch, training):
        # Predicts the first pixel's red value modulo 10: deterministic, and right about a tenth of the time.
        return np.eye(10)[batch[:, 0, 0, 0].astype(int) % 10]

    predictions = images[:, 0, 0, 0].astype(int) % 10
    confusion = metrics.confusion_matrix(classifier, images, labels, batch_size=5)
    assert confusion.sum() == 23
    expected = np.zeros((10, 10), int)
    np.add.at(expected, (labels, predictions), 1)
    np.testing.assert_array_equal(confusion, expected)
    assert metrics.accuracy(confusion) == pytest.approx(np.mean(predictions == labels))
    per_class = metrics.per_class_accuracy(confusion)
    assert per_class[9] is None
    assert per_class[labels[0]] == pytest.approx(np.mean(predictions[labels == labels[0]] == labels[0]))


