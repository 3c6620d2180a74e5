"""Ctrl-C or SIGTERM stops a run with a checkpoint at the step it reached, and --resume continues it."""

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

import train
from config import parse_overrides, preset_config
from conftest import make_trainer, stop_at, tiny_config, trained_weights, write_fake_mnist, write_fake_mnistm
from utils.summaries import read_scalars

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def logged_steps(log_dir):
    return [step for step, _ in read_scalars(str(log_dir))["train/label_loss"]]


def test_a_stop_request_saves_a_checkpoint_at_the_step_reached(tmp_path):
    config = tiny_config(tmp_path, log_every=1, steps_per_call=1)  # Checkpoints every 6 steps.
    trainer = make_trainer(config)
    stop_at(trainer, 4, request="SIGTERM")
    with pytest.raises(train.TrainingStopped, match=r"Stopped by SIGTERM at step 4, .* checkpoint at step 4 "):
        trainer.run()
    assert trainer.checkpoint_step == 4
    assert logged_steps(tmp_path / "logs" / config.name) == [1, 2, 3, 4]


def test_a_stop_before_the_first_step_saves_nothing_and_the_same_command_starts_again(tmp_path):
    config = tiny_config(tmp_path)
    trainer = make_trainer(config)
    trainer.stop_requested = "SIGINT"
    with pytest.raises(train.TrainingStopped, match="at step 0, .* nothing was saved"):
        trainer.run()
    assert trainer.checkpoint_step is None
    make_trainer(config).start(resume=False)


def test_the_first_signal_requests_a_stop_and_leaves_the_default_action_for_a_second():
    trainer = types.SimpleNamespace(stop_requested=None)
    before = {stop_signal: signal.getsignal(stop_signal) for stop_signal in train.STOP_SIGNALS}
    with train.stop_on_signals(trainer):
        signal.raise_signal(signal.SIGTERM)
        assert trainer.stop_requested == "SIGTERM"
        # A second Ctrl-C or SIGTERM would end the process at once.
        assert all(signal.getsignal(stop_signal) == signal.SIG_DFL for stop_signal in train.STOP_SIGNALS)
    assert {stop_signal: signal.getsignal(stop_signal) for stop_signal in train.STOP_SIGNALS} == before


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    mnist_path, mnistm_path = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm_path, write_fake_mnist(mnist_path, train_count=96, test_count=20))
    # 48 steps of 16 + 16 images, one per compiled call; an evaluation line every 2 steps.
    arguments = ["--mnist", mnist_path, "--mnistm_path", mnistm_path, "--epochs", "8", "--batch_size", "32",
                 "--log_every", "1", "--eval_every", "2", "--checkpoint_every", "1000", "--steps_per_call", "1",
                 "--deterministic", "true", "--log_dir", str(tmp_path / "logs"),
                 "--checkpoint_dir", str(tmp_path / "checkpoints")]
    process = subprocess.Popen([sys.executable, "train.py", *arguments], cwd=REPOSITORY,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    arrays = train.load_data(config)
    assert make_trainer(config, arrays).checkpoint_step == stopped_step
    command = shlex.split(message.split("Continue it with: ")[1])
    assert command[:2] == ["python", "train.py"] and command[-1] == "--resume"
    assert train.main(command[2:]) == 0

    resumed = make_trainer(config, arrays)
    resumed.checkpoint.restore(resumed.manager.latest_checkpoint)
    uninterrupted = make_trainer(dataclasses.replace(config, log_dir=str(tmp_path / "a" / "logs"),
                                                     checkpoint_dir=str(tmp_path / "a" / "checkpoints")), arrays)
    uninterrupted.run()
    assert resumed.step == uninterrupted.step == 48
    for resumed_weight, expected_weight in zip(trained_weights(resumed), trained_weights(uninterrupted)):
        np.testing.assert_array_equal(resumed_weight, expected_weight)
    assert logged_steps(tmp_path / "logs" / config.name) == list(range(1, 49))
