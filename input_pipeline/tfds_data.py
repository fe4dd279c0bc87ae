"""TFDS: opening a prepared dataset offline, and TFDS text corpora.

:func:`tfds_builder` / :func:`tfds_read` open a dataset already prepared in
``data_dir`` (this pipeline never downloads) with clear errors; TensorFlow is
imported only here, and kept off any GPU (:func:`import_tfds`).
:class:`TfdsTextCorpus` reads any TFDS text dataset by name, split and
feature key (lm1b, tiny_shakespeare, pg19, ...) as a language-model corpus,
streamed in even sub-splits (:class:`TfdsShards`). Translation pairs and
labelled sentences from TFDS are read by :mod:`input_pipeline.parallel_text`
and :mod:`input_pipeline.labelled_text` through these functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from input_pipeline import errors, prefetch, text_corpora, text_lines


def import_tfds():
  """Imports tensorflow_datasets with TensorFlow kept off any GPU."""
  prefetch.import_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def tfds_builder(name: str, data_dir: str | None):
  """Returns the TFDS builder for ``name`` (``'name'`` or ``'name/config'``).

  Raises:
    errors.TfdsError: the dataset (or config) is not registered in TFDS.
  """
  tfds = import_tfds()
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
  tfds = import_tfds()
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


def check_feature_keys(builder, keys: Sequence[str], config_key: str) -> None:
  features = builder.info.features
  available = list(features.keys()) if hasattr(features, 'keys') else []
  if hasattr(features, 'languages'):  # tfds.features.Translation
    available = list(features.languages)
  for key in keys:
    if key not in available:
      raise errors.TfdsError(
          f'TFDS dataset {builder.name!r} has no feature {key!r} (data config '
          f'{config_key}); its features are {available}.')


class TfdsTextCorpus(text_corpora.TextCorpus):
  """A TFDS text dataset: each example's text feature, split into lines.

  Sentence datasets (lm1b) give one line per example; single-document
  datasets (tiny_shakespeare: one example per split) are split on ``\\n``.

  Args:
    name: TFDS name, optionally ``name/config``.
    splits: split name (train / valid / test) -> TFDS split string.
    text_key: the text feature.
    data_dir: TFDS data dir (``None``: the TFDS default).
    encoding_errors: ``'strict'`` or ``'replace'``, see
      :func:`text_lines.decode_utf8`.
  """

  def __init__(self, name: str, splits: Mapping[str, str], text_key: str,
               data_dir: str | None = None, encoding_errors: str = 'strict'):
    self.name = name
    self.encoding_errors = encoding_errors
    self.split_map = {k: v for k, v in splits.items() if v}
    self.text_key = text_key
    self.data_dir = data_dir or None
    self.builder = tfds_builder(name, self.data_dir)
    check_feature_keys(self.builder, [text_key], 'tfds_text_key')

  def __repr__(self) -> str:
    return f'TfdsTextCorpus({self.name!r}, {self.split_map})'

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.split_map)

  def read_lines(self, split: str) -> list[str]:
    self._check_split(split)
    tfds = import_tfds()
    dataset = tfds_read(self.builder, self.split_map[split], self.data_dir)
    lines: list[str] = []
    for index, example in enumerate(tfds.as_numpy(dataset)):
      where = (f'TFDS {self.name!r} split {self.split_map[split]!r}, example '
               f'{index}, feature {self.text_key!r}')
      lines.extend(text_lines.split_text_lines(text_lines.decode_utf8(
          example[self.text_key], where, self.encoding_errors)))
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
      num_shards = text_lines.auto_num_shards(
          int(info[base].num_bytes or 0), shard_mb)
    return TfdsShards(self, split, num_shards, max_lines)

  def fingerprint(self, split: str) -> str:
    self._check_split(split)
    return text_lines.fingerprint_of(
        'tfds', self.name, str(self.builder.version), self.split_map[split],
        self.text_key, str(self.builder.data_dir))


class TfdsShards(text_lines.LineShards):
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
    tfds = import_tfds()
    return tfds.even_splits(self.corpus.split_map[self.split],
                            n=self.num_shards)[shard]

  def chunks(self, shard: int, chunk_bytes: int) -> Iterator[list[str]]:
    tfds = import_tfds()
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
      lines = text_lines.split_text_lines(
          text_lines.decode_utf8(data, where, corpus.encoding_errors))
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
