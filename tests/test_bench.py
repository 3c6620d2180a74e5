"""The two benchmark scripts run end to end on tiny files and print the promised JSON."""

import json
import os
import subprocess
import sys

import numpy as np

from conftest import fake_mnist_arrays, write_fake_mnist, write_fake_mnistm

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_data(tmp_path):
    mnist_path, mnistm_path = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnist(mnist_path)
    write_fake_mnistm(mnistm_path, fake_mnist_arrays())
    return mnist_path, mnistm_path


def last_json_line(script, *arguments):
    completed = subprocess.run([sys.executable, os.path.join(REPOSITORY, "bench", script), *arguments],
                               capture_output=True, text=True, check=False, cwd=REPOSITORY)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_train_speed_reports_the_step_the_eager_baseline_and_their_ratio(tmp_path):
    mnist_path, mnistm_path = tiny_data(tmp_path)
    report = last_json_line("train_speed.py", "--mnist", mnist_path, "--mnistm", mnistm_path,
                            "--seconds", "0.3", "--batch_size", "8", "--steps_per_call", "2",
                            "--skip_torch")
    assert report["steps_per_s"] > 0 and report["baseline_steps_per_s"] > 0
    assert np.isclose(report["speedup"], report["steps_per_s"] / report["baseline_steps_per_s"])
    assert report["peak_fraction"] is None or 0 < report["peak_fraction"] < 1
    assert report["settings"]["batch_size"] == 8 and report["settings"]["batch_shards"] >= 1


def test_time_to_accuracy_reports_when_the_target_was_reached(tmp_path):
    mnist_path, mnistm_path = tiny_data(tmp_path)
    report = last_json_line("time_to_accuracy.py", "--mnist", mnist_path, "--mnistm_path", mnistm_path,
                            "--epochs", "2", "--batch_size", "4", "--eval_every", "2",
                            "--target", "0.0")
    # 12 images, 2 per half batch: 6 steps an epoch, 12 steps, an evaluation every 2.
    assert report["steps"] == 12
    assert [evaluation["step"] for evaluation in report["evaluations"]] == [2, 4, 6, 8, 10, 12]
    assert report["reached"] and report["step_at_target"] == 2
    assert report["peak_rss_mb"] > 0
