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
    """The loss became NaN or infinite during training: ``value`` at ``epoch`` and ``step`` (counted from 1) with the
    learning rate ``lr``. ``note`` is what the caller adds to the message (where the last good checkpoint is)."""

    def __init__(self, value: float, epoch: int, step: int, lr: float, note: str = ""):
        self.value, self.epoch, self.step, self.lr, self.note = value, epoch, step, lr, note
        super().__init__(self.event + note)

    @property
    def event(self) -> str:
        """What happened and what to try, naming no file."""
        return (f"loss became {self.value} at epoch {self.epoch}, step {self.step}; try a lower learning rate than "
                f"{self.lr:g} or --clip-grad")

    def __reduce__(self):  # rebuilt from its fields (a torchrun process or a pickling test framework may copy it)
        return type(self), (self.value, self.epoch, self.step, self.lr, self.note)
