"""Trains source_only, dann and target_only for three seeds each, then writes the results table.

    python run_results.py                                 # 9 runs with config.py's settings -> docs/results.md
    python run_results.py --mnist ../shared/data/mnist.npz --bsds ../shared/data/BSR_bsds500.tgz
    python run_results.py --table_only                    # only rewrite the table from finished runs
    python run_results.py --modes dann --seeds 0          # a subset

Each run is `python train.py --mode M --seed S --run_name results-M-seedS`,
plus any further `--name value` arguments, which go to every train.py call
unchanged. A run whose logs/<run>/final.json exists is skipped and one with
a checkpoint but no final.json is resumed, so the nine runs (each about
as long as one default `python train.py`, see the README) can be finished
over several invocations. The table is rewritten after every run. Accuracies are those of
the final step: no checkpoint is chosen with target labels.

Each run records the commit of the training code it trained with
(utils/provenance.py: the last commit that changed the networks, data,
loop, runtime, evaluation metrics, config.py or train.py). A finished run
whose training code has changed since, or that has no such record, is
marked stale in the table and named at the end of the output.
"""

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import time

from config import MODES, preset_config
from utils import cli
from utils import provenance
from utils import scripts
from utils.files import write_text_atomic

MODE_TITLES = {"source_only": "source only", "dann": "DANN", "target_only": "train on target"}
# MNIST -> MNIST-M accuracy in Ganin & Lempitsky (2015), table 2 (JMLR 2016, table 2).
PAPER_MNISTM_ACCURACY = {"source_only": 0.5225, "dann": 0.7666, "target_only": 0.9596}
RECORD_NAME = "run_results.json"  # Beside final.json: the command, wall time and machine of the run.


# Set by run_results.py for each run, not given.
PER_RUN_SETTINGS = ("mode", "seed", "run_name")


def parse_arguments(arguments):
    """(options, the train.py arguments of the settings given, their Config)."""
    parser = cli.Parser(__doc__, settings=[name for name in cli.SETTINGS if name not in PER_RUN_SETTINGS],
                        renamed={"--table-only": "--table_only"})
    # Lower bound, method, upper bound: the order of the paper's table.
    parser.add_argument("--modes", nargs="+", default=["source_only", "dann", "target_only"], choices=MODES,
                        help="Default: all three.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Default: 0 1 2.")
    parser.add_argument("--out", default="docs/results.md", metavar="PATH", help="Default: %(default)s.")
    parser.add_argument("--table_only", action="store_true", help="Train nothing; write the table.")
    fixed = sorted(f"--{name}" for name in PER_RUN_SETTINGS
                   if any(argument.partition("=")[0] == f"--{name}" for argument in arguments))
    if fixed:
        raise cli.UsageError(f"{', '.join(fixed)}: set per run by run_results.py; use --modes and --seeds "
                             "instead.")
    # Checked now, so a typo fails before hours of training rather than in the first train.py call.
    parsed, overrides = parser.parse(arguments)
    return parsed, cli.as_arguments(overrides), preset_config(**overrides)


def run_name(mode, seed):
    return f"results-{mode}-seed{seed}"


def train_command(mode, seed, train_arguments):
    """The train.py arguments of one run, as written in the table."""
    return ["train.py", "--mode", mode, "--seed", str(seed), "--run_name", run_name(mode, seed), *train_arguments]


def run_training(arguments):
    """Runs train.py with `arguments` (from "train.py" on) in a child process; returns its exit code."""
    return scripts.run_child(arguments)


def machine_description():
    """CPU model, core count, Python and TensorFlow versions of this machine."""
    cpu_model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            cpu_model = next((line.split(":", 1)[1].strip() for line in stream
                              if line.startswith("model name")), cpu_model)
    except OSError:
        pass  # Not Linux: platform.processor() is the best there is.
    try:
        tensorflow_version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tensorflow_version = "not installed"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu_model}, {cores} cores; Python {platform.python_version()}, "
            f"TensorFlow {tensorflow_version}, {platform.system()}")


def read_json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def finished_runs(config, modes, seeds):
    """{(mode, seed): {"final": final.json, "record": run_results.json or None}} for the finished runs."""
    runs = {}
    for mode in modes:
        for seed in seeds:
            folder = os.path.join(config.log_dir, run_name(mode, seed))
            if os.path.isfile(os.path.join(folder, "final.json")):
                record_path = os.path.join(folder, RECORD_NAME)
                runs[mode, seed] = {"final": read_json(os.path.join(folder, "final.json")),
                                    "record": read_json(record_path) if os.path.isfile(record_path) else None}
    return runs


def was_resumed(run):
    """Whether run_results.py continued this run from a checkpoint (its earlier part's time is lost)."""
    return bool(run["record"] and run["record"]["resumed"])


def mean_and_spread(values):
    """'mean ± sample standard deviation (n runs)' of accuracies; '-' when there are none."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f} (1 run)"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def recorded_commit(record):
    """The training commit run_results.py recorded for a run; None for a run without one."""
    return (record or {}).get("training_commit")


def training_code(record, current):
    """The table's cell: the run's training commit, and whether the code has changed since."""
    recorded = recorded_commit(record)
    text = "not recorded" if recorded is None else f"`{recorded['commit']}`" + (
        " with uncommitted changes" if recorded["uncommitted"] else "")
    return text + (", **stale**" if provenance.is_stale(recorded, current) else "")


def stale_runs(runs):
    """The names of the finished runs whose training code is not the current one."""
    current = provenance.training_commit()
    return [run_name(mode, seed) for (mode, seed), run in sorted(runs.items())
            if provenance.is_stale(recorded_commit(run["record"]), current)]


def results_table(runs, modes, seeds, train_arguments, invocation):
    """The markdown page: summary table beside the paper, every run with its command, the machine."""
    lines = ["# Results: MNIST -> MNIST-M", "",
             f"Final-step test accuracy over seeds {', '.join(map(str, seeds))}: mean ± sample standard "
             "deviation. No checkpoint is selected with target labels. Paper: Ganin & Lempitsky (2015), "
             "table 2 (MNIST -> MNIST-M).", "",
             "| method | MNIST-M test accuracy | paper | MNIST test accuracy | runs |",
             "| --- | --- | --- | --- | --- |"]
    for mode in modes:
        finals = [runs[mode, seed]["final"] for seed in seeds if (mode, seed) in runs]
        lines.append(f"| {MODE_TITLES[mode]} (`{mode}`) "
                     f"| {mean_and_spread([final['val/target_acc'] for final in finals])} "
                     f"| {PAPER_MNISTM_ACCURACY[mode]:.4f} "
                     f"| {mean_and_spread([final['val/source_acc'] for final in finals])} "
                     f"| {len(finals)} of {len(seeds)} |")
    lines += ["", "## Runs", "", "Training code: the last commit that changed what a run trains and evaluates "
              "with (utils/provenance.py); **stale** when that code has changed since.", "",
              "| run | MNIST-M test | MNIST test | steps | training code | wall time | command |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    machines, missing, total_seconds = set(), [], 0.0
    current = provenance.training_commit()
    for mode in modes:
        for seed in seeds:
            command = "python " + shlex.join(train_command(mode, seed, train_arguments))
            if (mode, seed) not in runs:
                missing.append(f"- `{command}`")
                continue
            final, record = runs[mode, seed]["final"], runs[mode, seed]["record"]
            # The child process's time when run_results.py ran it; else train.py's own timer.
            seconds = record["seconds"] if record else final["wall_seconds"]
            total_seconds += seconds
            # The stopped part's time died with its process: say so rather than under-report.
            resumed = " (resumed: last part only)" if was_resumed(runs[mode, seed]) else ""
            if record:
                machines.add(record["machine"])
                command = record["command"]
            lines.append(f"| {run_name(mode, seed)} | {final['val/target_acc']:.4f} | "
                         f"{final['val/source_acc']:.4f} | {final['steps']} | {training_code(record, current)} | "
                         f"{seconds / 60:.1f} min{resumed} | `{command}` |")
    if missing:
        lines += ["", "Not run yet:", *missing]
    lines += ["", "## Machine", "",
              f"Total wall time of the runs above: {total_seconds / 3600:.2f} h"
              + (", without the parts of resumed runs before their stop."
                 if any(map(was_resumed, runs.values())) else "."), "",
              *(f"- {machine}" for machine in sorted(machines or {machine_description()})),
              "", f"Table written by `{invocation}` on {datetime.date.today().isoformat()}."]
    return "\n".join(lines) + "\n"


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
        runs = finished_runs(config, parsed.modes, parsed.seeds)
        write_text_atomic(parsed.out, results_table(runs, parsed.modes, parsed.seeds, train_arguments,
                                                        invocation))
        return runs

    runs = write_table()
    for mode in [] if parsed.table_only else parsed.modes:
        for seed in parsed.seeds:
            if (mode, seed) in runs:
                continue
            command = train_command(mode, seed, train_arguments)
            # A checkpoint without final.json is a run stopped part way: continue it.
            resumed = os.path.isfile(os.path.join(config.checkpoint_dir, run_name(mode, seed), "checkpoint"))
            command += ["--resume"] if resumed else []
            print(f"\n=== python {shlex.join(command)}", flush=True)
            record_path = os.path.join(config.log_dir, run_name(mode, seed), RECORD_NAME)
            commit = provenance.training_commit()
            # A run stopped part way left the commit it started at: resumed on other training code,
            # it belongs to no single commit (None: stale).
            if resumed and os.path.isfile(record_path) and recorded_commit(read_json(record_path)) != commit:
                commit = None
            started = time.perf_counter()
            exit_code = run_training(command)
            if exit_code != 0 and os.path.isdir(os.path.dirname(record_path)) and not os.path.isfile(record_path):
                write_text_atomic(record_path, json.dumps({"training_commit": commit}, indent=2) + "\n")
            if exit_code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
                print(f"Stopped: {run_name(mode, seed)} saved its checkpoint (its message is above). Run "
                      "this command again to continue.", file=sys.stderr)
                return exit_code
            if exit_code != 0:
                print(f"error: {run_name(mode, seed)} failed (exit code {exit_code}); its message is "
                      f"above. Finished runs are kept in {config.log_dir}/: run this again to go on.",
                      file=sys.stderr)
                return 1
            record = {"command": "python " + shlex.join(command), "seconds": time.perf_counter() - started,
                      "resumed": resumed, "machine": machine_description(), "training_commit": commit,
                      "finished": datetime.datetime.now().isoformat(timespec="seconds")}
            write_text_atomic(record_path, json.dumps(record, indent=2) + "\n")
            runs = write_table()
    print(f"Wrote {parsed.out} ({len(runs)} of {len(parsed.modes) * len(parsed.seeds)} runs finished).")
    stale = stale_runs(runs)
    if stale:
        print(f"Stale: the training code has changed since {', '.join(stale)} trained (or it was not "
              "recorded); delete their logs/ and checkpoints/ folders and run this again to retrain them.")
    return 0


if __name__ == "__main__":
    sys.exit(scripts.run_main(main))
