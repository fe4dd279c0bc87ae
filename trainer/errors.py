"""Errors raised by the trainer. Each names the key, field or step at fault."""

from input_pipeline import errors as input_errors


class TrainerError(Exception):
  """Base class of the trainer's errors."""


class ConfigError(TrainerError, input_errors.ConfigError):
  """A config key is unknown or a value is invalid."""


class BatchSizeError(TrainerError, input_errors.BatchSizeError):
  """A global batch cannot be split evenly over the data-parallel devices."""


class CheckpointMismatchError(TrainerError, ValueError):
  """The workdir holds a checkpoint of another model shape or vocabulary."""


class CheckpointNotFoundError(TrainerError, FileNotFoundError):
  """No (complete) checkpoint where one is needed."""


class CheckpointSaveError(TrainerError, RuntimeError):
  """Writing a checkpoint failed (earlier checkpoints are intact)."""


class NonFiniteLossError(TrainerError, FloatingPointError):
  """The training loss became NaN or infinite."""


class WorkdirError(TrainerError, OSError):
  """The workdir is in use by another run, is not a directory, or cannot be
  written."""


class CheckpointCorruptError(TrainerError, ValueError):
  """A checkpoint fails its integrity checks (named with the step)."""


def first_line(error: object, limit: int = 500) -> str:
  """The first line of ``str(error)``, at most ``limit`` characters ('' for
  an empty message): the part of an exception a one-line error quotes."""
  lines = str(error or '').strip().splitlines()
  return lines[0][:limit] if lines else ''
