"""Picks settings without a target label: trains every candidate of a grid, scores each with a
label-free judge, and ranks them (docs/reverse_validation.md, "Choosing settings").

    python sweep.py --grid lambda_max=0.3,0.6,1.0 learning_rate=0.003,0.01 --epochs 5 --mnist PATH/mnist.npz
    python sweep.py --grid lambda_max=0.3,1.0 --epochs 5 --source_dir S --target_dir T
    python sweep.py --grid ... --judge snd        # another label-free score to rank by

Each candidate is an ordinary run, `python train.py <the settings given>
<its grid values> --run_name <name>-<values>`: its curves are in TensorBoard
and its checkpoints in checkpoints/. A finished candidate (logs/<run>/final.json)
is skipped, a stopped one resumed, so a sweep stopped with Ctrl-C goes on
where it stopped when the same command runs again. Each finished candidate
is then scored by `python reverse_validation.py --model checkpoints/<run>
--scores_only`, which reads no target label, and the candidates are ranked
by --judge (default: information maximization, among the judges that ranked
runs best in docs/reverse_validation.md on a target with about equally
frequent classes; class_ami for a target whose classes may be imbalanced).
The ranked table, with every candidate's
command and scores, goes to results/<name>/sweep.md and sweep.json; the last
line printed is the command that trains the winner fully: its settings,
without the sweep's --epochs.
"""

import itertools
import json
import os
import re
import shlex
import signal
import sys

from tqdm import tqdm

from config import preset_config
from utils import cli
from utils import scripts
from utils.files import write_text_atomic

# reverse_validation.py --scores_only's scores, all higher-is-better; docs/reverse_validation.md
# measures each, and why the default is information maximization (class_ami under imbalance).
JUDGES = ("information_maximization", "negative_entropy", "bnm", "snd", "dev", "class_ami",
          "source_validation_accuracy")
DEFAULT_JUDGE = "information_maximization"
# The data settings reverse_validation.py takes from the command line (train.py records the rest).
SCORING_SETTINGS = ("mnist_path", "mnistm_path", "bsds_path")


def parse_grid(entries):
    """["name=v1,v2", ...] -> [(name, [v1, v2]), ...], refusing names that are not settings."""
    grid = []
    for entry in entries:
        name, separator, values = entry.partition("=")
        name = name.removeprefix("--")
        if not separator or not values:
            raise cli.UsageError(f"--grid {entry}: write each entry as name=value1,value2.")
        if name not in cli.SETTINGS or name == "run_name":
            raise cli.UsageError(f"--grid {entry}: '{name}' is not a setting of train.py (python train.py --help).")
        if name in dict(grid):
            raise cli.UsageError(f"--grid names {name} twice: give each setting once.")
        grid.append((name, [value.strip() for value in values.split(",") if value.strip()]))
    return grid


def parse_arguments(arguments):
    """(options, the train.py arguments every candidate shares, the grid's candidates)."""
    parser = cli.Parser(__doc__, settings=[name for name in cli.SETTINGS if name != "run_name"])
    parser.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2",
                        help="Settings to try, each with its values; every combination is a candidate.")
    parser.add_argument("--name", default="sweep", help="Prefix of the candidates' runs (default: %(default)s).")
    parser.add_argument("--judge", choices=JUDGES, default=DEFAULT_JUDGE,
                        help="The label-free score that ranks them (default: %(default)s; class_ami "
                             "when the target's classes may be imbalanced).")
    parser.add_argument("--out", default="", metavar="PATH",
                        help="The ranked table (default: results/<name>/sweep.md, and sweep.json beside it).")
    parsed, overrides = parser.parse(arguments)
    try:
        parsed.config = preset_config(**overrides)
    except ValueError as error:
        raise cli.UsageError(str(error)) from error
    if not re.fullmatch(r"[A-Za-z0-9._-]+", parsed.name):
        raise cli.UsageError(f"--name {parsed.name}: use letters, digits, '.', '_' and '-'.")
    grid = parse_grid(parsed.grid)
    repeated = sorted(name for name, _ in grid if name in overrides)
    if repeated:
        raise cli.UsageError(f"{', '.join(repeated)}: given both in --grid and as a setting; give it once.")
    shared = cli.as_arguments(overrides)
    candidates = []
    for values in itertools.product(*(values for _, values in grid)):
        settings = [(name, value) for (name, _), value in zip(grid, values)]
        grid_arguments = [part for name, value in settings for part in (f"--{name}", value)]
        # Checked now, so a bad value fails before any training.
        try:
            preset_config(**cli.parse_overrides([*shared, *grid_arguments]))
        except ValueError as error:
            raise cli.UsageError(f"--grid {' '.join(grid_arguments)}: {error}") from error
        run = "-".join([parsed.name, *(f"{name}{re.sub(r'[^A-Za-z0-9._]', '_', value)}" for name, value in settings)])
        candidates.append({"run": run, "settings": dict(settings), "train": [*shared, *grid_arguments]})
    parsed.scoring = [part for name in SCORING_SETTINGS if name in overrides
                      for part in (f"--{name}", str(overrides[name]))]
    parsed.out = parsed.out or os.path.join("results", parsed.name, "sweep.md")
    return parsed, shared, candidates


def full_command(shared, candidate):
    """The command that trains `candidate`'s settings for the whole run: the sweep's --epochs dropped."""
    arguments, skip = [], False
    for part in shared:
        if skip:
            skip = False
        elif part == "--epochs":
            skip = True
        else:
            arguments.append(part)
    grid_arguments = [part for name, value in candidate["settings"].items() for part in (f"--{name}", value)]
    return "python " + shlex.join(["train.py", *arguments, *grid_arguments])


def train(candidate, config):
    """Trains or resumes one candidate unless it has finished; returns train.py's exit code (0 if skipped)."""
    if os.path.isfile(os.path.join(config.log_dir, candidate["run"], "final.json")):
        return 0
    resume = os.path.isfile(os.path.join(config.checkpoint_dir, candidate["run"], "checkpoint"))
    return scripts.run_child(["train.py", *candidate["train"], "--run_name", candidate["run"],
                              *(["--resume"] if resume else [])])


def score(candidate, config, scoring, folder):
    """Scores a finished candidate unless its scores exist; returns (exit code, scores or None)."""
    path = os.path.join(folder, f"{candidate['run']}.json")
    code = 0
    if not os.path.isfile(path):
        code = scripts.run_child(["reverse_validation.py", "--model", os.path.join(config.checkpoint_dir, candidate["run"]),
                                  "--scores_only", "--out", path, *scoring])
    if code != 0:
        return code, None
    with open(path, encoding="utf-8") as stream:
        return 0, json.load(stream)


def ranked_table(candidates, judge, shared, invocation):
    """(Markdown, JSON) of the scored candidates, best first by `judge`."""
    ranked = sorted(candidates, key=lambda candidate: candidate["scores"][judge], reverse=True)
    names = list(ranked[0]["settings"])
    lines = [f"# Sweep ranked by {judge}", "",
             "Every score reads no target label (reverse_validation.py --scores_only); higher is better.", "",
             "| rank | " + " | ".join(names) + f" | {judge} | MNIST-M or target test (not used) | command |",
             "|" + " --- |" * (len(names) + 4)]
    for rank, candidate in enumerate(ranked, 1):
        accuracy = candidate["final"].get("val/target_acc")
        lines.append(f"| {rank} | " + " | ".join(candidate["settings"][name] for name in names)
                     + f" | {candidate['scores'][judge]:.4f} | "
                     + ("-" if accuracy is None else f"{accuracy:.4f}")
                     + f" | `python {shlex.join(['train.py', *candidate['train'], '--run_name', candidate['run']])}` |")
    lines += ["", f"Winner, trained fully: `{full_command(shared, ranked[0])}`", "",
              f"Written by `{invocation}`."]
    records = [{"rank": rank, "run": candidate["run"], "settings": candidate["settings"],
                "judge": judge, "score": candidate["scores"][judge], "scores": candidate["scores"],
                "target_test_accuracy_not_used": candidate["final"].get("val/target_acc"),
                "command": "python " + shlex.join(["train.py", *candidate["train"], "--run_name", candidate["run"]])}
               for rank, candidate in enumerate(ranked, 1)]
    return "\n".join(lines) + "\n", {"judge": judge, "ranked": records, "winner_command": full_command(shared, ranked[0])}


@cli.reports_usage_errors
def main(arguments):
    invocation = "python " + shlex.join(["sweep.py", *arguments])
    parsed, shared, candidates = parse_arguments(arguments)
    config, folder = parsed.config, os.path.dirname(parsed.out) or "."
    progress = tqdm(candidates, desc=f"sweep {parsed.name}", unit="candidate", file=sys.stderr)
    for number, candidate in enumerate(progress, 1):
        progress.write(f"[{number}/{len(candidates)}] {candidate['run']}")
        code = train(candidate, config)
        if code == 0:
            code, candidate["scores"] = score(candidate, config, parsed.scoring, folder)
        if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            progress.close()
            print(f"Stopped at {candidate['run']}, which saved its checkpoint. Run the same command again "
                  "to go on.", file=sys.stderr)
            return code
        if code != 0:
            progress.close()
            print(f"error: {candidate['run']} failed (exit code {code}); its message is above. Finished "
                  "candidates are kept: run the same command again to go on.", file=sys.stderr)
            return 1
        with open(os.path.join(config.log_dir, candidate["run"], "final.json"), encoding="utf-8") as stream:
            candidate["final"] = json.load(stream)
    progress.close()
    markdown, records = ranked_table(candidates, parsed.judge, shared, invocation)
    write_text_atomic(parsed.out, markdown)
    write_text_atomic(os.path.splitext(parsed.out)[0] + ".json", json.dumps(records, indent=2) + "\n")
    print(markdown)
    print(f"Best by {parsed.judge}: {records['ranked'][0]['run']}. Train it fully with:")
    print(records["winner_command"])
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main, sys.argv[1:]))
