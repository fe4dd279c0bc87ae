"""Language-model corpora: where the raw lines of each split come from.

A corpus hands out the lines of a split (``read_lines`` or, streamed,
``shards``) and a cheap fingerprint of them (``fingerprint``) that keys the
tokenised-data cache and the saved tokenizer, so changed data is noticed
without re-reading it.

* :class:`EmbeddedCorpus`: the Python language reference topics shipped with
  the standard library (``pydoc_data.topics``, ~465 KB of English), split
  deterministically 90 / 5 / 5 % by line into train / valid / test. Present
  wherever Python is, no download, no data file in the repository.
* :class:`TextFilesCorpus`: a directory of split files in the PTB / WikiText
  layout, one sentence or paragraph per line.
* :class:`input_pipeline.tfds_data.TfdsTextCorpus`: a TFDS text dataset.
"""

from __future__ import annotations

import abc
import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from input_pipeline import errors, text_lines

SPLITS = ('train', 'valid', 'test')

# Fractions of the embedded corpus lines in train / valid; test gets the rest.
EMBEDDED_TRAIN_FRACTION = 0.90
EMBEDDED_VALID_FRACTION = 0.05


class TextCorpus(abc.ABC):
  """Raw text lines of named splits."""

  @property
  @abc.abstractmethod
  def splits(self) -> tuple[str, ...]:
    """The splits this corpus can read."""

  @abc.abstractmethod
  def read_lines(self, split: str) -> list[str]:
    """All lines of ``split``, in order."""

  @abc.abstractmethod
  def fingerprint(self, split: str) -> str:
    """A cheap hex digest that changes when the text of ``split`` changes."""

  def shards(self, split: str, max_lines: int | None = None,
             shard_mb: float = 0) -> 'text_lines.LineShards':
    """The lines of ``split`` (the first ``max_lines``) in shards, read in
    chunks. This default reads the split into memory as one shard (small
    corpora)."""
    del shard_mb
    return text_lines.ListShards(lambda: self.read_lines(split)[:max_lines])

  def _check_split(self, split: str) -> None:
    if split not in self.splits:
      raise errors.ConfigError(
          f'Split {split!r} is not available in {self!r}; available splits: '
          f'{list(self.splits)}. Remove it from eval_splits or configure a '
          'file / TFDS split for it.')


@functools.lru_cache(maxsize=1)
def _embedded_lines() -> tuple[str, ...]:
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top
  lines = []
  for key in sorted(topics.topics):
    for line in text_lines.split_text_lines(topics.topics[key]):
      line = line.rstrip()
      if line.strip():
        lines.append(line)
  return tuple(lines)


class EmbeddedCorpus(TextCorpus):
  """The Python language reference (``pydoc_data.topics``) as a corpus.

  Topics are taken in sorted key order, blank lines dropped and trailing
  whitespace stripped; the first 90 % of the lines are train, the next 5 %
  valid and the rest test. The split is fixed for a Python version (the
  topics text changes between Python releases; the fingerprint records it).
  """

  def __repr__(self) -> str:
    return 'EmbeddedCorpus(pydoc_data.topics)'

  @property
  def splits(self) -> tuple[str, ...]:
    return SPLITS

  def _bounds(self) -> dict[str, tuple[int, int]]:
    n = len(_embedded_lines())
    train_end = int(n * EMBEDDED_TRAIN_FRACTION)
    valid_end = train_end + int(n * EMBEDDED_VALID_FRACTION)
    return {'train': (0, train_end), 'valid': (train_end, valid_end),
            'test': (valid_end, n)}

  def read_lines(self, split: str) -> list[str]:
    self._check_split(split)
    start, end = self._bounds()[split]
    return list(_embedded_lines()[start:end])

  def fingerprint(self, split: str) -> str:
    self._check_split(split)
    return text_lines.fingerprint_of(
        'embedded', split, sys.version.split()[0],
        *_embedded_lines()[slice(*self._bounds()[split])])


class TextFilesCorpus(TextCorpus):
  """Split files in a directory, PTB / WikiText layout.

  Args:
    data_dir: the directory.
    files: split name -> file name inside ``data_dir`` (``''`` or absent: the
      split has no file, e.g. a held-out test set).
    encoding_errors: ``'strict'`` or ``'replace'``, see
      :func:`text_lines.decode_utf8`.
    source: the data config ``source`` these files serve, for messages.
  """

  def __init__(self, data_dir: str | os.PathLike[str],
               files: Mapping[str, str], encoding_errors: str = 'strict',
               source: str = 'text_files'):
    self.data_dir = Path(data_dir).expanduser()
    if not str(data_dir):
      raise errors.ConfigError(
          f'source={source!r} needs data_dir: set the data config data_dir '
          f'to the directory holding the split files ({dict(files)}).')
    if not self.data_dir.is_dir():
      raise errors.DataFileNotFoundError(
          f'Data directory {self.data_dir} (data config data_dir) does not '
          'exist. Point data_dir at the directory with the split files '
          f'({dict(files)}).')
    self.files = {split: name for split, name in files.items() if name}
    self.encoding_errors = encoding_errors

  def __repr__(self) -> str:
    return f'TextFilesCorpus({self.data_dir}, {self.files})'

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.files)

  def path(self, split: str) -> Path:
    self._check_split(split)
    path = self.data_dir / self.files[split]
    if not path.is_file():
      present = sorted(p.name for p in self.data_dir.iterdir())
      raise errors.DataFileNotFoundError(
          f'Split file {path} for split {split!r} does not exist (files in '
          f'{self.data_dir}: {present}). Set the data config '
          f'files.{split} to the right file name, or to \'\' if there is no '
          f'{split!r} split.')
    return path

  def read_lines(self, split: str) -> list[str]:
    return text_lines.read_text_file(self.path(split), self.encoding_errors)

  def shards(self, split: str, max_lines: int | None = None,
             shard_mb: float = 0) -> 'text_lines.FileShards':
    """Contiguous byte ranges of the file, cut at line starts (no scan of
    the file, unless ``max_lines`` asks where its first lines end)."""
    path = self.path(split)
    end = text_lines.check_not_empty(path)
    if max_lines:
      end = text_lines.scan_lines(path, [max_lines])[1][0]
    return text_lines.FileShards(
        path, end, text_lines.auto_num_shards(end, shard_mb),
        self.encoding_errors)

  def fingerprint(self, split: str) -> str:
    return text_lines.fingerprint_of(
        'text_files', text_lines.file_fingerprint(self.path(split)),
        self.encoding_errors)
