"""The errors a user can fix. Each message says what is wrong and what to do, so that a script
prints it as one `error:` line and exits 2 (utils/cli.py)."""


class UserError(Exception):
    """An input, a setting or a state the user must change."""


class DataError(UserError, ValueError):
    """An input file or folder is missing, damaged or not in the expected layout."""


class ModelError(UserError, ValueError):
    """A model path that cannot be evaluated."""


class DistributionError(UserError, ValueError):
    """A strategy that cannot start as configured, or a worker lost on the way."""


class TrainingError(UserError, RuntimeError):
    """A run that cannot start or continue."""
