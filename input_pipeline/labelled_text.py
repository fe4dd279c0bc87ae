"""Labelled sentences: ``LABEL TEXT`` files and TFDS ``ClassLabel`` datasets.

* ``'labelled_text'`` (:class:`LabelledTextSource`): one example per line,
  ``LABEL TEXT`` (the label, one space or tab, the text), e.g. SST-2's
  ``stsa.binary.{train,dev}``. Empty lines are skipped and counted; a line
  without text or with an empty label is an error naming file and line. The
  label vocabulary is the sorted set of the train split's labels
  (:func:`sorted_label_names`: numerically sorted when all are integers).
* ``'tfds'`` (:class:`TfdsLabelledSource`): a TFDS dataset with a text feature
  and a ``ClassLabel`` feature (``'glue/sst2'``: ``sentence`` / ``label``;
  ``'imdb_reviews'``: ``text`` / ``label``); the label names are the
  ``ClassLabel``'s. A label of -1 (the unlabelled test split of GLUE) is an
  error. Blank texts are skipped and counted.

Each source reads a split into a :class:`RawSplit` (texts, labels, where
each comes from) and fingerprints it cheaply for the cache.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from input_pipeline import errors, text_corpora, text_lines, tfds_data

SOURCES = ('labelled_text', 'tfds')
# Label, one space or tab, text. The label may be empty (an error).
_LABELLED_LINE = re.compile(r'([^ \t]*)[ \t](.*)', re.DOTALL)


def make_source(cfg: Mapping[str, Any]
                ) -> LabelledTextSource | TfdsLabelledSource:
  """The source a resolved classification data config names."""
  if cfg['source'] == 'labelled_text':
    return LabelledTextSource(cfg)
  if cfg['source'] == 'tfds':
    return TfdsLabelledSource(cfg)
  raise errors.ConfigError(
      f"source={cfg['source']!r} is unknown; use one of {list(SOURCES)}.")


@dataclasses.dataclass
class RawSplit:
  """A split as read: texts, label ids or strings, where each comes from."""

  texts: list[str]
  labels: list[str] | np.ndarray
  source_index: np.ndarray
  num_skipped: int
  where: Callable[[int], str]  # Position -> 'file, line N' for messages.


class LabelledTextSource:
  """``LABEL TEXT`` files in ``data_dir``."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.split_files = text_corpora.TextFilesCorpus(
        cfg['data_dir'], cfg['files'], cfg['encoding_errors'],
        source='labelled_text')
    self.encoding_errors = cfg['encoding_errors']

  @property
  def splits(self) -> tuple[str, ...]:
    return self.split_files.splits

  def path(self, split: str) -> Path:
    return self.split_files.path(split)

  def fingerprint(self, split: str) -> str:
    return text_lines.fingerprint_of(
        'labelled_text', text_lines.file_fingerprint(self.path(split)),
        self.encoding_errors)

  def label_names(self) -> list[str] | None:
    return None  # From the train split's labels.

  def read(self, split: str) -> RawSplit:
    path = self.path(split)
    labels, texts, numbers = [], [], []
    skipped = 0
    for number, line in enumerate(
        text_lines.read_text_file(path, self.encoding_errors), 1):
      line = line.rstrip('\r')
      if not line.strip():
        skipped += 1
        continue
      match = _LABELLED_LINE.fullmatch(line)
      if match is None:
        raise errors.MalformedLineError(
            f'{path}, line {number}: {_clip(line)!r} has no space after the '
            'label and no text; every line must be LABEL, a space, then the '
            'text. Fix or remove the line.')
      label, text = match.groups()
      if not label:
        raise errors.MalformedLineError(
            f'{path}, line {number}: {_clip(line)!r} has an empty label (the '
            'line starts with a space or tab); every line must be LABEL, a '
            'space, then the text. Fix or remove the line.')
      if not text.strip():
        raise errors.MalformedLineError(
            f'{path}, line {number}: label {label!r} has no text after it; '
            'every line must be LABEL, a space, then the text. Fix or remove '
            'the line.')
      labels.append(label)
      texts.append(text)
      numbers.append(number)
    if not texts:
      raise errors.EmptyDataError(
          f'{path} has no examples (only empty lines). Put LABEL TEXT lines '
          'in it, or point the data config files at another file.')
    return RawSplit(texts, labels, np.asarray(numbers, np.int64), skipped,
                    lambda number: f'{path}, line {number}')


class TfdsLabelledSource:
  """A TFDS dataset with a text feature and a ``ClassLabel`` feature."""

  def __init__(self, cfg: Mapping[str, Any]):
    if not cfg['tfds_name']:
      raise errors.ConfigError(
          "source='tfds' needs tfds_name (e.g. 'glue/sst2', "
          "'imdb_reviews').")
    self.name = cfg['tfds_name']
    self.data_dir = cfg['tfds_data_dir'] or cfg['data_dir'] or None
    self.split_map = {k: v for k, v in cfg['tfds_splits'].items() if v}
    self.text_key, self.label_key = cfg['text_key'], cfg['label_key']
    self.encoding_errors = cfg['encoding_errors']
    self.builder = tfds_data.tfds_builder(self.name, self.data_dir)
    features = self.builder.info.features
    available = list(features.keys())
    for key, config_key in ((self.text_key, 'text_key'),
                            (self.label_key, 'label_key')):
      if key not in available:
        raise errors.TfdsError(
            f'TFDS dataset {self.name!r} has no feature {key!r} (data config '
            f'{config_key}); its features are {available}.')
    label = features[self.label_key]
    names = getattr(label, 'names', None)
    if not names:
      raise errors.TfdsError(
          f'TFDS dataset {self.name!r} feature {self.label_key!r} (data '
          f'config label_key) is {label!r}, not a ClassLabel with names; '
          'set label_key to a ClassLabel feature.')
    self.names = [str(n) for n in names]

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.split_map)

  def fingerprint(self, split: str) -> str:
    return text_lines.fingerprint_of(
        'tfds_classification', self.name, str(self.builder.version),
        self.split_map[split], self.text_key, self.label_key,
        str(self.builder.data_dir), self.encoding_errors)

  def label_names(self) -> list[str] | None:
    return self.names

  def read(self, split: str) -> RawSplit:
    tfds = tfds_data.import_tfds()
    tfds_split = self.split_map[split]
    dataset = tfds_data.tfds_read(self.builder, tfds_split, self.data_dir)
    where = lambda i: (f'TFDS {self.name!r} split {tfds_split!r}, example '
                       f'{i}')
    texts, labels, positions = [], [], []
    skipped = 0
    for i, example in enumerate(tfds.as_numpy(dataset)):
      label = int(example[self.label_key])
      if label == -1:
        raise errors.UnknownLabelError(
            f'{where(i)}: label -1, i.e. split {tfds_split!r} is unlabelled '
            f'(GLUE test splits have no public labels). Remove {split!r} from '
            'the data config tfds_splits, or map it to a labelled split.')
      if not 0 <= label < len(self.names):
        raise errors.UnknownLabelError(
            f'{where(i)}: label {label} is not in [0, {len(self.names)}) '
            f'(labels {self.names}).')
      text = text_lines.decode_utf8(example[self.text_key],
                                    f'{where(i)}, feature {self.text_key!r}',
                                    self.encoding_errors)
      if not text.strip():
        skipped += 1
        continue
      texts.append(text)
      labels.append(label)
      positions.append(i)
    if not texts:
      raise errors.EmptyDataError(
          f'TFDS {self.name!r} split {tfds_split!r} has no text.')
    return RawSplit(texts, np.asarray(labels, np.int32),
                    np.asarray(positions, np.int64), skipped, where)


def _clip(line: str, limit: int = 60) -> str:
  return line if len(line) <= limit else line[:limit] + '...'


def sorted_label_names(labels: Sequence[str]) -> list[str]:
  """The sorted set of ``labels``, numerically if all are integers."""
  names = set(labels)
  try:
    return sorted(names, key=lambda name: (int(name), name))
  except ValueError:
    return sorted(names)
