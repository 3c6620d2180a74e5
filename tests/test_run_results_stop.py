"""run_results.py passes a Ctrl-C on to the train.py run it is waiting for, which saves its checkpoint."""

import os
import signal
import subprocess
import sys

import tensorflow as tf

from conftest import write_fake_mnist, write_fake_mnistm

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ctrl_c_reaches_the_training_run_which_saves_before_it_ends(tmp_path):
    mnist, mnistm = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm, write_fake_mnist(mnist, train_count=96, test_count=20))
    # 48 steps, one per compiled call, an evaluation line every 2 steps.
    process = subprocess.Popen(
        [sys.executable, "run_results.py", "--only", "results-paper-dann-seed0", "--out", str(tmp_path / "results.md"),
         "--records", str(tmp_path / "records"), "--pretrained", str(tmp_path / "pretrained"),
         "--mnist", mnist, "--mnistm_path", mnistm, "--epochs", "8", "--batch_size", "32", "--log_every", "1",
         "--eval_every", "2", "--checkpoint_every", "1000", "--steps_per_call", "1", "--precision", "float32",
         "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "checkpoints")],
        cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0)
    for line in process.stdout:
        if line.startswith("step 2:"):  # The child is training.
            # As a terminal's Ctrl-C: SIGINT to the foreground process group, the one run_results.py leads.
            os.killpg(process.pid, signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Stopped by SIGINT at step " in stderr and "Run this command again to continue." in stderr
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "results-paper-dann-seed0"))
    assert latest is not None and int(latest.rsplit("-", 1)[1]) >= 2
