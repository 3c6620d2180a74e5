"""How well label-free scores judge runs: each score against the runs' MNIST-M test accuracy.

    python bench/judges.py logs/*-reverse/reverse_validation.json
    python bench/judges.py logs/*-reverse/reverse_validation.json --out results/judges.md

Reads the JSON that reverse_validation.py wrote for each run, and the run's
own final.json (logs/<run>/ beside its checkpoints folder) for its MNIST-M
test accuracy, which no score has seen. Prints a markdown table, one row per
run with the train.py command that made it, then per score: Spearman's rank
correlation with the test accuracy over the runs, the run the score would
pick (its highest) and that run's test accuracy beside the best one's.

Scores, each oriented so that higher should be better:
- reverse validation accuracy (reverse_validation.py);
- source validation accuracy: the run's accuracy on held-out source images;
- negative entropy and information maximization of its target predictions;
- domain confusion: minus the distance of the domain classifier's accuracy
  from 0.5 (chance). A source_only run never trains its domain classifier,
  so the score says little there.
This is a measurement of the judges; the target labels choose nothing here.
"""

import json
import os
import shlex
import sys

from scipy import stats

# A script in bench/ imports the project from the folder above.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import Config, preset_config  # noqa: E402
from utils import cli  # noqa: E402
from utils import scripts  # noqa: E402
from utils.files import write_text_atomic  # noqa: E402
from utils.runtime import startup  # noqa: E402

SCORES = {
    "reverse_validation_accuracy": "reverse validation",
    "source_validation_accuracy": "source validation accuracy",
    "negative_entropy": "negative entropy",
    "information_maximization": "information maximization",
    "domain_confusion": "domain confusion",
}
# Fields that say where a run reads and writes, not how it trains: left out of its command.
NOT_RECIPE = {"mnist_path", "bsds_path", "mnistm_path", "download_dir", "run_name", "log_dir",
              "checkpoint_dir", "preset", "precision", "strategy", "cpu_devices", "batch_shards",
              "steps_per_call", "deterministic", "log_every", "eval_every", "checkpoint_every", "class_names"}


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


def read_row(path):
    """A run's row: its scores from reverse_validation.py's JSON at `path`, its test accuracy and its command."""
    from utils.evaluation.trained_run import read_config

    with open(path, encoding="utf-8") as stream:
        judged = json.load(stream)
    config = read_config(judged["config"]) if judged.get("config") else Config()
    domain = judged.get("domain_accuracy")
    return {"run": os.path.basename(os.path.normpath(judged["model"])), "command": train_command(config),
            "mode": config.mode,
            "test": final_of(judged)["val/target_acc"],
            **{key: judged.get(key) for key in SCORES if key != "domain_confusion"},
            "domain_confusion": None if domain is None else -abs(domain - 0.5), "domain_accuracy": domain,
            "reverse_epochs": judged["reverse_epochs"], "validation": judged["source_validation"]}


def judge(rows, key):
    """(Spearman rho, the picked row) of one score over the rows that have it."""
    scored = [row for row in rows if row[key] is not None]
    rho = stats.spearmanr([row[key] for row in scored], [row["test"] for row in scored]).statistic
    return float(rho), max(scored, key=lambda row: row[key]), len(scored)


def report(rows):
    rows = sorted(rows, key=lambda row: row["test"], reverse=True)
    lines = ["| run | MNIST-M test | reverse validation | source validation | negative entropy | "
             "information max. | domain accuracy | command |", "|" + "---|" * 8]
    for row in rows:
        domain = "-" if row["domain_accuracy"] is None else f"{row['domain_accuracy']:.4f}"
        lines.append(f"| {row['run']} | {row['test']:.4f} | {row['reverse_validation_accuracy']:.4f} | "
                     f"{row['source_validation_accuracy']:.4f} | {row['negative_entropy']:.4f} | "
                     f"{row['information_maximization']:.4f} | {domain} | `{row['command']}` |")
    # All runs, then the DANN runs alone: the paper chooses DANN's own settings this way.
    for title, group in (("All runs", rows), ("DANN runs only", [row for row in rows if row["mode"] == "dann"])):
        if len(group) < 2:
            continue
        best = group[0]
        lines += ["", f"{title}: the best by MNIST-M test accuracy is {best['run']} ({best['test']:.4f}).", "",
                  "| score | Spearman rho | runs | picks | its MNIST-M test |", "|---|---|---|---|---|"]
        for key, score_title in SCORES.items():
            rho, picked, count = judge(group, key)
            lines.append(f"| {score_title} | {rho:+.3f} | {count} | {picked['run']} | {picked['test']:.4f} |")
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
        text = report([read_row(path) for path in options.judged])
        if options.out:
            write_text_atomic(options.out, text)
    except (OSError, ValueError, KeyError) as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
