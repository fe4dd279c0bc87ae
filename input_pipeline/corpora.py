"""Text sources: where the raw lines of each split come from.

A corpus hands out the lines of a split (``read_lines``) and a cheap
fingerprint of them (``fingerprint``) that keys the tokenised-data cache and
the saved tokenizer, so changed data is noticed without re-reading it.

Sources:

* :class:`EmbeddedCorpus`: the Python language reference topics shipped with
  the standard library (``pydoc_data.topics``, ~465 KB of English), split
  deterministically 90 / 5 / 5 % by line into train / valid / test. Present
  wherever Python is, no download, no data file in the repository.
* :class:`TextFilesCorpus`: a directory of split files in the PTB / WikiText
  layout, one sentence or paragraph per line.
* :class:`TfdsTextCorpus`: any TFDS text dataset by name, split and feature
  key (lm1b, tiny_shakespeare, pg19, ...), read offline from ``data_dir``.
* :func:`read_parallel_files` / :func:`read_tfds_translation`: sentence pairs
  for translation (Multi30k-layout files and TFDS translate datasets).

Lines never include their ``\\n``; an empty line is the empty string. Lines
are split on ``\\n`` only (not ``str.splitlines``, which also splits on
``\\x0b``, ``\\u2028``, ... and would change the line counts of WikiText).
"""

from __future__ import annotations

import abc
import functools
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from input_pipeline import errors, prefetch

SPLITS = ('train', 'valid', 'test')

# Fractions of the embedded corpus lines in train / valid; test gets the rest.
EMBEDDED_TRAIN_FRACTION = 0.90
EMBEDDED_VALID_FRACTION = 0.05


def fingerprint_of(*parts: str | bytes) -> str:
  digest = hashlib.sha256()
  for part in parts:
    digest.update(part.encode('utf-8') if isinstance(part, str) else part)
    digest.update(b'\0')
  return digest.hexdigest()


def file_fingerprint(path: Path) -> str:
  """Path, size and modification time of a file (cheap: reads no data)."""
  path = path.resolve()
  stat = path.stat()
  return f'{path}:{stat.st_size}:{stat.st_mtime_ns}'


def decode_utf8(data: bytes, path: str | os.PathLike[str],
                errors_policy: str = 'strict') -> str:
  """Decodes file bytes as UTF-8.

  Args:
    data: the raw bytes of the file.
    path: the file (or TFDS example), for the error message.
    errors_policy: ``'strict'`` raises :class:`errors.NotUtf8Error` naming the
      file, line and bytes; ``'replace'`` replaces invalid bytes with U+FFFD.

  Returns:
    The decoded text.
  """
  if errors_policy not in ('strict', 'replace'):
    raise errors.ConfigError(
        f"encoding_errors={errors_policy!r} is not supported; use 'strict' "
        "(fail on bytes that are not UTF-8) or 'replace' (replace them with "
        'U+FFFD).')
  try:
    return data.decode('utf-8', errors=errors_policy)
  except UnicodeDecodeError as e:
    line = data.count(b'\n', 0, e.start) + 1
    bad = data[e.start:e.end]
    raise errors.NotUtf8Error(
        f'{path}, line {line}: bytes {bad!r} at byte offset {e.start} are not '
        f'valid UTF-8 ({e.reason}). Re-encode the text as UTF-8 (a file: e.g. '
        f'`iconv -f latin1 -t utf-8`), or set the data config '
        f"encoding_errors='replace' to replace such bytes with U+FFFD."
    ) from None


def split_text_lines(text: str) -> list[str]:
  """Splits text into lines on ``\\n``; a final newline ends the last line."""
  lines = text.split('\n')
  if lines and lines[-1] == '':
    lines.pop()
  return lines


def read_text_file(path: str | os.PathLike[str],
                   encoding_errors: str = 'strict') -> list[str]:
  """Reads a UTF-8 text file into its lines, with clear errors.

  Raises:
    errors.DataFileNotFoundError: the file does not exist.
    errors.EmptyDataError: the file holds no text (zero bytes or only
      whitespace).
    errors.NotUtf8Error: the file holds bytes that are not UTF-8 (and
      ``encoding_errors`` is ``'strict'``).
  """
  path = Path(path)
  if not path.is_file():
    raise errors.DataFileNotFoundError(
        f'Data file {path} does not exist. Check the data directory and the '
        'split file names in the data config (data_dir / files), or create '
        'the file.')
  data = path.read_bytes()
  if not data.strip():
    raise errors.EmptyDataError(
        f'Data file {path} is empty ({len(data)} bytes, no text). Put the '
        'split text in it (one sentence or paragraph per line) or point the '
        'data config at another file.')
  return split_text_lines(decode_utf8(data, path, encoding_errors))


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
    for line in split_text_lines(topics.topics[key]):
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
    return fingerprint_of('embedded', split, sys.version.split()[0],
                   *_embedded_lines()[slice(*self._bounds()[split])])


class TextFilesCorpus(TextCorpus):
  """Split files in a directory, PTB / WikiText layout.

  Args:
    data_dir: the directory.
    files: split name -> file name inside ``data_dir`` (``''`` or absent: the
      split has no file, e.g. a held-out test set).
    encoding_errors: ``'strict'`` or ``'replace'``, see :func:`decode_utf8`.
  """

  def __init__(self, data_dir: str | os.PathLike[str],
               files: Mapping[str, str], encoding_errors: str = 'strict'):
    self.data_dir = Path(data_dir).expanduser()
    if not str(data_dir):
      raise errors.ConfigError(
          "source='text_files' needs data_dir: set the data config data_dir "
          'to the directory holding the split files.')
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
          f'files.{split} to the right file name, or remove {split!r} from '
          'eval_splits.')
    return path

  def read_lines(self, split: str) -> list[str]:
    return read_text_file(self.path(split), self.encoding_errors)

  def fingerprint(self, split: str) -> str:
    return fingerprint_of('text_files', file_fingerprint(self.path(split)),
                          self.encoding_errors)


def _import_tfds():
  """Imports tensorflow_datasets with TensorFlow kept off any GPU."""
  prefetch.import_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def tfds_builder(name: str, data_dir: str | None):
  """Returns the TFDS builder for ``name`` (``'name'`` or ``'name/config'``).

  Raises:
    errors.TfdsError: the dataset (or config) is not registered in TFDS.
  """
  tfds = _import_tfds()
  try:
    return tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise errors.TfdsError(
        f'TFDS dataset {name!r} (data config tfds_name) is not a registered '
        'TFDS dataset. Check the spelling against `tfds.list_builders()` '
        "(e.g. 'lm1b', 'tiny_shakespeare', 'wmt17_translate/de-en').") from e
  except ValueError as e:  # Unknown builder config, e.g. 'wmt17_translate/xx'.
    raise errors.TfdsError(
        f'TFDS dataset {name!r} (data config tfds_name): {e}') from e


def tfds_read(builder, split: str, data_dir: str | None):
  """``builder.as_dataset(split)``, offline, with a clear not-prepared error.

  Returns:
    A ``tf.data.Dataset`` of feature dicts, in file order (no shuffling).
  """
  tfds = _import_tfds()
  splits = builder.info.splits
  if splits and split.split('[')[0] not in splits:
    raise errors.TfdsError(
        f'TFDS dataset {builder.name!r} has no split {split!r}; its splits '
        f'are {sorted(splits)}. Fix the split names in the data config.')
  try:
    return builder.as_dataset(
        split=split, shuffle_files=False,
        read_config=tfds.ReadConfig(interleave_cycle_length=1))
  except AssertionError as e:
    if 'could not find data' not in str(e):
      raise
    full_name = builder.info.full_name.rsplit('/', 1)[0]
    where = data_dir or '~/tensorflow_datasets'
    raise errors.TfdsNotPreparedError(
        f'TFDS dataset {full_name!r} is not prepared in {where} and this '
        'pipeline does not download. On a machine with network access run\n'
        f'  tfds build {full_name} --data_dir=DIR\n'
        '(or `python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder('{full_name}', data_dir='DIR')"
        '.download_and_prepare()"`), copy DIR to this machine (or use a '
        'shared/GCS path) and set the data config tfds_data_dir (or '
        f'data_dir) to it. Looked in: {where}.') from e


def _check_feature_keys(builder, keys: Sequence[str], config_key: str) -> None:
  features = builder.info.features
  available = list(features.keys()) if hasattr(features, 'keys') else []
  if hasattr(features, 'languages'):  # tfds.features.Translation
    available = list(features.languages)
  for key in keys:
    if key not in available:
      raise errors.TfdsError(
          f'TFDS dataset {builder.name!r} has no feature {key!r} (data config '
          f'{config_key}); its features are {available}.')


class TfdsTextCorpus(TextCorpus):
  """A TFDS text dataset: each example's text feature, split into lines.

  Sentence datasets (lm1b) give one line per example; single-document
  datasets (tiny_shakespeare: one example per split) are split on ``\\n``.

  Args:
    name: TFDS name, optionally ``name/config``.
    splits: split name (train / valid / test) -> TFDS split string.
    text_key: the text feature.
    data_dir: TFDS data dir (``None``: the TFDS default).
    encoding_errors: ``'strict'`` or ``'replace'``, see :func:`decode_utf8`.
  """

  def __init__(self, name: str, splits: Mapping[str, str], text_key: str,
               data_dir: str | None = None, encoding_errors: str = 'strict'):
    self.name = name
    self.encoding_errors = encoding_errors
    self.split_map = {k: v for k, v in splits.items() if v}
    self.text_key = text_key
    self.data_dir = data_dir or None
    self.builder = tfds_builder(name, self.data_dir)
    _check_feature_keys(self.builder, [text_key], 'tfds_text_key')

  def __repr__(self) -> str:
    return f'TfdsTextCorpus({self.name!r}, {self.split_map})'

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.split_map)

  def read_lines(self, split: str) -> list[str]:
    self._check_split(split)
    tfds = _import_tfds()
    dataset = tfds_read(self.builder, self.split_map[split], self.data_dir)
    lines: list[str] = []
    for index, example in enumerate(tfds.as_numpy(dataset)):
      where = (f'TFDS {self.name!r} split {self.split_map[split]!r}, example '
               f'{index}, feature {self.text_key!r}')
      lines.extend(split_text_lines(
          decode_utf8(example[self.text_key], where, self.encoding_errors)))
    if not lines:
      raise errors.EmptyDataError(
          f'TFDS {self.name!r} split {self.split_map[split]!r} has no text.')
    return lines

  def fingerprint(self, split: str) -> str:
    self._check_split(split)
    return fingerprint_of('tfds', self.name, str(self.builder.version),
                   self.split_map[split], self.text_key,
                   str(self.builder.data_dir))


def parallel_paths(data_dir: str | os.PathLike[str], prefix: str,
                   source_lang: str, target_lang: str) -> tuple[Path, Path]:
  """The existing files ``{prefix}.{source_lang}``, ``{prefix}.{target_lang}``.

  Raises:
    errors.DataFileNotFoundError: ``data_dir`` or a file does not exist.
  """
  data_dir = Path(data_dir).expanduser()
  if not data_dir.is_dir():
    raise errors.DataFileNotFoundError(
        f'Data directory {data_dir} (data config data_dir) does not exist. '
        f'Point data_dir at the directory with {prefix}.{source_lang} and '
        f'{prefix}.{target_lang}.')
  paths = (data_dir / f'{prefix}.{source_lang}',
           data_dir / f'{prefix}.{target_lang}')
  for path in paths:
    if not path.is_file():
      present = sorted(p.name for p in data_dir.iterdir())
      raise errors.DataFileNotFoundError(
          f'Parallel text file {path} does not exist (files in {data_dir}: '
          f'{present}). Check the data config train_prefix / eval_prefix and '
          'source_lang / target_lang.')
  return paths


def read_parallel_files(data_dir: str | os.PathLike[str], prefix: str,
                        source_lang: str, target_lang: str,
                        encoding_errors: str = 'strict'
                        ) -> tuple[list[str], list[str]]:
  """Reads ``{prefix}.{source_lang}`` / ``{prefix}.{target_lang}`` (Multi30k).

  Returns:
    (source lines, target lines), aligned: line i translates line i.

  Raises:
    errors.DataFileNotFoundError, errors.EmptyDataError, errors.NotUtf8Error
    as :func:`read_text_file`; errors.ConfigError when the two files have
    different numbers of lines.
  """
  source_path, target_path = parallel_paths(data_dir, prefix, source_lang,
                                            target_lang)
  source = read_text_file(source_path, encoding_errors)
  target = read_text_file(target_path, encoding_errors)
  if len(source) != len(target):
    raise errors.ConfigError(
        f'{source_path} has {len(source)} lines but {target_path} has '
        f'{len(target)}; parallel files must be line-aligned.')
  return source, target


def parallel_files_fingerprint(data_dir: str | os.PathLike[str], prefix: str,
                               source_lang: str, target_lang: str,
                               encoding_errors: str = 'strict') -> str:
  return fingerprint_of(
      'parallel_text', encoding_errors,
      *map(file_fingerprint, parallel_paths(data_dir, prefix, source_lang,
                                            target_lang)))


def read_tfds_translation(name: str, split: str, source_key: str,
                          target_key: str, data_dir: str | None = None
                          ) -> tuple[list[str], list[str]]:
  """Reads sentence pairs of a TFDS translate dataset.

  Args:
    name: e.g. ``'wmt17_translate/de-en'``, ``'ted_hrlr_translate/pt_to_en'``.
    split: TFDS split string.
    source_key, target_key: the language features, e.g. ``'de'``, ``'en'``.
    data_dir: TFDS data dir.

  Returns:
    (source lines, target lines).
  """
  tfds = _import_tfds()
  builder = tfds_builder(name, data_dir)
  _check_feature_keys(builder, [source_key], 'source_lang')
  _check_feature_keys(builder, [target_key], 'target_lang')
  dataset = tfds_read(builder, split, data_dir)
  source, target = [], []
  for example in tfds.as_numpy(dataset):
    source.append(example[source_key].decode('utf-8'))
    target.append(example[target_key].decode('utf-8'))
  if not source:
    raise errors.EmptyDataError(f'TFDS {name!r} split {split!r} is empty.')
  return source, target


def tfds_translation_fingerprint(name: str, split: str, source_key: str,
                                 target_key: str,
                                 data_dir: str | None = None) -> str:
  builder = tfds_builder(name, data_dir)
  return fingerprint_of('tfds_translation', name, str(builder.version), split,
                 source_key, target_key, str(builder.data_dir))

