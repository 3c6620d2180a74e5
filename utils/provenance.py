"""What produced a result: the commit of the training code (the last commit that changed any file a
run's numbers depend on) and the machine. A result whose training code has changed since is stale."""

import importlib.metadata
import os
import platform
import subprocess

from utils.runtime.cpu import read_cpuinfo

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a run trains and evaluates with: the networks and step, the data, the loop, the runtime
# (devices, precision), the metrics of its evaluations, the settings and the script.
TRAINING_CODE = ("model", "utils/data", "utils/training", "utils/runtime", "utils/evaluation", "config.py",
                 "train.py")

# The CPU flags a run's speed and its precision under `auto` depend on (utils/runtime/precision.py).
FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _git(repository, *arguments):
    return subprocess.run(["git", "-C", repository, *arguments], capture_output=True, text=True,
                          check=True).stdout.strip()


def training_commit(repository=REPOSITORY, paths=TRAINING_CODE):
    """{"commit": short hash of the last commit that changed `paths`, "uncommitted": whether they
    differ from it in the work tree}; None outside a git checkout or without git."""
    try:
        commit = _git(repository, "log", "-1", "--format=%h", "--", *paths)
        changed = _git(repository, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit or None, "uncommitted": bool(changed)} if commit else None


def is_stale(recorded, current):
    """Whether a result recorded at training commit `recorded` (training_commit's dict, or None for
    a result that predates the recording) no longer matches the training code of `current`."""
    return (recorded is None or current is None or recorded["uncommitted"] or current["uncommitted"]
            or recorded["commit"] != current["commit"])


def machine():
    """{"cpu" (model and AMD/Intel family), "cores", "flags" (those of FLAGS_THAT_MATTER it has),
    "python", "tensorflow", "system"}."""
    cpu = read_cpuinfo()
    try:
        tensorflow_version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tensorflow_version = "not installed"
    family = f", family {cpu['family']}" if cpu["family"] is not None else ""
    return {"cpu": cpu["model"] + family, "cores": cpu["logical_cpus"],
            "flags": [flag for flag in FLAGS_THAT_MATTER if flag in cpu["flags"]],
            "python": platform.python_version(), "tensorflow": tensorflow_version, "system": platform.system()}
