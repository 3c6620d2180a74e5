"""A run's folders: held by one process at a time, and resumed only with the settings it began with."""

import contextlib
import fcntl
import json
import os

from config import RENAMED_FIELDS
from utils.errors import TrainingError


@contextlib.contextmanager
def hold_run_folder(folder):
    """Inside it, this process alone holds `folder` (a run's checkpoint folder), which it creates.

    An exclusive flock on the folder itself: the kernel lets it go when the
    process ends, however it ends, so no stale lock is ever left. A folder
    this call created is removed again if the run leaves it empty.
    """
    created = not os.path.exists(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise TrainingError(f"Cannot use '{folder}' as the run's checkpoint folder: {error.strerror}. "
                            "Choose another --checkpoint_dir or --run_name.") from error
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise TrainingError(f"Another process is training this run now: it holds '{folder}'. Wait "
                                "for it to end, or choose another --run_name.") from error
        yield
    finally:
        os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # Only when empty.


def check_saved_settings(config, checkpoint_dir, log_dir):
    """Refuses to resume with settings that differ from those the checkpoint was trained with.

    The copy of config.json beside the checkpoints is the one that travels
    with the weights; the copy beside the logs is checked too, when it is
    there. A checkpoint with neither cannot be checked.
    """
    saved = [path for path in (os.path.join(checkpoint_dir, "config.json"),
                               os.path.join(log_dir, "config.json")) if os.path.isfile(path)]
    if not saved:
        raise TrainingError(f"--resume: the checkpoint in '{checkpoint_dir}' has no config.json "
                            "beside it, so its settings cannot be checked. Start a new run instead.")
    # Compared as JSON, where the class names are a list as in the saved file. The reason
    # for the precision is a record, not a setting: the precision itself is compared.
    current = json.loads(config.to_json())
    current.pop("precision_reason")
    for path in saved:
        try:
            with open(path, encoding="utf-8") as stream:
                settings = {RENAMED_FIELDS.get(key, key): value for key, value in json.load(stream).items()}
        except (OSError, ValueError, AttributeError) as error:
            raise TrainingError(f"--resume: cannot read '{path}' ({error}).") from error
        changed = sorted(key for key, value in current.items() if key in settings and settings[key] != value)
        if changed:
            raise TrainingError(f"--resume: these settings differ from the saved run: "
                                f"{', '.join(changed)} ('{path}'). Resume with the run's own settings.")
