"""How well label-free scores judge runs: each score against the runs' MNIST-M test accuracy.

    python bench/judges.py logs/*-reverse-*/reverse_validation.json
    python bench/judges.py logs/*-reverse-*/reverse_validation.json --out results/judges.md

Reads the JSON that reverse_validation.py wrote for each run, one file per
variant of reverse validation (paper, fresh) or --scores_only, and the run's
own final.json (logs/<run>/ beside its checkpoints folder) for its MNIST-M
test accuracy, which no score has seen. The files of one run (the same
--model) make one row. Prints a markdown table, one row per run with the
train.py command that made it, then per score: Spearman's rank correlation
with the test accuracy over the runs, the run the score would pick (its
highest), that run's test accuracy and its gap to the best run. Beside each
rho, its 95% interval over 10,000 bootstrap resamples of the runs (seed 0):
scores whose intervals overlap widely are not told apart by these runs.

Scores, each oriented so that higher should be better:
- reverse validation accuracy, per variant (reverse_validation.py);
- source validation accuracy: the run's accuracy on held-out source images;
- the scores of utils/selection/validators.py: negative entropy,
  information maximization, BNM, SND, DEV, ClassAMI;
- domain confusion: minus the distance of the domain classifier's accuracy
  from 0.5 (chance). A source_only run never trains its domain classifier,
  so the score says little there.
This is a measurement of the judges; the target labels choose nothing here.
"""

import json
import os
import shlex
import sys

import numpy as np
from scipy import stats

# A script in bench/ imports the project from the folder above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import RECORDED_FIELDS, Config, preset_config  # noqa: E402
from utils import cli  # noqa: E402
from utils import scripts  # noqa: E402
from utils.files import write_text_atomic  # noqa: E402
from utils.runtime import startup  # noqa: E402

# Resamples of the runs behind each rho's interval (seeded: the table is the same at every run).
BOOTSTRAP_RESAMPLES = 10_000
# Per variant of reverse_validation.py --variant.
REVERSE_SCORES = {"reverse_paper": "reverse validation, paper", "reverse_fresh": "reverse validation, fresh"}
# Of eta alone: the same in every JSON of one run.
ETA_SCORES = {
    "source_validation_accuracy": "source validation accuracy",
    "negative_entropy": "negative entropy",
    "information_maximization": "information maximization",
    "bnm": "BNM",
    "snd": "SND",
    "dev": "DEV",
    "class_ami": "ClassAMI",
}
SCORES = {**REVERSE_SCORES, **ETA_SCORES, "domain_confusion": "domain confusion"}
# Fields that say where a run reads and writes, not how it trains, and those train.py records
# rather than takes: left out of its command. The precision stays: it is the one resolved.
NOT_RECIPE = {"mnist_path", "bsds_path", "mnistm_path", "download_dir", "run_name", "log_dir",
              "checkpoint_dir", "preset", "strategy", "cpu_devices", "batch_shards",
              "steps_per_call", "deterministic", "log_every", "eval_every", "checkpoint_every", *RECORDED_FIELDS}


def train_command(config):
    """The train.py command that trains `config`'s recipe: its preset and the fields it changes."""
    arguments = ["python", "train.py"] + (["--preset", config.preset] if config.preset != "paper" else [])
    base = preset_config(config.preset)
    for name, value in vars(config).items():
        if name not in NOT_RECIPE and value != getattr(base, name):
            arguments += [f"--{name}", str(value).lower() if isinstance(value, bool) else f"{value:g}"
                          if isinstance(value, float) else str(value)]
    return shlex.join(arguments)


def final_of(judged):
    """The run's final.json (logs/<run>/final.json beside checkpoints/<run>)."""
    model = os.path.abspath(judged["model"])
    folder = model if os.path.isdir(model) else os.path.dirname(model)
    path = os.path.join(os.path.dirname(folder), os.pardir, "logs", os.path.basename(folder), "final.json")
    if not os.path.isfile(path):
        raise ValueError(f"No final.json for {judged['model']} at {os.path.normpath(path)}: the test "
                         "accuracy of each run comes from its own log folder.")
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def read_rows(paths):
    """One row per run: its scores from the JSON files at `paths` (one per reverse variant, or
    --scores_only's), its test accuracy and its command."""
    from utils.evaluation.trained_run import read_config

    rows = {}
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            judged = json.load(stream)
        run = os.path.basename(os.path.normpath(judged["model"]))
        if run not in rows:
            config = read_config(judged["config"]) if judged.get("config") else Config()
            domain = judged.get("domain_accuracy")
            rows[run] = {"run": run, "command": train_command(config), "mode": config.mode,
                         "test": final_of(judged)["val/target_acc"],
                         **{key: judged.get(key) for key in ETA_SCORES}, **dict.fromkeys(REVERSE_SCORES),
                         "domain_confusion": None if domain is None else -abs(domain - 0.5),
                         "domain_accuracy": domain, "validation": judged["source_validation"]}
        if "reverse_variant" in judged:
            key = f"reverse_{judged['reverse_variant']}"
            if rows[run][key] is not None:
                raise ValueError(f"Two JSON files of the {judged['reverse_variant']} variant for {run}.")
            rows[run][key] = judged["reverse_validation_accuracy"]
    return list(rows.values())


def rho_interval(scores, tests, resamples=BOOTSTRAP_RESAMPLES, seed=0):
    """The 95% percentile interval of Spearman's rho over bootstrap resamples of the runs: how much
    the ranking of these runs leaves a score's rho uncertain."""
    rows = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))
    ranked = [stats.rankdata(np.asarray(values)[rows], axis=1) for values in (scores, tests)]
    centred = [ranks - ranks.mean(axis=1, keepdims=True) for ranks in ranked]
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample of one repeated run has no rho
        rhos = (centred[0] * centred[1]).sum(axis=1) / np.sqrt(
            (centred[0] ** 2).sum(axis=1) * (centred[1] ** 2).sum(axis=1))
    return tuple(float(bound) for bound in np.nanpercentile(rhos, [2.5, 97.5]))


def judge(rows, key):
    """(Spearman rho, its bootstrap interval, the picked row, how many rows) of one score over the
    rows that have it; rho and its interval are None under three rows or when either side is constant."""
    scored = [row for row in rows if row[key] is not None]
    picked = max(scored, key=lambda row: row[key]) if scored else None
    scores, tests = [row[key] for row in scored], [row["test"] for row in scored]
    if len(scored) < 3 or len(set(scores)) < 2 or len(set(tests)) < 2:
        return None, None, picked, len(scored)
    return float(stats.spearmanr(scores, tests).statistic), rho_interval(scores, tests), picked, len(scored)


def number(value):
    return "-" if value is None else f"{value:.4f}"


def report(rows):
    rows = sorted(rows, key=lambda row: row["test"], reverse=True)
    columns = [*SCORES][:-1] + ["domain_accuracy"]
    lines = ["| run | MNIST-M test | " + " | ".join([*SCORES.values()][:-1]) + " | domain accuracy | command |",
             "|" + "---|" * (len(columns) + 3)]
    for row in rows:
        lines.append(f"| {row['run']} | {row['test']:.4f} | "
                     + " | ".join(number(row[key]) for key in columns) + f" | `{row['command']}` |")
    # All runs, then the DANN runs alone: the paper chooses DANN's own settings this way.
    for title, group in (("All runs", rows), ("DANN runs only", [row for row in rows if row["mode"] == "dann"])):
        if len(group) < 2:
            continue
        best = group[0]
        lines += ["", f"{title}: the best by MNIST-M test accuracy is {best['run']} ({best['test']:.4f}).", "",
                  "| score | Spearman rho | 95% interval | runs | picks | its MNIST-M test | gap to the best |",
                  "|---|---|---|---|---|---|---|"]
        for key, score_title in SCORES.items():
            rho, interval, picked, count = judge(group, key)
            if picked is None:
                continue
            rho_text = "-" if rho is None else f"{rho:+.3f}"
            interval_text = "-" if interval is None else f"{interval[0]:+.2f} to {interval[1]:+.2f}"
            lines.append(f"| {score_title} | {rho_text} | {interval_text} | {count} | {picked['run']} | "
                         f"{picked['test']:.4f} | {best['test'] - picked['test']:.4f} |")
    return "\n".join(lines) + "\n"


def parse_arguments(arguments):
    parser = cli.Parser(__doc__)
    parser.add_argument("judged", nargs="+", metavar="JSON", help="reverse_validation.py's JSON files.")
    parser.add_argument("--out", default="", metavar="PATH", help="Also write the tables to this file.")
    options, _ = parser.parse(arguments)
    return options


@cli.reports_usage_errors
def main(arguments=None):
    options = parse_arguments(sys.argv[1:] if arguments is None else arguments)
    startup.set_up()
    try:
        text = report(read_rows(options.judged))
        if options.out:
            write_text_atomic(options.out, text)
    except (OSError, ValueError, KeyError) as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
