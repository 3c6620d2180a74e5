"""TensorBoard beyond the scalars: HParams, Text, Images and Projector, read back with TensorBoard's
own readers and served by a real tensorboard process."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import make_trainer, stop_at, tiny_config
from utils.training import dashboards
from utils.training.stopping import TrainingStopped


def accumulated(log_dir):
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def session_start(accumulator):
    """(the HParams plugin's `session_start_info` record, how many were written): the run's hyperparameters."""
    count = len(accumulator.Tensors("_hparams_/session_start_info"))
    metadata = accumulator.SummaryMetadata("_hparams_/session_start_info")
    return plugin_data_pb2.HParamsPluginData.FromString(metadata.plugin_data.content).session_start_info, count


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboards")
    config = tiny_config(folder, run_name="tiny", seed=3)
    trainer = make_trainer(config)
    trainer.command = "python train.py --seed 3"
    final = trainer.run()
    return folder / "logs" / "tiny", config, final


def test_the_run_logs_its_settings_as_hparams_and_text(finished_run):
    log_dir, config, _ = finished_run
    accumulator = accumulated(log_dir)
    start, count = session_start(accumulator)
    assert count == 1
    values = {name: value for name, value in start.hparams.items()}
    assert set(values) == set(dashboards.HPARAMS)
    assert values["seed"].number_value == 3 and values["preset"].string_value == "paper"
    assert values["precision"].string_value == "float32" and values["color_source"].bool_value is False
    assert "_hparams_/experiment" in accumulator.Tags()["tensors"]
    config_text = accumulator.Tensors("config")[0].tensor_proto.string_val[0].decode()
    assert "| learning_rate | 0.01 |" in config_text and config_text.startswith("| setting | value |")
    assert accumulator.Tensors("command")[0].tensor_proto.string_val[0].decode() == "`python train.py --seed 3`"
    # The HParams metrics that only the end knows.
    assert accumulator.Tensors("final/steps")[0].step == 12


def test_each_evaluation_draws_the_target_confusion_matrix_and_mistakes(finished_run):
    log_dir, config, _ = finished_run
    accumulator = accumulated(log_dir)
    evaluation_steps = [4, 8, 12]
    for tag in ("target/confusion_matrix", "target/mistakes"):
        assert [event.step for event in accumulator.Tensors(tag)] == evaluation_steps, tag
    # The training inputs once, at the first evaluation.
    assert [event.step for event in accumulator.Tensors("inputs/training_batch")] == [4]


def test_the_projector_holds_both_test_sets_features_with_metadata(finished_run):
    log_dir, config, _ = finished_run
    pbtxt = (log_dir / "projector_config.pbtxt").read_text()
    assert 'metadata_path: "metadata.tsv"' in pbtxt and "embedding/.ATTRIBUTES/VARIABLE_VALUE" in pbtxt
    rows = (log_dir / dashboards.METADATA_FILE).read_text().splitlines()
    assert rows[0] == "domain\tlabel\tprediction"
    domains = [row.split("\t")[0] for row in rows[1:]]
    # The tiny test sets (40 source, 30 target images) are smaller than the sample: all of them.
    assert domains.count("source") == 40 and domains.count("target") == 30
    reader = tf.train.load_checkpoint(str(log_dir))
    assert reader.get_tensor("embedding/.ATTRIBUTES/VARIABLE_VALUE").shape == (70, 768)


def test_a_resumed_run_keeps_one_hparams_record(tmp_path):
    config = tiny_config(tmp_path, run_name="resumed")
    trainer = make_trainer(config)
    stop_at(trainer, 6, request="SIGTERM")
    with pytest.raises(TrainingStopped):
        trainer.run()
    make_trainer(config).run(resume=True)
    _, count = session_start(accumulated(tmp_path / "logs" / "resumed"))
    assert count == 1


def test_pictures_have_their_shapes_and_mistakes_invert_the_normalization():
    confusion = np.array([[5, 1], [2, 7]])
    picture = dashboards.confusion_picture(confusion, ("cat", "dog"), cell=20)
    assert picture.shape == (2 * 20 + 2 * 20, 2 * 20 + 2 * 20, 3) and picture.dtype == np.uint8
    grid = dashboards.labelled_grid(np.zeros((10, 28, 28, 3), np.uint8), ["x"] * 10, columns=4, scale=2)
    assert grid.shape == (3 * (56 + 12), 4 * 56, 3)
    mean = [100.0, 110.0, 120.0]
    pixels = np.random.default_rng(0).integers(0, 256, (40, 4, 4, 3)).astype(np.float32)
    mistakes = dashboards.Mistakes(mean)
    labels = np.zeros(40, int)
    logits = np.tile([0.0, 1.0], (40, 1))  # Every prediction is class 1: all 40 are mistakes.
    mistakes.add((pixels - mean) / 255.0, labels, logits)
    images, true, predicted = mistakes.arrays()
    assert len(images) == dashboards.MISTAKES_SHOWN and np.array_equal(images, pixels[:32].astype(np.uint8))
    assert np.all(true == 0) and np.all(predicted == 1)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_live_tensorboard_serves_the_runs_scalars_images_hparams_and_projector(finished_run):
    log_dir, config, _ = finished_run
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir.parent),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def get(path, body=None):
        request = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "X-TensorBoard-Feature-Flags": "{}"} if body else {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    try:
        deadline = time.time() + 120
        while True:
            try:
                scalars = get("/data/plugin/scalars/tags")
                if "tiny" in scalars:
                    break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, server.stderr.read() if server.poll() else "timeout"
            time.sleep(1)
        assert {"train/label_loss", "val/target_acc", "schedule/lambda"} <= set(scalars["tiny"])
        images = get("/data/plugin/images/tags")
        assert {"target/confusion_matrix", "target/mistakes", "inputs/training_batch"} <= set(images["tiny"])
        experiment = get("/data/plugin/hparams/experiment", {"experimentName": ""})
        assert {entry["name"] for entry in experiment["hparamInfos"]} == set(dashboards.HPARAMS)
        assert {entry["name"]["tag"] for entry in experiment["metricInfos"]} == set(dashboards.METRICS)
        # The projector finds its runs in a thread of its own: it may answer [] at first.
        while "tiny" not in get("/data/plugin/projector/runs"):
            assert time.time() < deadline, "the projector lists no run"
            time.sleep(1)
        text_runs = get("/data/plugin/text/tags")
        assert {"config", "command"} <= set(text_runs["tiny"])
    finally:
        server.terminate()
        server.wait(timeout=30)
