"""The errors aekit raises on purpose.

Every problem with the user's input (a file, an option, a run directory) is raised as one of these, with a
one-line message that names the bad thing. The CLI prints that line and exits with code 2; Python callers can
catch :class:`AekitError`. Each subclasses ``ValueError`` so generic code that expects one still works.
"""


class AekitError(ValueError):
    """Base class of every error aekit raises about its input."""


class DataError(AekitError):
    """A dataset or data file is missing, corrupt, or has the wrong shape or values."""


class ConfigError(AekitError):
    """A configuration value or a config file is invalid."""


class CheckpointError(AekitError):
    """A run directory or checkpoint is missing, corrupt, unsafe, or does not match its config."""


class TrainingDiverged(AekitError):
    """The loss became NaN or infinite during training."""
