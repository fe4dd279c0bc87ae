"""Parallel text: sentence pairs for translation.

* Files in the Multi30k layout, ``{prefix}.{source_lang}`` and
  ``{prefix}.{target_lang}``, line ``i`` of one translating line ``i`` of the
  other: read whole (:func:`read_parallel_files`) or streamed in shards of
  equal line ranges of both files (:func:`parallel_file_shards`).
* TFDS translate datasets (``'wmt17_translate/de-en'``, ...):
  :func:`read_tfds_translation`, :func:`tfds_translation_shards`.

:class:`PairShards` yields aligned ``(source_lines, target_lines)`` chunks of
each shard and the interleaved lines that train the joint tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from input_pipeline import errors, tfds_data, text_lines


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
    as :func:`text_lines.read_text_file`; errors.ConfigError when the two
    files have different numbers of lines.
  """
  source_path, target_path = parallel_paths(data_dir, prefix, source_lang,
                                            target_lang)
  source = text_lines.read_text_file(source_path, encoding_errors)
  target = text_lines.read_text_file(target_path, encoding_errors)
  if len(source) != len(target):
    raise errors.ConfigError(
        f'{source_path} has {len(source)} lines but {target_path} has '
        f'{len(target)}; parallel files must be line-aligned.')
  return source, target


def parallel_files_fingerprint(data_dir: str | os.PathLike[str], prefix: str,
                               source_lang: str, target_lang: str,
                               encoding_errors: str = 'strict') -> str:
  return text_lines.fingerprint_of(
      'parallel_text', encoding_errors,
      *map(text_lines.file_fingerprint,
           parallel_paths(data_dir, prefix, source_lang, target_lang)))


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
  tfds = tfds_data.import_tfds()
  builder = tfds_data.tfds_builder(name, data_dir)
  tfds_data.check_feature_keys(builder, [source_key], 'source_lang')
  tfds_data.check_feature_keys(builder, [target_key], 'target_lang')
  dataset = tfds_data.tfds_read(builder, split, data_dir)
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
  builder = tfds_data.tfds_builder(name, data_dir)
  return text_lines.fingerprint_of(
      'tfds_translation', name, str(builder.version), split, source_key,
      target_key, str(builder.data_dir))


class PairShards:
  """Sentence pairs (source, target) of a split, in contiguous shards.

  ``chunks(k, chunk_bytes)`` yields aligned ``(source_lines,
  target_lines)`` of shard ``k``. ``joint_lines()`` is a
  :class:`text_lines.LineShards`
  of the interleaved sides (source 0, target 0, source 1, ...) to train the
  joint tokenizer on.
  """

  def __init__(self, source: text_lines.LineShards,
               target: text_lines.LineShards, what: str):
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

  def joint_lines(self) -> text_lines.LineShards:
    pairs = self

    class _Joint(text_lines.LineShards):
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
  sizes = [text_lines.check_not_empty(p) for p in paths]
  counts = [text_lines.scan_lines(p)[0] for p in paths]
  if counts[0] != counts[1]:
    raise errors.ConfigError(
        f'{paths[0]} has {counts[0]} lines but {paths[1]} has {counts[1]}; '
        'parallel files must be line-aligned.')
  lines = min(counts[0], limit) if limit else counts[0]
  num_shards = min(max(1, lines), text_lines.auto_num_shards(
      sum(sizes) * lines // max(counts[0], 1), shard_mb))
  wanted = [k * lines // num_shards for k in range(num_shards + 1)]
  sides = []
  for path in paths:
    bounds = text_lines.scan_lines(path, wanted)[1]
    sides.append(text_lines.FileShards(path, bounds[-1], num_shards,
                                       encoding_errors, line_bounds=bounds))
  return PairShards(*sides, what=f'{paths[0]} / {paths[1]}')


def tfds_translation_shards(name: str, split: str, source_key: str,
                            target_key: str, data_dir: str | None = None,
                            limit: int | None = None, shard_mb: float = 0
                            ) -> 'TfdsPairShards':
  builder = tfds_data.tfds_builder(name, data_dir)
  tfds_data.check_feature_keys(builder, [source_key], 'source_lang')
  tfds_data.check_feature_keys(builder, [target_key], 'target_lang')
  num_shards = 1
  info = builder.info.splits
  base = split.split('[')[0]
  if not limit and info and base in info and '[' not in split:
    num_shards = text_lines.auto_num_shards(int(info[base].num_bytes or 0),
                                            shard_mb)
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
    tfds = tfds_data.import_tfds()
    sub = self.split if self.num_shards == 1 else tfds.even_splits(
        self.split, n=self.num_shards)[shard]
    dataset = tfds_data.tfds_read(self.builder, sub, self.data_dir)
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
