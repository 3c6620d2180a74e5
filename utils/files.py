"""Atomic file writes: a file is either complete or absent, never half-written."""

import contextlib
import os
import tempfile


def _create_temporary_beside(path):
    """Creates an empty temporary file in the folder of `path` and returns its name.

    The folder is created if needed. Raises OSError with a message that says
    what to do when the folder cannot be written.
    """
    folder = os.path.dirname(os.path.abspath(path))
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
        raise OSError(f"Cannot write to folder '{folder}': {error.strerror}. "
                      "Choose an output path in a folder you can write to.") from error
    return temporary


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    The temporary file lives in the same folder so that the final rename is
    atomic on the same file system. If the body raises (including
    KeyboardInterrupt), the temporary file is removed and `path` is untouched,
    so an interrupted run never leaves a file that looks finished.
    """
    temporary = _create_temporary_beside(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def check_writable(path):
    """Raises OSError now if atomic_path(path) would fail later.

    Long jobs call this before their work, so that a bad output path is
    reported in a second rather than after minutes of computation.
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"Output path '{path}' is a folder. Give a file path inside it instead.")
    os.remove(_create_temporary_beside(path))


def write_text_atomic(path, text):
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
