"""Training under tf.distribute: two logical CPU devices train as one device does, and two worker
processes on this machine train, checkpoint, stop and resume as one run.

Logical devices and a strategy can only be set before TensorFlow's runtime
starts, which it has in the test process: each configuration runs in a fresh
process of its own.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from config import Config
from conftest import write_fake_mnist, write_fake_mnistm
from utils.runtime import distribution
from utils.training.summaries import read_scalars

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Trains 4 steps of tiny_config under config.py's strategy fields from argv,
# then saves the weights and the metrics' window to argv[4].
TRAIN_A_FEW_STEPS = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from utils.runtime import startup
startup.set_up()
import pathlib
import numpy as np
import tensorflow as tf
from conftest import tiny_config, tiny_training_arrays
from utils.data import training_data
from utils.runtime import devices
from utils.training.trainer import Trainer
config = tiny_config(pathlib.Path(sys.argv[4]).parent, strategy=sys.argv[2], cpu_devices=int(sys.argv[3]),
                     batch_shards=1, color_source=True, ema_momentum=0.5)
runtime = devices.configure_for(config)  # Before any op: it splits the CPU.
trainer = Trainer(config, training_data.mnist_data(config, *tiny_training_arrays()), *runtime)
trainer.train_steps(tf.constant(4))
with trainer.dann_step.evaluation_weights():
    averages = [variable.numpy() for variable in trainer.variables]
np.savez(sys.argv[4], replicas=trainer.strategy.num_replicas_in_sync, step=trainer.step,
         metrics=[float(metric.result()) for metric in trainer.metrics.values()],
         **{f"weight{index}": variable.numpy() for index, variable in enumerate(trainer.variables)},
         **{f"average{index}": value for index, value in enumerate(averages)})
"""


def train_a_few_steps(tmp_path, strategy, cpu_devices):
    output = tmp_path / f"{strategy}-{cpu_devices}" / "result.npz"
    output.parent.mkdir()
    completed = subprocess.run([sys.executable, "-c", TRAIN_A_FEW_STEPS, REPOSITORY, strategy, str(cpu_devices),
                                str(output)], capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return dict(np.load(output))


def test_two_logical_cpu_devices_train_the_weights_of_one_device(tmp_path):
    # Random colors and the weights' moving average on, so that each replica's
    # share of the colors and the averages' update are checked too.
    one = train_a_few_steps(tmp_path, "auto", 1)
    two = train_a_few_steps(tmp_path, "mirrored", 2)
    assert (int(one["replicas"]), int(two["replicas"])) == (1, 2)
    assert int(one["step"]) == int(two["step"]) == 4
    weights = sorted(name for name in one if name.startswith(("weight", "average")))
    assert len(weights) == 2 * 14
    for name in weights:
        # Summation order differs between one batch and two parts: float tolerance.
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # Each replica's share of the metrics, summed across replicas, is the batch's mean.
    np.testing.assert_allclose(two["metrics"], one["metrics"], rtol=1e-5)


def free_ports(count):
    """Ports free on 127.0.0.1 now (the system picks them); kept open until all are chosen."""
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


def start_workers(arguments, ports, resume=False, indices=(0, 1)):
    """Two train.py processes, worker 0 (the chief) and worker 1, on 127.0.0.1 (or those of `indices`)."""
    processes = []
    for index in indices:
        cluster = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                   "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "train.py", "--strategy", "multi_worker", "--precision", "float32", *arguments,
             *(["--resume"] * resume)],
            cwd=REPOSITORY, env={**os.environ, "TF_CONFIG": json.dumps(cluster)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def finish(processes):
    outputs = [process.communicate(timeout=120) for process in processes]
    return [process.returncode for process in processes], outputs


def test_two_worker_processes_train_stop_together_and_resume(tmp_path):
    mnist_path, mnistm_path = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm_path, write_fake_mnist(mnist_path, train_count=96, test_count=20))
    # 36 steps of 16 + 16 images (8 + 8 a worker), one per compiled call.
    arguments = ["--mnist", mnist_path, "--mnistm_path", mnistm_path, "--epochs", "6", "--batch_size", "32",
                 "--log_every", "1", "--eval_every", "2", "--checkpoint_every", "1000", "--steps_per_call", "1",
                 "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "checkpoints")]
    checkpoints, logs = tmp_path / "checkpoints" / "dann-seed0", tmp_path / "logs" / "dann-seed0"

    ports = free_ports(2)
    workers = start_workers(arguments, ports)
    for line in workers[0].stdout:
        if line.startswith("step 4:"):  # Training is under way on both workers.
            break
    # As a scheduler would: SIGTERM to each worker, which receive it at different steps.
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    codes, outputs = finish(workers)
    assert codes == [143, 143], [stderr[-2000:] for _, stderr in outputs]
    stopped = {int(re.search(r"Stopped by SIGTERM at step (\d+), ", stderr)[1]) for _, stderr in outputs}
    assert len(stopped) == 1, "the workers stopped at different steps"
    (stopped_step,) = stopped
    assert 4 <= stopped_step < 36
    # Only the chief's checkpoint is kept; worker 1's temporary folder is gone.
    assert sorted(os.listdir(checkpoints)) == sorted(
        ["checkpoint", "config.json", f"ckpt-{stopped_step}.index", f"ckpt-{stopped_step}.data-00000-of-00001"])

    codes, outputs = finish(start_workers(arguments, free_ports(2), resume=True))
    assert codes == [0, 0], [stderr[-2000:] for _, stderr in outputs]
    finals = [json.loads(stdout[stdout.index("{"):]) for stdout, _ in outputs]
    assert finals[0]["steps"] == finals[1]["steps"] == 36
    # The mirrored weights are the same on both workers, so are their evaluations:
    # exactly, since both are train.py processes on one CPU with the same settings.
    assert finals[0]["val/target_acc"] == finals[1]["val/target_acc"]
    assert sorted(name for name in os.listdir(checkpoints) if name.startswith("ckpt-36")) == [
        "ckpt-36.data-00000-of-00001", "ckpt-36.index"]
    assert not any(name.startswith("worker_temporary") for name in os.listdir(checkpoints))
    assert os.path.isfile(checkpoints / "classifier.keras")
    assert json.loads((logs / "final.json").read_text())["steps"] == 36
    # The chief alone wrote the events: each step once, before and after the stop.
    steps = [step for step, _ in read_scalars(str(logs))["train/label_loss"]]
    assert steps == list(range(1, 37))


@pytest.mark.parametrize("arguments, message", [
    (["--strategy", "multi_worker"], "TF_CONFIG, which is not set"),
    (["--cpu_devices", "0"], "cpu_devices must be >= 1"),
    (["--strategy", "mirrored", "--cpu_devices", "3"], "does not split evenly across 3 replicas"),
    (["--strategy", "multi_worker", "--cpu_devices", "2"], "multi_worker trains one replica per CPU"),
])
def test_bad_strategy_settings_stop_with_one_error_line(tmp_path, arguments, message):
    mnist_path, mnistm_path = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm_path, write_fake_mnist(mnist_path, train_count=96, test_count=20))
    completed = subprocess.run(
        [sys.executable, "train.py", "--mnist", mnist_path, "--mnistm_path", mnistm_path, *arguments,
         "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "checkpoints")],
        cwd=REPOSITORY, env={key: value for key, value in os.environ.items() if key != "TF_CONFIG"},
        capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 2
    (line,) = completed.stderr.splitlines()
    assert line.startswith("error: ") and message in line


def wait_for(path, process, seconds):
    """Waits until `path` exists while `process` runs; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.05)


def error_line(stderr):
    """The one `error:` line of a stderr that holds no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


def test_a_killed_worker_ends_the_other_within_the_bound_and_both_resume(tmp_path):
    mnist_path, mnistm_path = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm_path, write_fake_mnist(mnist_path, train_count=96, test_count=20))
    # 24 steps of 16 + 16 images, one per compiled call, a checkpoint every 4.
    arguments = ["--mnist", mnist_path, "--mnistm_path", mnistm_path, "--epochs", "4", "--batch_size", "32",
                 "--log_every", "1", "--eval_every", "1000", "--checkpoint_every", "4", "--steps_per_call", "1",
                 "--peer_timeout_seconds", "10",
                 "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "checkpoints")]
    checkpoints, logs = tmp_path / "checkpoints" / "dann-seed0", tmp_path / "logs" / "dann-seed0"

    ports = free_ports(2)
    chief, worker = start_workers(arguments, ports)
    wait_for(checkpoints / "ckpt-4.index", chief, 90)
    worker.kill()  # As a lost machine: no signal handler runs, nothing is saved.
    killed = time.monotonic()
    _, stderr = chief.communicate(timeout=120)
    waited = time.monotonic() - killed
    worker.communicate()
    # The bound, with slack for TensorFlow's checks and a loaded machine.
    assert chief.returncode == 2 and waited < 10 + 20, (chief.returncode, waited, stderr[-3000:])
    line = error_line(stderr)
    assert f"lost worker 1 (127.0.0.1:{ports[1]})" in line
    saved = int(re.search(r"last checkpoint is at step (\d+) in ", line)[1])
    assert 4 <= saved < 24 and os.path.exists(checkpoints / f"ckpt-{saved}.index")
    assert line.endswith("--peer_timeout_seconds 10 --log_dir " + str(tmp_path / "logs") + " --checkpoint_dir "
                         + str(tmp_path / "checkpoints") + " --resume")

    codes, outputs = finish(start_workers(arguments, free_ports(2), resume=True))
    assert codes == [0, 0], [stderr[-2000:] for _, stderr in outputs]
    finals = [json.loads(stdout[stdout.index("{"):]) for stdout, _ in outputs]
    assert finals[0]["steps"] == finals[1]["steps"] == 24
    # Each step once in the chief's events: the steps after the checkpoint were discarded and trained again.
    steps = [step for step, _ in read_scalars(str(logs))["train/label_loss"]]
    assert steps == list(range(1, 25))


@pytest.mark.parametrize("index", [0, 1])  # The coordination service's host, and a worker that joins it.
def test_a_worker_whose_peer_never_starts_gives_up_within_the_bound(tmp_path, index):
    mnist_path, mnistm_path = str(tmp_path / "mnist.npz"), str(tmp_path / "mnist_m.npz")
    write_fake_mnistm(mnistm_path, write_fake_mnist(mnist_path, train_count=96, test_count=20))
    ports = free_ports(2)
    started = time.monotonic()
    (lonely,) = start_workers(["--mnist", mnist_path, "--mnistm_path", mnistm_path, "--peer_timeout_seconds", "5",
                               "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "checkpoints")],
                              ports, indices=(index,))
    try:
        _, stderr = lonely.communicate(timeout=120)
    finally:
        lonely.kill()  # A worker that waits on is not left behind.
    # TensorFlow's start-up and its retries' back-off come on top of the 5 s.
    assert lonely.returncode == 2 and time.monotonic() - started < 5 + 45, stderr[-3000:]
    (line,) = stderr.splitlines()
    peer = 1 - index
    assert line.startswith(f"error: strategy multi_worker: worker {peer} (127.0.0.1:{ports[peer]}) did not join "
                           "within 5 s (peer_timeout_seconds)")
    assert not (tmp_path / "logs").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("tf_config, message", [
    ("[1, 2]", "TF_CONFIG must be a JSON object with a \"cluster\""),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "TF_CONFIG must be a JSON object with a \"cluster\""),
    ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG must be a JSON object with a \"cluster\" of address lists"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 5}}',
     "TF_CONFIG's task index 5 is not in its cluster: job 'worker' lists 2 addresses, so the index must be 0 to 1"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}}', "task index None is not in"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}',
     "task type 'chief' is not a job of its cluster (worker)"),
    ("{not json", "TF_CONFIG is not valid JSON"),
])
def test_tf_config_of_the_wrong_shape_is_refused_before_any_work(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(distribution.DistributionError) as raised:
        distribution.make_strategy("multi_worker")
    assert message in str(raised.value)


def test_tf_config_that_is_not_an_object_stops_train_py_with_one_error_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "train.py", "--strategy", "multi_worker", "--log_dir", str(tmp_path / "logs"),
         "--checkpoint_dir", str(tmp_path / "checkpoints")],
        cwd=REPOSITORY, env={**os.environ, "TF_CONFIG": "[1, 2]"}, capture_output=True, text=True, timeout=120,
        check=False)
    assert completed.returncode == 2
    (line,) = completed.stderr.splitlines()
    assert line.startswith("error: TF_CONFIG must be a JSON object")
    assert not (tmp_path / "logs").exists()


def test_peer_timeout_must_be_positive():
    with pytest.raises(ValueError, match="peer_timeout_seconds must be > 0, got 0"):
        Config(peer_timeout_seconds=0.0)
