"""Ctrl-C or SIGTERM stops a run with a checkpoint at the step it reached, and --resume continues it."""

import os
import re
import shlex
import signal
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from config import preset_config
from utils.cli import parse_overrides
from conftest import make_trainer, stop_at, tiny_config, write_fake_mnist, write_fake_mnistm
from utils.training.summaries import read_scalars
from utils.scripts import STOP_SIGNALS
from utils.training.stopping import TrainingStopped
from utils.training.stopping import stop_on_signals

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def logged_steps(log_dir):
    return [step for step, _ in read_scalars(str(log_dir))["train/label_loss"]]


def test_a_stop_request_saves_a_checkpoint_at_the_step_reached(tmp_path):
    config = tiny_config(tmp_path, log_every=1, steps_per_call=1)  # Checkpoints every 6 steps.
    trainer = make_trainer(config)
    stop_at(trainer, 4, request="SIGTERM")
    with pytest.raises(TrainingStopped, match=r"Stopped by SIGTERM at step 4, .* checkpoint at step 4 "):
        trainer.run()
    assert trainer.checkpoint_step == 4
    assert logged_steps(tmp_path / "logs" / config.name) == [1, 2, 3, 4]


def test_a_stop_before_the_first_step_saves_nothing_and_the_same_command_starts_again(tmp_path):
    config = tiny_config(tmp_path)
    trainer = make_trainer(config)
    trainer.stop_requested = "SIGINT"
    with pytest.raises(TrainingStopped, match="at step 0, .* nothing was saved"):
        trainer.run()
    assert trainer.checkpoint_step is None
    make_trainer(config).start(resume=False)


def test_the_first_signal_requests_a_stop_and_leaves_the_default_action_for_a_second():
    trainer = types.SimpleNamespace(stop_requested=None)
    before = {stop_signal: signal.getsignal(stop_signal) for stop_signal in STOP_SIGNALS}
    with stop_on_signals(trainer):
        signal.raise_signal(signal.SIGTERM)
        assert trainer.stop_requested == "SIGTERM"
        # A second Ctrl-C or SIGTERM would end the process at once.
        assert all(signal.getsignal(stop_signal) == signal.SIG_DFL for stop_signal in STOP_SIGNALS)
    assert {stop_signal: signal.getsignal(stop_signal) for stop_signal in STOP_SIGNALS} == before


def checkpoint_values(checkpoint_dir):
    """Every value in a folder's latest checkpoint (weights, optimizer slots, step, GRL lambda), by
    name; not the count of saves, which an interrupted run makes one more of."""
    reader = tf.train.load_checkpoint(str(checkpoint_dir))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"))}


def train_process(arguments, **popen_arguments):
    return subprocess.Popen([sys.executable, "train.py", *arguments], cwd=REPOSITORY, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen_arguments)


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    # Bit-identical weights hold for the same runtime settings (threads, slices,
    # devices) on the same CPU: oneDNN sums a convolution's gradient in an order
    # that depends on them and on the instruction set. So all three runs are
    # train.py processes, each configured alike by train.py itself.
    mnist_path, mnistm_path = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm_path, write_fake_mnist(mnist_path, train_count=96, test_count=20))
    # 48 steps of 16 + 16 images, one per compiled call; an evaluation line every 2 steps.
    # float32 as on every CPU kind: auto would pick bfloat16 where it is native.
    common = ["--precision", "float32", "--mnist", mnist_path, "--mnistm_path", mnistm_path, "--epochs", "8",
              "--batch_size", "32", "--log_every", "1", "--eval_every", "2", "--checkpoint_every", "1000", "--steps_per_call", "1",
              "--deterministic", "true"]
    arguments = [*common, "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "checkpoints")]
    process = train_process(arguments)
    for line in process.stdout:
        if line.startswith("step 2:"):  # Training is under way.
            process.send_signal(signal.SIGTERM)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    (message,) = stderr.splitlines()
    stopped_step = int(re.search(r"Stopped by SIGTERM at step (\d+), ", message)[1])
    assert 2 <= stopped_step < 48

    config = preset_config(**parse_overrides(arguments, aliases={"mnist": "mnist_path"}))
    checkpoint_dir = tmp_path / "checkpoints" / config.name
    assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith(f"ckpt-{stopped_step}")
    command = shlex.split(message.split("Continue it with: ")[1])
    assert command[:2] == ["python", "train.py"] and command[-1] == "--resume"
    resumed = train_process(command[2:])
    uninterrupted = train_process([*common, "--log_dir", str(tmp_path / "a" / "logs"),
                                   "--checkpoint_dir", str(tmp_path / "a" / "checkpoints")])
    for finished in (resumed, uninterrupted):
        _, stderr = finished.communicate(timeout=300)
        assert finished.returncode == 0, stderr[-3000:]

    resumed_values = checkpoint_values(checkpoint_dir)
    uninterrupted_values = checkpoint_values(tmp_path / "a" / "checkpoints" / config.name)
    assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith("ckpt-48")
    assert sorted(resumed_values) == sorted(uninterrupted_values)
    assert sum(name.startswith("optimizer/_trainable_variables/") for name in resumed_values) == 14
    for name, value in uninterrupted_values.items():
        np.testing.assert_array_equal(resumed_values[name], value, err_msg=name)
    assert logged_steps(tmp_path / "logs" / config.name) == list(range(1, 49))
