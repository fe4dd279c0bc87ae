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
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
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

  def shards(self, split: str, max_lines: int | None = None,
             shard_mb: float = 0) -> 'LineShards':
    """The lines of ``split`` (the first ``max_lines``) in shards, read in
    chunks. This default reads the split into memory as one shard (small
    corpora)."""
    del shard_mb
    return ListShards(lambda: self.read_lines(split)[:max_lines])

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
    return read_text_file(self.path(split), self.encoding_errors)

  def shards(self, split: str, max_lines: int | None = None,
             shard_mb: float = 0) -> 'FileShards':
    """Contiguous byte ranges of the file, cut at line starts (no scan of
    the file, unless ``max_lines`` asks where its first lines end)."""
    path = self.path(split)
    end = _check_not_empty(path)
    if max_lines:
      end = scan_lines(path, [max_lines])[1][0]
    return FileShards(path, end, auto_num_shards(end, shard_mb),
                      self.encoding_errors)

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

  def shards(self, split: str, max_lines: int | None = None,
             shard_mb: float = 0) -> 'TfdsShards':
    """Even TFDS sub-splits (by the prepared split's size; one shard when
    the size is unknown or with ``max_lines``)."""
    self._check_split(split)
    name = self.split_map[split]
    info = self.builder.info.splits
    base = name.split('[')[0]
    num_shards = 1
    if info and base in info and '[' not in name:
      num_shards = auto_num_shards(int(info[base].num_bytes or 0), shard_mb)
    return TfdsShards(self, split, num_shards, max_lines)

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



# ----------------------------------------------------- sharded reading -----
#
# Large splits are read as contiguous shards, chunk by chunk, so that no
# split is ever held in memory and several processes can each encode a part.

MIB = 1 << 20
_SCAN_BLOCK = 16 * MIB


def auto_num_shards(size_bytes: int, shard_mb: float = 0) -> int:
  """Shards of a split of ``size_bytes``: ``shard_mb`` MiB each, or (0) 1/16
  of the split, at least 1 MiB and at most 64 MiB each. Depends on the data
  only, never on the number of processes."""
  if shard_mb and shard_mb > 0:
    target = shard_mb * MIB
  else:
    target = min(max(size_bytes / 16, MIB), 64 * MIB)
  return max(1, math.ceil(size_bytes / target))


class LineShards(abc.ABC):
  """The lines of a split, cut into ``num_shards`` contiguous shards.

  Concatenating the lines of shards 0, 1, ... gives the split's lines in
  order. ``chunks(k, chunk_bytes)`` yields shard ``k``'s lines in lists of
  about ``chunk_bytes`` of text (a longer line is yielded whole).
  """

  num_shards: int = 1

  @abc.abstractmethod
  def chunks(self, shard: int, chunk_bytes: int) -> Iterator[list[str]]:
    """Lists of consecutive lines of shard ``shard``."""

  def lines(self) -> Iterator[str]:
    """Every line of every shard, in order (streamed)."""
    for shard in range(self.num_shards):
      for chunk in self.chunks(shard, 4 * MIB):
        yield from chunk


def _chunk_list(lines: Sequence[str], chunk_bytes: int
                ) -> Iterator[list[str]]:
  chunk: list[str] = []
  size = 0
  for line in lines:
    chunk.append(line)
    size += len(line) + 1
    if size >= chunk_bytes:
      yield chunk
      chunk, size = [], 0
  if chunk:
    yield chunk


class ListShards(LineShards):
  """Lines already in memory (small corpora), as one shard."""

  def __init__(self, lines: Sequence[str] | Callable[[], Sequence[str]]):
    self._lines = lines

  def _get(self) -> Sequence[str]:
    if callable(self._lines):
      self._lines = self._lines()
    return self._lines

  def chunks(self, shard: int, chunk_bytes: int) -> Iterator[list[str]]:
    assert shard == 0, shard
    return _chunk_list(self._get(), chunk_bytes)


def _check_not_empty(path: Path) -> int:
  size = path.stat().st_size
  if size == 0:
    raise errors.EmptyDataError(
        f'Data file {path} is empty (0 bytes, no text). Put the split text '
        'in it (one sentence or paragraph per line) or point the data config '
        'at another file.')
  return size


def scan_lines(path: Path, wanted: Sequence[int] = ()
               ) -> tuple[int, list[int]]:
  """Counts the lines of a file and finds where some of them start.

  Streams the file in 16 MiB blocks (bounded memory).

  Args:
    path: the file.
    wanted: sorted line numbers; line ``n`` of ``n_lines`` starts at the file
      size.

  Returns:
    (number of lines, the byte offset of each wanted line, clipped to the
    file size).
  """
  size = path.stat().st_size
  offsets: list[int] = []
  pending = list(wanted)
  count, position, last = 0, 0, b'\n'
  with open(path, 'rb') as f:
    while True:
      block = f.read(_SCAN_BLOCK)
      if not block:
        break
      while pending and pending[0] <= count:
        offsets.append(position if pending[0] == count else size)
        pending.pop(0)
      newlines = block.count(b'\n')
      if pending and pending[0] <= count + newlines:
        at = 0
        for _ in range(pending[0] - count):
          at = block.index(b'\n', at) + 1
        # Every wanted line in this block.
        seen = pending[0]
        while pending and pending[0] <= count + newlines:
          while seen < pending[0]:
            at = block.index(b'\n', at) + 1
            seen += 1
          offsets.append(position + at)
          pending.pop(0)
      count += newlines
      position += len(block)
      last = block[-1:]
  if size and last != b'\n':
    count += 1  # A last line without its newline.
  offsets.extend(size for _ in pending)
  return count, offsets


def _first_line_start(f, position: int, end: int) -> int:
  """The start of the first line that starts at or after ``position``."""
  if position <= 0:
    return 0
  f.seek(position - 1)
  at = position - 1
  while at < end:
    block = f.read(min(1 * MIB, end - at))
    if not block:
      break
    found = block.find(b'\n')
    if found >= 0:
      return min(at + found + 1, end)
    at += len(block)
  return end


def _read_blocks(path: Path, start: int, end: int, chunk_bytes: int
                 ) -> Iterator[tuple[int, bytes]]:
  """Yields (file offset, bytes) of [start, end) cut after newlines; a line
  longer than ``chunk_bytes`` is yielded whole (never cut or truncated)."""
  carry, carry_at = b'', start
  with open(path, 'rb') as f:
    f.seek(start)
    position = start
    warned = False
    while position < end:
      data = f.read(min(chunk_bytes, end - position))
      if not data:
        break
      position += len(data)
      buffer = carry + data if carry else data
      if position >= end:
        yield carry_at, buffer
        return
      cut = buffer.rfind(b'\n')
      if cut < 0:  # One line longer than the chunk: keep reading it.
        if not warned and len(buffer) > chunk_bytes:
          logging.info('%s: the line at byte %d is longer than the chunk '
                       'size (%d bytes); it is read whole.', path, carry_at,
                       chunk_bytes)
          warned = True
        carry = buffer
        continue
      yield carry_at, buffer[:cut + 1]
      carry, carry_at = buffer[cut + 1:], carry_at + cut + 1
    if carry:
      yield carry_at, carry


def _decode_block(block: bytes, path: Path, at: int, line: int | None,
                  errors_policy: str) -> list[str]:
  try:
    return split_text_lines(block.decode('utf-8', errors=errors_policy))
  except UnicodeDecodeError as e:
    newlines = block.count(b'\n', 0, e.start)
    where = (f'line {line + newlines + 1}' if line is not None
             else f'byte offset {at + e.start}')
    bad = block[e.start:e.end]
    raise errors.NotUtf8Error(
        f'{path}, {where}: bytes {bad!r} at byte offset {at + e.start} are '
        f'not valid UTF-8 ({e.reason}). Re-encode the text as UTF-8 (a file: '
        'e.g. `iconv -f latin1 -t utf-8`), or set the data config '
        "encoding_errors='replace' to replace such bytes with U+FFFD."
    ) from None


class FileShards(LineShards):
  """A text file read in ``num_shards`` contiguous byte ranges, each cut at
  line starts (so each shard holds whole lines).

  Args:
    path: the file.
    end: bytes of the file to use (the first ``max_lines`` lines' bytes).
    num_shards: number of shards.
    encoding_errors: ``'strict'`` or ``'replace'``.
    line_bounds: instead of byte ranges, the byte offsets of each shard's
      first line and of the end (``num_shards + 1`` values), e.g. to align
      the shards of two parallel files.
  """

  def __init__(self, path: Path, end: int, num_shards: int,
               encoding_errors: str = 'strict',
               line_bounds: Sequence[int] | None = None):
    if encoding_errors not in ('strict', 'replace'):
      decode_utf8(b'', path, encoding_errors)  # Raises the ConfigError.
    self.path = Path(path)
    self.end = end
    self.num_shards = num_shards
    self.encoding_errors = encoding_errors
    self._bounds = list(line_bounds) if line_bounds is not None else None

  def bounds(self) -> list[int]:
    if self._bounds is None:
      with open(self.path, 'rb') as f:
        self._bounds = [_first_line_start(f, k * self.end // self.num_shards,
                                          self.end)
                        for k in range(self.num_shards)] + [self.end]
    return self._bounds

  def chunks(self, shard: int, chunk_bytes: int) -> Iterator[list[str]]:
    start, end = self.bounds()[shard:shard + 2]
    line = 0 if start == 0 else None
    for at, block in _read_blocks(self.path, start, end, chunk_bytes):
      lines = _decode_block(block, self.path, at, line,
                            self.encoding_errors)
      if line is not None:
        line += len(lines)
      yield lines


class TfdsShards(LineShards):
  """A TFDS text split read as ``num_shards`` even sub-splits
  (``tfds.even_splits``), each example's text split into lines."""

  def __init__(self, corpus: 'TfdsTextCorpus', split: str, num_shards: int,
               max_lines: int | None = None):
    self.corpus = corpus
    self.split = split
    self.num_shards = num_shards if not max_lines else 1
    self.max_lines = max_lines

  def _sub_split(self, shard: int):
    if self.num_shards == 1:
      return self.corpus.split_map[self.split]
    tfds = _import_tfds()
    return tfds.even_splits(self.corpus.split_map[self.split],
                            n=self.num_shards)[shard]

  def chunks(self, shard: int, chunk_bytes: int) -> Iterator[list[str]]:
    tfds = _import_tfds()
    corpus = self.corpus
    name = corpus.split_map[self.split]
    dataset = tfds_read(corpus.builder, self._sub_split(shard),
                        corpus.data_dir)
    chunk: list[str] = []
    size = count = 0
    for index, example in enumerate(tfds.as_numpy(dataset)):
      where = (f'TFDS {corpus.name!r} split {name!r}' +
               (f' (shard {shard} of {self.num_shards})'
                if self.num_shards > 1 else '') +
               f', example {index}, feature {corpus.text_key!r}')
      data = example[corpus.text_key]
      lines = split_text_lines(decode_utf8(data, where,
                                           corpus.encoding_errors))
      if self.max_lines:
        lines = lines[:self.max_lines - count]
      chunk.extend(lines)
      count += len(lines)
      size += len(data)
      if size >= chunk_bytes:
        yield chunk
        chunk, size = [], 0
      if self.max_lines and count >= self.max_lines:
        break
    if chunk:
      yield chunk


class PairShards:
  """Sentence pairs (source, target) of a split, in contiguous shards.

  ``chunks(k, chunk_bytes)`` yields aligned ``(source_lines,
  target_lines)`` of shard ``k``. ``joint_lines()`` is a :class:`LineShards`
  of the interleaved sides (source 0, target 0, source 1, ...) to train the
  joint tokenizer on.
  """

  def __init__(self, source: LineShards, target: LineShards, what: str):
    self.source, self.target = source, target
    self.num_shards = source.num_shards
    self.what = what

  def chunks(self, shard: int, chunk_bytes: int
             ) -> Iterator[tuple[list[str], list[str]]]:
    targets = self.target.chunks(shard, chunk_bytes)
    buffer: list[str] = []
    for source in self.source.chunks(shard, chunk_bytes):
      while len(buffer) < len(source):
        more = next(targets, None)
        if more is None:
          raise errors.ConfigError(
              f'{self.what}: the target side has fewer lines than the source '
              f'in shard {shard}; parallel files must be line-aligned.')
        buffer.extend(more)
      yield source, buffer[:len(source)]
      del buffer[:len(source)]
    if buffer or next(targets, None):
      raise errors.ConfigError(
          f'{self.what}: the target side has more lines than the source in '
          f'shard {shard}; parallel files must be line-aligned.')

  def joint_lines(self) -> LineShards:
    pairs = self

    class _Joint(LineShards):
      num_shards = pairs.num_shards

      def chunks(self, shard, chunk_bytes):
        for source, target in pairs.chunks(shard, chunk_bytes):
          yield [line for pair in zip(source, target) for line in pair]

    return _Joint()


def parallel_file_shards(data_dir: str | os.PathLike[str], prefix: str,
                         source_lang: str, target_lang: str,
                         encoding_errors: str = 'strict',
                         limit: int | None = None, shard_mb: float = 0
                         ) -> PairShards:
  """The pairs of ``{prefix}.{source_lang}`` / ``.{target_lang}`` in shards
  of equal line ranges of both files (two streamed scans of each file).

  Raises:
    as :func:`read_parallel_files`.
  """
  paths = parallel_paths(data_dir, prefix, source_lang, target_lang)
  sizes = [_check_not_empty(p) for p in paths]
  counts = [scan_lines(p)[0] for p in paths]
  if counts[0] != counts[1]:
    raise errors.ConfigError(
        f'{paths[0]} has {counts[0]} lines but {paths[1]} has {counts[1]}; '
        'parallel files must be line-aligned.')
  lines = min(counts[0], limit) if limit else counts[0]
  num_shards = min(max(1, lines), auto_num_shards(
      sum(sizes) * lines // max(counts[0], 1), shard_mb))
  wanted = [k * lines // num_shards for k in range(num_shards + 1)]
  sides = []
  for path in paths:
    bounds = scan_lines(path, wanted)[1]
    sides.append(FileShards(path, bounds[-1], num_shards, encoding_errors,
                            line_bounds=bounds))
  return PairShards(*sides, what=f'{paths[0]} / {paths[1]}')


def tfds_translation_shards(name: str, split: str, source_key: str,
                            target_key: str, data_dir: str | None = None,
                            limit: int | None = None, shard_mb: float = 0
                            ) -> 'TfdsPairShards':
  builder = tfds_builder(name, data_dir)
  _check_feature_keys(builder, [source_key], 'source_lang')
  _check_feature_keys(builder, [target_key], 'target_lang')
  num_shards = 1
  info = builder.info.splits
  base = split.split('[')[0]
  if not limit and info and base in info and '[' not in split:
    num_shards = auto_num_shards(int(info[base].num_bytes or 0), shard_mb)
  return TfdsPairShards(builder, name, split, source_key, target_key,
                        data_dir, num_shards, limit)


class TfdsPairShards(PairShards):
  """Pairs of a TFDS translate split, in even sub-splits."""

  def __init__(self, builder, name, split, source_key, target_key, data_dir,
               num_shards, limit):
    self.builder, self.name, self.split = builder, name, split
    self.keys = (source_key, target_key)
    self.data_dir, self.num_shards, self.limit = data_dir, num_shards, limit
    self.what = f'TFDS {name!r} split {split!r}'

  def chunks(self, shard: int, chunk_bytes: int):
    tfds = _import_tfds()
    sub = self.split if self.num_shards == 1 else tfds.even_splits(
        self.split, n=self.num_shards)[shard]
    dataset = tfds_read(self.builder, sub, self.data_dir)
    source: list[str] = []
    target: list[str] = []
    size = count = 0
    for example in tfds.as_numpy(dataset):
      if self.limit and count >= self.limit:
        break
      a, b = (example[k] for k in self.keys)
      source.append(a.decode('utf-8'))
      target.append(b.decode('utf-8'))
      size += len(a) + len(b)
      count += 1
      if size >= chunk_bytes:
        yield source, target
        source, target, size = [], [], 0
    if source:
      yield source, target
