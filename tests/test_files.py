"""utils/files.py: atomic writes replace a regular file or create one, refuse anything else, and leave
no temporary file or folder of their own behind when they fail."""

import os
import re
import socket
import stat

import pytest

from conftest import make_null_device

from utils.files import atomic_path, check_writable, write_text_atomic


def make_fifo(path):
    os.mkfifo(path)


def make_socket(path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()


def make_symlink_to_a_file(path):
    (path.parent / "target.txt").write_text("the link's target\n")
    os.symlink(path.parent / "target.txt", path)


def make_dangling_symlink(path):
    os.symlink(path.parent / "nowhere.txt", path)


def make_folder(path):
    path.mkdir()


def snapshot(path):
    """What stands at `path`, compared after a refused write: its lstat kind, device number and link target."""
    status = os.lstat(path)
    link = os.readlink(path) if os.path.islink(path) else None
    return stat.S_IFMT(status.st_mode), status.st_rdev, status.st_ino, link


@pytest.mark.parametrize("make, kind", [
    (make_fifo, "a named pipe (FIFO)"),
    (make_null_device, "a character device"),
    (make_socket, "a socket"),
    (make_symlink_to_a_file, "a symbolic link"),
    (make_dangling_symlink, "a symbolic link"),
    (make_folder, "a folder"),
])
def test_a_write_refuses_to_replace_what_is_not_a_regular_file(tmp_path, make, kind):
    path = tmp_path / "out.json"
    make(path)
    before = snapshot(path)
    for write in (check_writable, lambda target: write_text_atomic(target, "{}\n")):
        with pytest.raises(OSError, match=re.escape(f"'{path}' is {kind}, not a regular file")
                           + ".*(Choose another output path|Give a file path)"):
            write(str(path))
    assert snapshot(path) == before
    if kind == "a symbolic link" and os.path.exists(path):
        assert (tmp_path / "target.txt").read_text() == "the link's target\n"
    # No temporary file is left beside it.
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith(".")) == []


def test_something_that_appears_during_the_write_is_not_replaced(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(FileExistsError, match="is a named pipe"):
        with atomic_path(str(path)) as temporary:
            with open(temporary, "w", encoding="utf-8") as stream:
                stream.write("{}\n")
            os.mkfifo(path)
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert os.listdir(tmp_path) == ["out.json"]


def test_a_regular_file_is_replaced_and_a_new_one_created_with_its_folders(tmp_path):
    existing = tmp_path / "existing.json"
    existing.write_text("old\n")
    write_text_atomic(str(existing), "new\n")
    assert existing.read_text() == "new\n"
    fresh = tmp_path / "a" / "b" / "fresh.json"
    check_writable(str(fresh))
    write_text_atomic(str(fresh), "made\n")
    assert fresh.read_text() == "made\n"


def test_the_check_creates_no_folder(tmp_path):
    path = tmp_path / "results" / "run" / "evaluation.json"
    check_writable(str(path))
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        check_writable(str(tmp_path / "file" / "run" / "evaluation.json"))


def test_a_failed_write_removes_the_folders_it_created_and_keeps_the_others(tmp_path):
    (tmp_path / "results").mkdir()
    path = tmp_path / "results" / "run" / "deeper" / "evaluation.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(path)):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["results"] and os.listdir(tmp_path / "results") == []
    # Two writes into one new folder, the second interrupted: the folder goes with both.
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(path)), atomic_path(str(path.with_suffix(".png"))):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / "results") == []
