"""sweep.py: a grid of ordinary runs, scored without target labels, ranked, resumable."""

import json
import os

import numpy as np
import pytest

import sweep
from test_folders import write_image
from utils import scripts

# Short runs on tiny folders, as on every CPU kind.
TINY = ["--epochs", "4", "--batch_size", "8", "--log_every", "2", "--eval_every", "4", "--checkpoint_every", "8",
        "--steps_per_call", "2", "--deterministic", "true", "--precision", "float32", "--image_size", "16",
        "--binarize_source", "false"]


def write_separable_folders(folder, per_class=12):
    """Dark and bright images, the source gray-ish and the target tinted: a classifier that trains
    tells them apart with confidence; one with a learning rate near 0 keeps its random, hesitant outputs."""
    rng = np.random.default_rng(0)
    for domain, tint in (("source", (1.0, 1.0, 1.0)), ("target", (1.0, 0.6, 0.3))):
        for name, (low, high) in (("bright", (200, 256)), ("dark", (0, 50))):
            for index in range(per_class):
                pixels = (rng.integers(low, high, (16, 16, 3)) * np.array(tint)).astype(np.uint8)
                write_image(folder / domain / (name if domain == "source" else "") / f"{name}{index}.png", pixels)


def test_a_grid_whose_best_candidate_is_known_is_ranked_and_a_rerun_trains_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_separable_folders(tmp_path)
    arguments = ["--grid", "learning_rate=0.000001,0.05", "--source_dir", "source", "--target_dir", "target",
                 "--name", "tiny", *TINY]
    assert sweep.main(arguments) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    records = json.loads((tmp_path / "results" / "tiny" / "sweep.json").read_text())
    ranked = [record["run"] for record in records["ranked"]]
    assert ranked == ["tiny-learning_rate0.05", "tiny-learning_rate0.000001"]
    assert records["judge"] == "information_maximization"
    assert records["ranked"][0]["score"] > records["ranked"][1]["score"]
    # The winner's full command keeps every setting but the sweep's --epochs.
    assert printed[-1] == records["winner_command"]
    assert "--learning_rate 0.05" in printed[-1] and "--epochs" not in printed[-1]
    assert "--source_dir source" in printed[-1]
    table = (tmp_path / "results" / "tiny" / "sweep.md").read_text()
    assert "| 1 | 0.05 |" in table and "| 2 | 0.000001 |" in table
    for run in ranked:  # Ordinary runs: TensorBoard logs, checkpoints, the export.
        assert (tmp_path / "logs" / run / "final.json").is_file()
        assert (tmp_path / "checkpoints" / run / "classifier.keras").is_file()

    def must_not_run(arguments):
        raise AssertionError(f"ran {arguments}")

    monkeypatch.setattr(scripts, "run_child", must_not_run)
    assert sweep.main(arguments) == 0
    assert json.loads((tmp_path / "results" / "tiny" / "sweep.json").read_text()) == records


def test_a_stopped_candidate_stops_the_sweep_and_a_rerun_resumes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calls = []

    def stopped_on_the_second(arguments):
        calls.append(arguments)
        run = arguments[arguments.index("--run_name") + 1] if "--run_name" in arguments else None
        if arguments[0] == "train.py" and run == "s-lambda_max1.0":
            os.makedirs(f"checkpoints/{run}", exist_ok=True)
            open(f"checkpoints/{run}/checkpoint", "w").close()
            return 130
        if arguments[0] == "train.py":
            os.makedirs(f"logs/{run}", exist_ok=True)
            with open(f"logs/{run}/final.json", "w") as stream:
                json.dump({"val/target_acc": 0.5}, stream)
            return 0
        out = arguments[arguments.index("--out") + 1]
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as stream:
            json.dump({judge: 0.1 for judge in sweep.JUDGES}, stream)
        return 0

    monkeypatch.setattr(scripts, "run_child", stopped_on_the_second)
    assert sweep.main(["--grid", "lambda_max=0.3,1.0", "--name", "s"]) == 130
    assert "Stopped at s-lambda_max1.0, which saved its checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "results" / "s" / "sweep.md").exists()
    calls.clear()
    assert sweep.main(["--grid", "lambda_max=0.3,1.0", "--name", "s"]) == 130
    # The finished candidate is neither trained nor scored again; the stopped one resumes.
    assert [call[0] for call in calls] == ["train.py"] and calls[0][-1] == "--resume"


@pytest.mark.parametrize("arguments, message", [
    (["--grid", "lambdamax=0.3"], "'lambdamax' is not a setting of train.py"),
    (["--grid", "lambda_max"], "write each entry as name=value1,value2"),
    (["--grid", "lambda_max=0.3,abc"], "--lambda_max expects a float, got 'abc'"),
    (["--grid", "lambda_max=-1"], "lambda_max and domain_loss_weight must be >= 0"),
    (["--grid", "lambda_max=0.3", "--lambda_max", "1"], "given both in --grid and as a setting"),
    (["--grid", "lambda_max=0.3", "lambda_max=1"], "names lambda_max twice"),
    (["--grid", "lambda_max=0.3", "--name", "a/b"], "--name a/b: use letters"),
    (["--grid", "run_name=a,b"], "'run_name' is not a setting"),
])
def test_a_bad_grid_gives_one_error_line_and_runs_nothing(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(scripts, "run_child", lambda arguments: pytest.fail(f"ran {arguments}"))
    assert sweep.main(arguments) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
    assert os.listdir(tmp_path) == []
