"""Errors raised by the input pipeline.

Every error names the path, config key or value at fault and says what to do.
They subclass the builtin exception a caller would naturally catch
(``FileNotFoundError``, ``ValueError``), so generic handlers keep working.
"""


class InputPipelineError(Exception):
  """Base class of all input pipeline errors."""


class DataFileNotFoundError(InputPipelineError, FileNotFoundError):
  """A data directory or split file that the config names does not exist."""


class EmptyDataError(InputPipelineError, ValueError):
  """A split file or dataset split contains no text."""


class NotUtf8Error(InputPipelineError, UnicodeError):
  """A text file contains bytes that are not valid UTF-8."""


class ConfigError(InputPipelineError, ValueError):
  """A config value is missing, unknown or inconsistent."""


class TfdsError(InputPipelineError, ValueError):
  """A TFDS dataset name, split or feature key is unknown."""


class TfdsNotPreparedError(InputPipelineError, FileNotFoundError):
  """A TFDS dataset is not prepared in ``data_dir`` and cannot be downloaded."""


class TokenizerNotFoundError(InputPipelineError, FileNotFoundError):
  """A tokenizer model path that the config names does not exist."""


class VocabularyMismatchError(InputPipelineError, ValueError):
  """The tokenizer for this run differs from the one saved in the workdir."""


class BatchSizeError(InputPipelineError, ValueError):
  """A batch size cannot be split evenly across processes or devices."""


class MalformedLineError(InputPipelineError, ValueError):
  """A line of a labelled text file is not ``LABEL TEXT``."""


class UnknownLabelError(InputPipelineError, ValueError):
  """An example's label is not one of the run's labels (or is missing)."""


class LabelMismatchError(InputPipelineError, ValueError):
  """The labels for this run differ from the ones saved in the workdir."""


class CacheWriteError(InputPipelineError, OSError):
  """Writing the data cache failed (e.g. the disk is full)."""


class WaitTimeoutError(InputPipelineError, TimeoutError):
  """Another process did not write the tokenizer or a shard in time."""
