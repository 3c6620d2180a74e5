"""run_results.py and utils/results.py: the records, the table written from them, and the shipped weights."""

import json
import time

import pytest

import run_results
import train
from conftest import stop_at, write_fake_bsds_tgz, write_fake_mnist
from utils import provenance
from utils import results
from utils.training.trainer import Trainer

MACHINE = {"cpu": "AMD EPYC, family 25", "cores": 2, "flags": ["avx2"], "python": "3.11.7",
           "tensorflow": "2.21.0", "system": "Linux"}


def fake_record(name, target_accuracy, source_accuracy=0.99, commit=None, precision="float32"):
    preset, mode, seed = run_results.RUNS[name]
    return {"run": name, "preset": preset, "mode": mode, "seed": seed,
            "final": {"val/target_acc": target_accuracy, "val/source_acc": source_accuracy,
                      "val/domain_acc": 0.6, "steps": 7032},
            "precision": precision, "command": f"python train.py --seed {seed} --run_name {name}",
            "training_commit": commit, "machine": MACHINE, "finished": "2026-12-02T07:00:00",
            "seconds": 600.0, "parts": 1}


def write_records(folder, accuracies, commit=None):
    folder.mkdir(exist_ok=True)
    for (preset, mode), values in accuracies.items():
        for seed, value in enumerate(values):
            name = results.run_name(preset, mode, seed)
            (folder / f"{name}.json").write_text(json.dumps(fake_record(name, value, commit=commit)))


def test_the_table_gives_mean_and_spread_beside_the_paper_and_marks_unrecorded_code_stale(tmp_path):
    write_records(tmp_path / "records", {("paper", "source_only"): [0.50, 0.52, 0.54],
                                         ("paper", "dann"): [0.70, 0.72, 0.74], ("paper", "target_only"): [0.96, 0.96],
                                         ("long", "dann"): [0.95]})
    out = tmp_path / "results.md"
    assert run_results.main(["--table_only", "--out", str(out), "--records", str(tmp_path / "records"),
                             "--precision", "float32"]) == 0
    table = out.read_text()
    assert ("| source only, `paper` | 0.5200 ± 0.0200 | 0.5225 | 0.9900 ± 0.0000 | 0, 1, 2 (3 of 3) | float32 "
            "| not recorded, **stale** |") in table
    assert "| DANN, `paper` | 0.7200 ± 0.0200 | 0.7666 | 0.9900 ± 0.0000 | 0, 1, 2 (3 of 6) | float32 |" in table
    assert "| train on target, `paper` | 0.9600 ± 0.0000 | 0.9596 |" in table
    assert "| DANN, `long` | 0.9500 | 0.7666 | 0.9900 | 0 (1 of 3) | float32 |" in table
    # The missing runs, with the precision resolved into their commands.
    assert ("`python train.py --preset paper --mode target_only --seed 2 --run_name results-paper-target_only-seed2 "
            "--precision float32`") in table
    assert ("| results-paper-dann-seed0 | 0.7000 | 0.9900 | 7032 | float32 | not recorded, **stale** | 2026-12-02 "
            "| 10.0 min | AMD EPYC, family 25, 2 cores, avx2 |") in table


def test_a_record_of_other_training_code_is_stale_and_of_this_code_is_not():
    current = {"commit": "abc1234", "uncommitted": False}
    this_code = fake_record("results-paper-dann-seed0", 0.7, commit=current)
    other_code = fake_record("results-paper-dann-seed1", 0.7, commit={"commit": "0000000", "uncommitted": False})
    records = {"results-paper-dann-seed0": this_code, "results-paper-dann-seed1": other_code}
    assert results.stale_runs(records, current) == ["results-paper-dann-seed1"]
    assert results.training_code(this_code, current) == "`abc1234`"
    assert results.training_code(other_code, current) == "`0000000`, **stale**"


@pytest.fixture
def tiny_arguments(tmp_path):
    write_fake_mnist(str(tmp_path / "mnist.npz"))
    return ["--mnist", str(tmp_path / "mnist.npz"), "--bsds", write_fake_bsds_tgz(str(tmp_path / "bsds.tgz")),
            "--mnistm_path", str(tmp_path / "mnist_m.npz"), "--log_dir", str(tmp_path / "logs"),
            "--checkpoint_dir", str(tmp_path / "checkpoints"), "--epochs", "1", "--batch_size", "4",
            "--eval_every", "3", "--log_every", "3", "--precision", "float32",
            "--out", str(tmp_path / "results.md"), "--records", str(tmp_path / "records"),
            "--pretrained", str(tmp_path / "pretrained")]


def test_run_results_trains_a_missing_run_records_it_ships_seed_0_then_skips_it(tmp_path, tiny_arguments,
                                                                                   monkeypatch):
    arguments = ["--only", "results-paper-dann-seed0", *tiny_arguments]
    # train.py runs in this process rather than a child one, which would spend 20 s importing TensorFlow.
    monkeypatch.setattr(run_results, "run_training", lambda command: train.main(command[1:]))
    assert run_results.main(arguments) == 0
    record = json.loads((tmp_path / "records" / "results-paper-dann-seed0.json").read_text())
    assert record["command"].startswith("python train.py --preset paper --mode dann --seed 0 --run_name "
                                        "results-paper-dann-seed0 ")
    assert record["precision"] == "float32" and record["parts"] == 1 and record["seconds"] > 0
    assert record["machine"] == provenance.machine()
    # Stamped with this checkout's training code, so not stale (a copy outside git records none).
    assert record["training_commit"] == provenance.training_commit()
    table = (tmp_path / "results.md").read_text()
    row = table.split("| results-paper-dann-seed0 |")[1].splitlines()[0]
    assert ("**stale**" in row) == (record["training_commit"] is None)
    final = json.loads((tmp_path / "logs" / "results-paper-dann-seed0" / "final.json").read_text())
    assert row.startswith(f" {final['val/target_acc']:.4f} |")
    shipped = tmp_path / "pretrained" / "paper"
    assert (shipped / "classifier.keras").read_bytes() == (
        tmp_path / "checkpoints" / "results-paper-dann-seed0" / "classifier.keras").read_bytes()
    assert json.loads((shipped / "config.json").read_text())["run_name"] == "results-paper-dann-seed0"

    def must_not_train(command):
        raise AssertionError(f"finished run trained again: {command}")

    monkeypatch.setattr(run_results, "run_training", must_not_train)
    assert run_results.main(arguments) == 0


def test_a_resumed_run_sums_the_time_of_its_parts_and_keeps_the_command_without_resume(
        tmp_path, tiny_arguments, monkeypatch):
    arguments = ["--only", "results-paper-source_only-seed0", *tiny_arguments]
    calls, seconds = [], []

    def stop_then_finish(command):
        calls.append(command)
        started = time.perf_counter()
        try:
            return train_part(command)
        finally:
            seconds.append(time.perf_counter() - started)

    def train_part(command):
        if len(calls) > 1:
            return train.main(command[1:])
        # The first part stops at step 3 as after a Ctrl-C, saving a checkpoint.
        with monkeypatch.context() as patch:
            start = Trainer.start

            def start_then_stop_at_3(trainer, resume):
                start(trainer, resume)
                stop_at(trainer, 3, request="SIGINT")

            patch.setattr(Trainer, "start", start_then_stop_at_3)
            return train.main(command[1:])

    monkeypatch.setattr(run_results, "run_training", stop_then_finish)
    assert run_results.main(arguments) == 130
    assert not (tmp_path / "records").exists() or not list((tmp_path / "records").iterdir())
    assert run_results.main(arguments) == 0
    assert calls[1][-1] == "--resume"
    record = json.loads((tmp_path / "records" / "results-paper-source_only-seed0.json").read_text())
    assert record["parts"] == 2 and "--resume" not in record["command"]
    assert record["seconds"] >= round(sum(seconds), 1) - 0.1
    assert not (tmp_path / "pretrained").exists()  # Only DANN's seed 0 is shipped, not source only's.


def test_run_results_refuses_per_run_settings_and_unknown_keys(capsys):
    assert run_results.main(["--seed", "3"]) == 2
    assert "set per run" in capsys.readouterr().err
    assert run_results.main(["--preset", "long"]) == 2
    assert "set per run" in capsys.readouterr().err
    assert run_results.main(["--epoch", "3"]) == 2
    assert "Unknown config key: 'epoch'" in capsys.readouterr().err
