"""The benchmark scripts run end to end on tiny files and print the promised JSON; each --help is instant."""

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import fake_mnist_arrays, help_without_tensorflow, write_fake_mnist, write_fake_mnistm

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


def test_train_speed_runs_every_measurement_and_counts_the_papers_work(tmp_path):
    mnist_path, mnistm_path = tiny_data(tmp_path)
    report = last_json_line("train_speed.py", "--mnist", mnist_path, "--mnistm", mnistm_path,
                            "--seconds", "0.3", "--batch_size", "8", "--steps_per_call", "2",
                            "--skip_torch")
    assert report["project"]["timed_steps"] > 0 and report["baseline"]["timed_steps"] > 0
    assert math.isfinite(report["project"]["last_total_loss"])
    # The same step in bfloat16, and its rate against float32's.
    assert math.isfinite(report["project_bf16"]["last_total_loss"])
    assert report["bf16_speedup_vs_fp32"] == pytest.approx(
        report["project_bf16"]["steps_per_s"] / report["project"]["steps_per_s"])
    # Multiply-adds per image, counted by hand from the paper's layers (valid convolutions):
    # conv1 24*24*32*5*5*3, conv2 8*8*48*5*5*32, label FC 768*100 + 100*100 + 100*10,
    # domain FC 768*100 + 100*2.
    expected = (24 * 24 * 32 * 5 * 5 * 3 + 8 * 8 * 48 * 5 * 5 * 32
                + 768 * 100 + 100 * 100 + 100 * 10 + 768 * 100 + 100 * 2)
    assert report["work"]["forward_macs_per_image"] == expected
    assert report["work"]["gflop_per_step"] == pytest.approx(2 * 3 * expected * 8 / 1e9)
    assert report["settings"]["batch_size"] == 8 and report["torch"] is None


# Were a download attempted, it would fail at once on this closed local port, never reaching the network.
NO_NETWORK = {name: "http://127.0.0.1:9" for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


@pytest.mark.parametrize("bsds", ["missing", "not an archive"])
def test_train_speed_without_mnistm_names_what_to_pass(tmp_path, bsds):
    mnist_path, bsds_path = str(tmp_path / "mnist.npz"), tmp_path / "BSR_bsds500.tgz"
    write_fake_mnist(mnist_path)
    if bsds == "not an archive":
        bsds_path.write_text("not an archive")
    completed = subprocess.run(
        [sys.executable, os.path.join(REPOSITORY, "bench", "train_speed.py"), "--mnist", mnist_path,
         "--mnistm", str(tmp_path / "built" / "mnist_m.npz"), "--bsds", str(bsds_path), "--seconds", "0.3",
         "--skip_torch", "--skip_baseline", "--skip_bfloat16"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env={**os.environ, "no_proxy": "", **NO_NETWORK})
    assert completed.returncode == 2, completed.stderr[-3000:]
    error = completed.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: "), error
    assert f"'{bsds_path}'" in error[0] and "--mnistm PATH" in error[0] and "--bsds PATH" in error[0]
    # Nothing built, nothing downloaded (a download would first make data/downloads/).
    assert sorted(os.listdir(tmp_path)) == sorted(["mnist.npz"] + (["BSR_bsds500.tgz"] if bsds_path.exists() else []))


def test_profile_step_sums_the_traced_ops_per_layer_and_direction(tmp_path):
    mnist_path, mnistm_path = tiny_data(tmp_path)
    report = last_json_line("profile_step.py", "--mnist", mnist_path, "--mnistm", mnistm_path,
                            "--steps", "50", "--logdir", str(tmp_path / "profile"), "--precision", "float32")
    assert report["steps"] == 50 and report["precision"] == "float32"
    assert sum(report["by_direction"].values()) == pytest.approx(1.0)
    convolutions = {(row["layer"], row["direction"]) for row in report["ops"] if "Conv2D" in row["op"]}
    assert {("feature_extractor/conv1", "forward"), ("feature_extractor/conv1", "backward"),
            ("feature_extractor/conv2", "forward"), ("feature_extractor/conv2", "backward")} <= convolutions
    assert os.listdir(os.path.join(report["trace"], "plugins", "profile"))


def test_time_to_accuracy_reports_an_unreached_target_and_every_evaluation(tmp_path):
    mnist_path, mnistm_path = tiny_data(tmp_path)
    report = last_json_line("time_to_accuracy.py", "--mnist", mnist_path, "--mnistm_path", mnistm_path,
                            "--epochs", "2", "--batch_size", "4", "--eval_every", "2",
                            "--target", "1.01", "--precision", "float32")
    assert report["precision"] == "float32" and report["precision_reason"] == "set in the config"
    # 12 images, 2 per half batch: 6 steps an epoch, 12 steps, an evaluation every 2.
    assert report["steps"] == 12
    assert [evaluation["step"] for evaluation in report["evaluations"]] == [2, 4, 6, 8, 10, 12]
    assert not report["reached"] and report["step_at_target"] is None
    assert report["final_target_acc"] == report["evaluations"][-1]["target_acc"]


def test_first_reached_reads_the_first_evaluation_at_each_threshold(tmp_path):
    sys.path.insert(0, os.path.join(REPOSITORY, "bench"))
    import first_reached
    from utils.training.summaries import ScalarWriter

    writer = ScalarWriter(str(tmp_path / "run"))
    for step, accuracy in [(100, 0.5), (1000, 0.78), (2000, 0.75), (3000, 0.81), (4000, 0.80)]:
        writer.write({"val/target_acc": accuracy, "train/label_loss": 1.0}, step)
    writer.close()
    rows = first_reached.table([str(tmp_path / "run")], [0.7666, 0.80, 0.85]).splitlines()
    cells = [cell.strip() for cell in rows[2].strip("|").split("|")]
    assert cells[:3] == ["run", "4,000", "0.8000"]
    assert cells[3].startswith("step 1,000, ") and cells[4].startswith("step 3,000, ")
    assert cells[5] == "not reached"
    with pytest.raises(ValueError, match="holds no 'val/target_acc'"):
        first_reached.table([str(tmp_path / "empty")], [0.8])


def test_judges_joins_each_runs_variants_into_one_row_and_ranks_every_score(tmp_path):
    sys.path.insert(0, os.path.join(REPOSITORY, "bench"))
    import judges

    paths = []
    # Three runs: the reverse validation of the paper variant orders them as the test accuracy does,
    # the fresh variant the other way round, and IM has no score for one of them.
    for run, test, paper, fresh, im in [("good", 0.9, 0.99, 0.90, 2.2), ("middle", 0.7, 0.95, 0.95, None),
                                        ("bad", 0.5, 0.90, 0.97, 1.0)]:
        (tmp_path / "logs" / run).mkdir(parents=True)
        (tmp_path / "checkpoints" / run).mkdir(parents=True)
        (tmp_path / "logs" / run / "final.json").write_text(json.dumps({"val/target_acc": test}))
        config = tmp_path / "logs" / run / "config.json"
        config.write_text(json.dumps({"seed": 1, "precision": "float32", "precision_reason": "set in the config"}
                                     if run == "good" else {}))
        for variant, reverse in [("paper", paper), ("fresh", fresh)]:
            path = tmp_path / f"{run}-{variant}.json"
            path.write_text(json.dumps({
                "model": str(tmp_path / "checkpoints" / run), "config": str(config), "reverse_variant": variant,
                "reverse_validation_accuracy": reverse, "information_maximization": im,
                "source_validation_accuracy": 0.98, "domain_accuracy": 0.6, "source_validation": "test"}))
            paths.append(str(path))
    rows = {row["run"]: row for row in judges.read_rows(paths)}
    assert len(rows) == 3 and rows["good"]["reverse_paper"] == 0.99 and rows["good"]["reverse_fresh"] == 0.90
    # The resolved precision is part of the recipe; the reason train.py records is not a flag.
    assert sorted(rows["good"]["command"].split()) == sorted("python train.py --seed 1 --precision float32".split())
    assert rows["bad"]["command"] == "python train.py" and rows["bad"]["bnm"] is None
    rho, interval, picked, count = judges.judge(list(rows.values()), "reverse_paper")
    # Every resample of three runs that orders them as the test accuracy does has rho 1 (or none).
    assert (rho, interval, picked, count) == (1.0, (1.0, 1.0), rows["good"], 3)
    assert judges.judge(list(rows.values()), "reverse_fresh")[::2] == (-1.0, rows["bad"])
    assert judges.judge(list(rows.values()), "information_maximization") == (None, None, rows["good"], 2)
    assert judges.judge(list(rows.values()), "source_validation_accuracy")[:2] == (None, None)  # all 0.98
    table = judges.report(list(rows.values()))
    assert "| reverse validation, fresh | -1.000 | -1.00 to -1.00 | 3 | bad | 0.5000 | 0.4000 |" in table
    low, high = judges.rho_interval([1, 2, 3, 4, 6, 5, 7, 9, 8, 10], list(range(10)))
    assert 0.7 < low < 0.98 < high <= 1.0  # nearly ordered: a narrow interval below 1
    assert "\n| BNM |" not in table  # no run has it: no row in the score tables
    with pytest.raises(ValueError, match="Two JSON files of the paper variant for good"):
        judges.read_rows(paths + paths[:1])


@pytest.mark.parametrize("vendor, family, flags, flops_per_cycle", [
    ("AuthenticAMD", 25, {"avx2", "fma"}, 32),                      # Zen 3: 2 x 256-bit FMA
    ("AuthenticAMD", 25, {"avx2", "avx512f", "avx512_bf16"}, 32),   # Zen 4: AVX-512 in 256-bit halves
    ("AuthenticAMD", 26, {"avx2", "avx512f", "avx512_bf16"}, 64),   # Zen 5 server: 2 x 512-bit FMA
    ("GenuineIntel", 6, {"avx2", "avx512f", "amx_bf16"}, 64),       # Sapphire Rapids: 2 x 512-bit FMA
    ("GenuineIntel", 6, {"sse4_2"}, 16),
])
def test_the_fp32_peak_counts_what_each_cpu_kind_computes_a_cycle(vendor, family, flags, flops_per_cycle):
    sys.path.insert(0, os.path.join(REPOSITORY, "bench"))
    import machine

    cpu = {"vendor": vendor, "family": family, "flags": flags, "mhz": 2000.0, "physical_cores": 2}
    peak, assumption = machine.fp32_peak(cpu)
    assert peak == 2 * 2000e6 * flops_per_cycle and f"{flops_per_cycle} flops/cycle/core" in assumption
    assert machine.fp32_peak({**cpu, "mhz": None}) == (None, "no clock in /proc/cpuinfo: peak unknown")


@pytest.mark.parametrize("script", ["train_speed.py", "profile_step.py", "time_to_accuracy.py", "first_reached.py",
                                    "judges.py"])
def test_a_bench_script_prints_its_help_without_loading_tensorflow(script):
    code, tensorflow_loaded, stderr = help_without_tensorflow(os.path.join("bench", script))
    assert code == "0" and not tensorflow_loaded, stderr
