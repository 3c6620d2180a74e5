"""Which commit of the training code produced a result: the last commit that changed any file a
run's numbers depend on. A result whose training code has changed since is stale."""

import os
import subprocess

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a run trains and evaluates with: the networks and step, the data, the loop, the runtime
# (devices, precision), the metrics of its evaluations, the settings and the script.
TRAINING_CODE = ("model", "utils/data", "utils/training", "utils/runtime", "utils/evaluation", "config.py",
                 "train.py")


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
