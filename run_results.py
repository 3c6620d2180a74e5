"""Trains the runs of the results table, records each, writes docs/results.md and ships the seed-0 weights.

    python run_results.py --mnist PATH/mnist.npz --bsds PATH/BSR_bsds500.tgz --precision float32
    python run_results.py --table_only                # only rewrite the table from the records
    python run_results.py --only results-paper-dann-seed0 results-long-dann-seed0   # a subset

The table (utils/results.py): the `paper` preset in three modes (source only
and train on target 3 seeds, DANN 6) and the `long` preset's DANN, 3 seeds,
each run a `python train.py --preset P --mode M --seed S --run_name
results-P-M-seedS` with the further `--name value` arguments given here, the
same for every run. `--precision auto` (the default) is resolved once, on
this machine, and written into every command, so each row's command
reproduces it on any hardware.

A finished run leaves its record, docs/results/<run>.json: accuracies, command,
precision, training commit, machine, date and wall time. A run with a record
is skipped, one with a checkpoint but no record is resumed, so the table can
be built over several sittings and machines; commit docs/results/ with the table.
The table is rewritten after every run. Accuracies are those of the final
step: no checkpoint is chosen with target labels. A record whose training
code has changed since (utils/provenance.py) is marked stale in the table
and named at the end of the output.

When the seed-0 DANN run of a preset finishes, its classifier.keras and
config.json are copied to pretrained/<preset>/, the weights that
`python evaluate.py --model pretrained/<preset>` evaluates.
"""

import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import time

from config import preset_config
from utils import cli
from utils import provenance
from utils import results
from utils import scripts
from utils.files import atomic_path, write_text_atomic

# Set by run_results.py for each run, not given.
PER_RUN_SETTINGS = ("preset", "mode", "seed", "run_name")
PROGRESS_NAME = "run_results.json"  # In logs/<run>/: the training commit and time of a run's parts so far.
RUNS = {name: (row.preset, row.mode, seed)
        for row in results.ROWS for seed, name in enumerate(row.run_names())}


def parse_arguments(arguments):
    """(options, the train.py arguments of the settings given, their Config)."""
    parser = cli.Parser(__doc__, settings=[name for name in cli.SETTINGS if name not in PER_RUN_SETTINGS],
                        renamed={"--table-only": "--table_only"})
    parser.add_argument("--only", nargs="+", default=list(RUNS), choices=list(RUNS), metavar="RUN",
                        help="Train only these runs (default: all of the table's).")
    parser.add_argument("--out", default="docs/results.md", metavar="PATH", help="Default: %(default)s.")
    parser.add_argument("--records", default="docs/results", metavar="DIR",
                        help="The folder of the runs' records (default: %(default)s).")
    parser.add_argument("--pretrained", default="pretrained", metavar="DIR",
                        help="Where the seed-0 DANN weights are shipped, one folder per preset "
                             "(default: %(default)s).")
    parser.add_argument("--table_only", action="store_true", help="Train nothing; write the table.")
    fixed = sorted(f"--{name}" for name in PER_RUN_SETTINGS
                   if any(argument.partition("=")[0] == f"--{name}" for argument in arguments))
    if fixed:
        raise cli.UsageError(f"{', '.join(fixed)}: set per run by run_results.py; use --only instead.")
    # Checked now, so a typo fails before hours of training rather than in the first train.py call.
    parsed, overrides = parser.parse(arguments)
    config = preset_config(**overrides)
    if not parsed.table_only or "precision" in overrides:
        from utils.runtime import precision  # Imports TensorFlow: only when a command needs it.

        overrides["precision"] = precision.resolve(config.precision)[0]
    return parsed, cli.as_arguments(overrides), config


def train_command(name, train_arguments):
    """The train.py arguments of one run."""
    preset, mode, seed = RUNS[name]
    return ["train.py", "--preset", preset, "--mode", mode, "--seed", str(seed), "--run_name", name,
            *train_arguments]


def run_training(arguments):
    """Runs train.py with `arguments` (from "train.py" on) in a child process; returns its exit code."""
    return scripts.run_child(arguments)


def read_json(path, default=None):
    if not os.path.isfile(path):
        return default
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def ship_weights(config, name, folder):
    """Copies a finished run's export and config.json into `folder`, each file atomically."""
    os.makedirs(folder, exist_ok=True)
    sources = {"classifier.keras": os.path.join(config.checkpoint_dir, name, "classifier.keras"),
               "config.json": os.path.join(config.log_dir, name, "config.json")}
    for file_name, source in sources.items():
        with atomic_path(os.path.join(folder, file_name)) as temporary:
            shutil.copyfile(source, temporary)
    print(f"Shipped {name} as {folder}/: `python evaluate.py --model {folder}` evaluates it.")


def train_one(config, name, train_arguments, parsed):
    """Trains (or resumes) one run and writes its record; returns train.py's exit code."""
    command = train_command(name, train_arguments)
    log_folder = os.path.join(config.log_dir, name)
    # A checkpoint without a record is a run stopped part way: continue it.
    resumed = os.path.isfile(os.path.join(config.checkpoint_dir, name, "checkpoint"))
    command += ["--resume"] if resumed else []
    progress_path = os.path.join(log_folder, PROGRESS_NAME)
    commit = provenance.training_commit()
    progress = read_json(progress_path, {}) if resumed else {}
    # Resumed on other training code than it started with, a run belongs to no single commit (None: stale).
    if progress and progress.get("training_commit") != commit:
        commit = None
    print(f"\n=== python {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    exit_code = run_training(command)
    progress = {"training_commit": commit, "seconds": progress.get("seconds", 0.0) + time.perf_counter() - started,
                "parts": progress.get("parts", 0) + 1}
    if os.path.isdir(log_folder):
        write_text_atomic(progress_path, json.dumps(progress, indent=2) + "\n")
    if exit_code != 0:
        return exit_code
    final = read_json(os.path.join(log_folder, "final.json"))
    preset, mode, seed = RUNS[name]
    record = {"run": name, "preset": preset, "mode": mode, "seed": seed,
              "final": {key: final[key] for key in ("val/target_acc", "val/source_acc", "val/domain_acc", "steps")},
              "precision": read_json(os.path.join(log_folder, "config.json"))["precision"],
              "command": "python " + shlex.join(train_command(name, train_arguments)),
              "training_commit": commit, "machine": provenance.machine(),
              "finished": datetime.datetime.now().isoformat(timespec="seconds"),
              "seconds": round(progress["seconds"], 1), "parts": progress["parts"]}
    write_text_atomic(os.path.join(parsed.records, f"{name}.json"), json.dumps(record, indent=2) + "\n")
    if mode == "dann" and seed == 0:
        ship_weights(config, name, os.path.join(parsed.pretrained, preset))
    return 0


def main(arguments=None):
    arguments = sys.argv[1:] if arguments is None else arguments
    invocation = "python " + shlex.join(["run_results.py", *arguments])
    try:
        parsed, train_arguments, config = parse_arguments(arguments)
    except cli.HelpPrinted:
        return 0
    except ValueError as error:
        print(cli.one_line(error), file=sys.stderr)
        return 2

    def write_table():
        records = results.read_records(parsed.records)
        commands = {name: "python " + shlex.join(train_command(name, train_arguments)) for name in RUNS}
        write_text_atomic(parsed.out, results.results_page(records, provenance.training_commit(), commands,
                                                           invocation, datetime.date.today().isoformat()))
        return records

    records = write_table()
    for name in [] if parsed.table_only else parsed.only:
        if name in records:
            continue
        exit_code = train_one(config, name, train_arguments, parsed)
        if exit_code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            print(f"Stopped: {name} saved its checkpoint (its message is above). Run this command again "
                  "to continue.", file=sys.stderr)
            return exit_code
        if exit_code != 0:
            print(f"error: {name} failed (exit code {exit_code}); its message is above. Finished runs are "
                  f"recorded in {parsed.records}/: run this again to go on.", file=sys.stderr)
            return 1
        records = write_table()
    print(f"Wrote {parsed.out} ({len(records)} of {len(RUNS)} runs recorded).")
    stale = results.stale_runs(records, provenance.training_commit())
    if stale:
        print(f"Stale: the training code has changed since {', '.join(stale)} trained (or it was not "
              f"recorded); delete their records in {parsed.records}/ and their logs/ and checkpoints/ "
              "folders, and run this again to retrain them.")
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
