"""The errors a user can fix. The entry points print each as one ``error:`` line and exit
with code 2; anything else is a bug and keeps its traceback."""


class UserError(Exception):
    """Wrong input (config, data, checkpoint, zoo manifest, run directory); the message says
    what was wrong, where, and what was expected."""


class ConfigError(UserError, ValueError):
    """A config key or value is wrong."""


class DataError(UserError, ValueError):
    """A dataset file is missing, malformed or unreadable."""


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be loaded safely or does not fit the model."""


class RunDirError(UserError):
    """The run directory is locked, exists already, or was not made by this project."""


class TrainingDiverged(UserError):
    """The loss became non-finite; training stopped before the weights were written."""


class Interrupted(UserError):
    """Ctrl-C: the run stopped; the message says where its last checkpoint is."""


class MissingPackage(UserError):
    """An optional package (a setup.py extra) that the config asks for is not installed."""


class OutputExists(UserError):
    """An output file exists already and was not to be replaced."""
