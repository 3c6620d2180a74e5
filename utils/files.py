"""Atomic writes: a file, or a new folder, is either complete or absent, never half-written.

A write goes to a temporary file beside the target, renamed over it at the
end; the rename replaces whatever stands at the target. So only a regular
file, or nothing, may stand there: a device (such as /dev/null), a named
pipe, a socket, a folder or a symbolic link is refused with an OSError that
names it, rather than replaced by a regular file. A symbolic link is refused
even when it points at a regular file, since the rename would replace the
link and leave its target as it was.
"""

import contextlib
import os
import shutil
import stat
import tempfile

# What stands at a path, for the refusal's message, by the test of its st_mode.
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def _refuse_unless_regular_or_absent(path):
    """Raises OSError naming what stands at `path` unless it is a regular file or nothing."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"Output path '{path}' is a folder, not a regular file. "
                                "Give a file path inside it instead.")
    kind = next((name for is_kind, name in _KINDS if is_kind(mode)), "something else")
    raise FileExistsError(f"Output path '{path}' is {kind}, not a regular file: writing would replace "
                          "it. Choose another output path.")


def _missing_folders(folder):
    """The ancestors of the absolute `folder` (itself included) that do not exist, deepest first."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def _remove_empty_folders(folders):
    """Removes each of `folders` (deepest first) that is still empty; keeps any that is not."""
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _cannot_write(folder, error):
    return OSError(f"Cannot write to folder '{folder}': {error.strerror}. "
                   "Choose an output path in a folder you can write to.")


def _create_temporary_beside(path):
    """Creates an empty temporary file in the folder of `path`; returns its name and the folders made.

    The folder is created if needed; the second value lists the folders this
    call created, deepest first. Raises OSError with a message that says what
    to do when the folder cannot be written.
    """
    folder = os.path.dirname(os.path.abspath(path))
    created = _missing_folders(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        _, suffix = os.path.splitext(path)
        handle, temporary = tempfile.mkstemp(
            dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix)
        os.close(handle)
        # mkstemp makes the file private (0600); give the finished file the
        # permissions any other new file would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
    except OSError as error:
        _remove_empty_folders(created)
        raise _cannot_write(folder, error) from error
    return temporary, created


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    The temporary file lives in the same folder so that the final rename is
    atomic on the same file system. If the body raises (including
    KeyboardInterrupt), the temporary file and the folders created for it
    are removed and `path` is untouched, so an interrupted run never leaves
    a file that looks finished. Raises OSError, before the body runs and again
    before the rename, when something other than a regular file stands at
    `path` (see the module docstring).
    """
    _refuse_unless_regular_or_absent(path)
    temporary, created = _create_temporary_beside(path)
    try:
        yield temporary
        # Checked again: the body may have run for minutes.
        _refuse_unless_regular_or_absent(path)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        _remove_empty_folders(created)
        raise


@contextlib.contextmanager
def atomic_new_folder(folder, error=FileExistsError):
    """Yields a temporary folder beside `folder`; renames it to `folder` on success, and removes it
    if the body raises, so an interruption leaves no half-written tree. Refuses, with `error` (an
    exception class), a `folder` that already exists."""
    if os.path.exists(folder):
        raise error(f"'{folder}' already exists: choose a new folder, or delete it first.")
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(folder) + ".", suffix=".partial")
    try:
        yield temporary
        os.rename(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def check_writable(path):
    """Raises OSError now if atomic_path(path) would fail later; creates nothing.

    Long jobs call this before their work, so that a bad output path is
    reported in a second rather than after minutes of computation. A folder
    that does not exist yet is not created: the nearest existing one must be
    a folder that this process may write into.
    """
    _refuse_unless_regular_or_absent(path)
    folder = os.path.dirname(os.path.abspath(path))
    missing = _missing_folders(folder)
    if not missing:
        temporary, _ = _create_temporary_beside(path)
        os.remove(temporary)
        return
    existing = os.path.dirname(missing[-1])
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"Cannot write to folder '{folder}': '{existing}' is not a folder. "
                                 "Choose an output path in a folder you can write to.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot write to folder '{folder}': '{existing}' is not writable. "
                              "Choose an output path in a folder you can write to.")


def write_text_atomic(path, text):
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
