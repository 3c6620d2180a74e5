"""The results table: the runs it needs, one record per finished run, and docs/results.md written from
the records.

A record (docs/results/<run>.json, committed with the table) holds a finished
run's final accuracies and what produced them: its command, precision,
training commit (utils/provenance.py), machine, date and wall time. The
table is rebuilt from the records alone, so it can be built over several
sittings and machines; a record whose training code has changed since is
marked stale.
"""

import dataclasses
import json
import os
import statistics

from utils import provenance

# MNIST -> MNIST-M accuracy in Ganin & Lempitsky (2015), table 2 (JMLR 2016, table 2).
PAPER_MNISTM_ACCURACY = {"source_only": 0.5225, "dann": 0.7666, "target_only": 0.9596}
MODE_TITLES = {"source_only": "source only", "dann": "DANN", "target_only": "train on target"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the summary: a preset and mode over seeds 0 .. seeds - 1."""

    preset: str
    mode: str
    seeds: int

    @property
    def title(self):
        return f"{MODE_TITLES[self.mode]}, `{self.preset}`"

    def run_names(self):
        return [run_name(self.preset, self.mode, seed) for seed in range(self.seeds)]


# Lower bound, method, upper bound (the order of the paper's table), then the preset past the paper.
ROWS = (Row("paper", "source_only", 3), Row("paper", "dann", 6), Row("paper", "target_only", 3),
        Row("long", "dann", 3))


def run_name(preset, mode, seed):
    return f"results-{preset}-{mode}-seed{seed}"


def read_records(folder):
    """{run name: record} of the records in `folder` (none when it does not exist)."""
    records = {}
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
        if name.endswith(".json"):
            with open(os.path.join(folder, name), encoding="utf-8") as stream:
                records[name[:-len(".json")]] = json.load(stream)
    return records


def mean_and_spread(values):
    """'mean ± sample standard deviation' of accuracies; '-' when there are none."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def short_machine(machine):
    """'AMD EPYC 7B13, 2 cores, avx2': what a row's speed and precision depend on."""
    return f"{machine['cpu']}, {machine['cores']} cores, {' '.join(machine['flags']) or 'no AVX2'}"


def training_code(record, current):
    """The cell of a run's training commit, and whether that code has changed since."""
    recorded = record.get("training_commit")
    text = "not recorded" if recorded is None else f"`{recorded['commit']}`" + (
        " with uncommitted changes" if recorded["uncommitted"] else "")
    return text + (", **stale**" if provenance.is_stale(recorded, current) else "")


def stale_runs(records, current):
    """The names of the runs whose training code is not `current`."""
    return [name for name, record in sorted(records.items())
            if provenance.is_stale(record.get("training_commit"), current)]


def _joined(values):
    return ", ".join(sorted(set(values))) or "-"


def summary_lines(records, current):
    """The summary table: one line per row of ROWS, beside the paper."""
    lines = ["| method, preset | MNIST-M test | paper | MNIST test | seeds | precision | training code |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in ROWS:
        done = [records[name] for name in row.run_names() if name in records]
        seeds = [str(record["seed"]) for record in done]
        lines.append(f"| {row.title} | {mean_and_spread([record['final']['val/target_acc'] for record in done])} "
                     f"| {PAPER_MNISTM_ACCURACY[row.mode]:.4f} "
                     f"| {mean_and_spread([record['final']['val/source_acc'] for record in done])} "
                     f"| {', '.join(seeds) or 'none'} ({len(done)} of {row.seeds}) | {_joined(r['precision'] for r in done)} "
                     f"| {_joined(training_code(r, current) for r in done)} |")
    return lines


def run_lines(records, current):
    """The table of every run: accuracies, and what produced them."""
    lines = ["| run | MNIST-M test | MNIST test | steps | precision | training code | finished | wall time "
             "| machine |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in ROWS:
        for name in row.run_names():
            if name in records:
                record = records[name]
                lines.append(f"| {name} | {record['final']['val/target_acc']:.4f} "
                             f"| {record['final']['val/source_acc']:.4f} | {record['final']['steps']} "
                             f"| {record['precision']} | {training_code(record, current)} "
                             f"| {record['finished'][:10]} | {record['seconds'] / 60:.1f} min "
                             f"| {short_machine(record['machine'])} |")
    return lines


def results_page(records, current, commands, invocation, today):
    """docs/results.md. commands: {run name: its train.py command}; invocation: what rebuilds the page."""
    missing = [name for row in ROWS for name in row.run_names() if name not in records]
    lines = ["# Results: MNIST -> MNIST-M", "",
             "Final-step test accuracy, mean ± sample standard deviation over the seeds listed: no "
             "checkpoint is selected with target labels. Paper: Ganin & Lempitsky (2015), table 2 "
             "(MNIST -> MNIST-M); the `long` preset is compared with the paper's DANN.", "",
             *summary_lines(records, current), "",
             "## Runs", "",
             "Training code: the last commit that changed what a run trains and evaluates with "
             "(utils/provenance.py); **stale** when that code has changed since. Wall time: the whole "
             "train.py process, evaluations included, summed over the parts of a resumed run.", "",
             *run_lines(records, current), "",
             "Commands (each row's record in `docs/results/` holds the machine's details):", ""]
    lines += [f"- {name}: `{records[name]['command']}`" for row in ROWS for name in row.run_names()
              if name in records]
    if missing:
        lines += ["", "Not run yet:", "", *(f"- `{commands[name]}`" for name in missing)]
    lines += ["", f"Written by `{invocation}` on {today}."]
    return "\n".join(lines) + "\n"
