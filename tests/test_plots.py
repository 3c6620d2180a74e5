"""Each figure command writes a non-empty PNG: training curves, confusion matrix, t-SNE."""

import numpy as np
import pytest

import plot_curves
import plot_tsne
from config import Config
from conftest import REQUIRED_TAGS, write_fake_mnist, write_fake_mnistm
from model import Networks
from utils import plots
from utils.training.summaries import ScalarWriter


def write_fake_run_logs(folder, tags=REQUIRED_TAGS, steps=(100, 200, 300)):
    """Event files as train.py writes them, with made-up values."""
    writer = ScalarWriter(str(folder))
    for step in steps:
        writer.write({tag: 1.0 / (1 + step / 100) for tag in tags}, step)
    writer.close()


def test_the_curves_command_writes_three_figures_into_the_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "logs" / "dann-seed0"
    write_fake_run_logs(run_dir)
    assert plot_curves.main([str(run_dir)]) == 0
    for name in ("schedule", "accuracy", "loss"):
        assert (run_dir / f"curves_{name}.png").stat().st_size > 1000
    assert "curves_loss.png" in capsys.readouterr().out


def test_a_tag_the_run_did_not_log_is_left_out(tmp_path):
    run_dir = tmp_path / "run"
    write_fake_run_logs(run_dir, tags=["train/label_loss", "schedule/lambda"])
    assert plot_curves.main([str(run_dir), "--out", str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "curves_accuracy.png").stat().st_size > 1000


@pytest.mark.parametrize("make_folder, message", [(False, "does not exist"), (True, "holds no TensorBoard scalars")])
def test_the_curves_command_reports_a_folder_without_logs(tmp_path, capsys, make_folder, message):
    run_dir = tmp_path / "run"
    if make_folder:
        run_dir.mkdir()
    assert plot_curves.main([str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1


def test_the_confusion_matrix_figure(tmp_path):
    confusion = np.random.default_rng(0).integers(0, 1000, (10, 10)) + np.diag(np.full(10, 5000))
    plots.save_confusion_matrix(str(tmp_path / "confusion.png"), confusion, "MNIST-M test")
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_the_tsne_command_draws_one_panel_per_model(tmp_path, capsys):
    mnist = write_fake_mnist(str(tmp_path / "mnist.npz"), test_count=20)
    write_fake_mnistm(tmp_path / "mnist_m.npz", mnist)
    # Untrained weights are enough to exercise the figure; the command does not care how good they are.
    Networks(Config()).classifier([120.0, 110.0, 100.0]).save(str(tmp_path / "untrained.keras"))
    out = tmp_path / "figures" / "tsne.png"
    model = str(tmp_path / "untrained.keras")
    assert plot_tsne.main(["--source_only", model, "--dann", model, "--count", "15", "--threads", "1",
                           "--out", str(out),
                           "--mnist", str(tmp_path / "mnist.npz"), "--mnistm", str(tmp_path / "mnist_m.npz")]) == 0
    assert out.stat().st_size > 1000
    assert plot_tsne.main(["--source_only", str(tmp_path / "missing"), "--dann", model,
                           "--out", str(tmp_path / "other.png")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "other.png").exists()
