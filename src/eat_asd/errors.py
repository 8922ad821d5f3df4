"""Every error the package raises on purpose, in one light module (no numpy, no torch).

The CLI catches `EatAsdError` and prints its message as one line: each message names the file,
folder or setting at fault. Each class keeps the built-in base it had, so callers that catch
ValueError or RuntimeError still do.
"""


class EatAsdError(Exception):
    """Base of the errors a user can act on; anything else is a bug and keeps its traceback."""


class ConfigError(EatAsdError, ValueError):
    """A configuration that does not fit the schema; the message names the key."""


class DataError(EatAsdError, ValueError):
    """Data that cannot be used; the message names the files or folders at fault."""


class AudioError(EatAsdError, ValueError):
    """A wav file that cannot be used; the message names the file."""


class CheckpointError(EatAsdError, RuntimeError):
    """A checkpoint that cannot be loaded; the message names the source and the keys at fault."""


class StaleFeaturesError(EatAsdError, RuntimeError):
    """A feature file that was computed from other clips or other settings."""


class DamagedFileError(EatAsdError, ValueError):
    """An intermediate file of a run (feature file, embeddings) that cannot be read: truncated or corrupt.
    It is removed when found, so that the next run computes it again; the message names it."""


class TrainingError(EatAsdError, RuntimeError):
    """Training cannot start or go on; the message says which setting or data is at fault."""


class PublishError(EatAsdError, ValueError):
    """A folder or repo id that cannot be published to the Hub; the message names the file or setting."""


class LockError(EatAsdError, RuntimeError):
    """A results folder that another run is writing to."""
