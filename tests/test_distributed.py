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

import numpy as np
import pytest

from conftest import write_fake_mnist, write_fake_mnistm
from utils.training.summaries import read_scalars

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Trains 4 steps of tiny_config under config.py's strategy fields from argv,
# then saves the weights and the metrics' window to argv[4].
TRAIN_A_FEW_STEPS = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import utils.runtime.startup
import pathlib
import numpy as np
import tensorflow as tf
import train
from conftest import tiny_config, tiny_training_arrays
from utils.runtime import devices
config = tiny_config(pathlib.Path(sys.argv[4]).parent, strategy=sys.argv[2], cpu_devices=int(sys.argv[3]),
                     batch_shards=1, colour_source=True, ema_momentum=0.5)
trainer = train.Trainer(config, *tiny_training_arrays(), strategy=devices.configure_for(config))
trainer.train_steps(tf.constant(4))
with trainer.evaluation_weights():
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
    # Random colours and the weights' moving average on, so that each replica's
    # share of the colours and the averages' update are checked too.
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


def start_workers(arguments, ports, resume=False):
    """Two train.py processes, worker 0 (the chief) and worker 1, on 127.0.0.1."""
    processes = []
    for index in range(2):
        cluster = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                   "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "train.py", "--strategy", "multi_worker", *arguments, *(["--resume"] * resume)],
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
