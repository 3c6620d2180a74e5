"""utils/provenance.py: the commit of the training code, and which results it makes stale."""

import os
import subprocess

import pytest

from conftest import REPOSITORY
from utils import provenance


def git(folder, *arguments):
    subprocess.run(["git", "-C", str(folder), *arguments], check=True, capture_output=True)


def commit_all(folder, message):
    git(folder, "add", "-A")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return subprocess.run(["git", "-C", str(folder), "log", "-1", "--format=%h"], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_the_training_commit_moves_with_the_training_code_only(tmp_path):
    assert provenance.training_commit(str(tmp_path)) is None  # not a checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "step.py").write_text("a = 1\n")
    (tmp_path / "README.md").write_text("x\n")
    first = commit_all(tmp_path, "first")
    recorded = provenance.training_commit(str(tmp_path))
    assert recorded == {"commit": first, "uncommitted": False}
    # A change outside the training code keeps every result; one inside makes them stale.
    (tmp_path / "README.md").write_text("y\n")
    commit_all(tmp_path, "docs")
    assert provenance.training_commit(str(tmp_path)) == recorded
    assert not provenance.is_stale(recorded, provenance.training_commit(str(tmp_path)))
    (tmp_path / "model" / "step.py").write_text("a = 2\n")
    uncommitted = provenance.training_commit(str(tmp_path))
    assert uncommitted == {"commit": first, "uncommitted": True} and provenance.is_stale(recorded, uncommitted)
    second = commit_all(tmp_path, "maths")
    assert provenance.training_commit(str(tmp_path)) == {"commit": second, "uncommitted": False}
    assert provenance.is_stale(recorded, provenance.training_commit(str(tmp_path)))
    assert provenance.is_stale(None, recorded)  # a result without a record cannot be vouched for


def test_this_checkout_has_a_training_commit():
    if not os.path.exists(os.path.join(REPOSITORY, ".git")):
        pytest.skip("not a git checkout: the training commit is recorded only in one")
    current = provenance.training_commit()
    assert current is not None and len(current["commit"]) >= 7
