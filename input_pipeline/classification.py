"""Sentence classification data: labelled text files or TFDS, length-bucketed.

``get_classification_datasets(config.data, workdir)`` takes a config with the
keys of :func:`default_classification_config` and returns
:class:`ClassificationDatasets`. Sources: :mod:`input_pipeline.labelled_text`;
batches: :mod:`input_pipeline.classification_batching`.

What a run builds is kept in the workdir: the tokenizer in
``workdir/tokenizer/`` (built from the train split's text, or the one given,
e.g. a language model's for transfer learning), the label names in
``workdir/tokenizer/labels.json`` (:func:`load_label_names`), and the encoded
splits in ``cache_dir`` (default ``workdir/data_cache``) as
:class:`input_pipeline.cache.ShardedEntry` entries (memory-mapped, written
atomically by process 0, waited for by the others), so a second start reads
no text and tokenises nothing.

Each split is stored as one flat int32 array of token ids, int64 offsets,
int32 labels and int64 source positions. Examples longer than
``max_length`` tokens are truncated (kept: the first ``max_length`` tokens);
how many is logged and returned by :meth:`ClassificationDatasets.num_truncated`.
Texts are encoded as at inference (:class:`lstm_flax.tokenizer.TextEncoding`:
``lowercase``, ``add_eos``, ``max_length``, ``bucket_boundaries``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from input_pipeline import cache, errors, hosts, labelled_text, prefetch
from input_pipeline import classification_batching as batching
from input_pipeline import sharded_encoding, text_lines
from input_pipeline import tokenizers as tokenizers_lib
from lstm_flax.tokenizer import log_truncation, TextEncoding

Batch = dict[str, np.ndarray]

LABELS_FILE = 'labels.json'
# Bumped when the cached arrays' meaning changes.
CACHE_FORMAT = 2
_FIELDS = {'ids': np.int32, 'offsets': np.int64, 'labels': np.int32,
           'source_index': np.int64}


def default_classification_config() -> ml_collections.ConfigDict:
  """Data config of a sentence classifier, with every key and its default."""
  c = ml_collections.ConfigDict()
  # Source: 'labelled_text' (LABEL TEXT lines) or 'tfds'.
  c.source = 'labelled_text'
  c.data_dir = ''  # labelled_text: the directory of the split files.
  # labelled_text: split name -> file in data_dir ('' = no such split).
  c.files = ml_collections.ConfigDict(
      {'train': 'stsa.binary.train', 'valid': 'stsa.binary.dev'})
  c.encoding_errors = 'strict'  # Or 'replace': invalid UTF-8 -> U+FFFD.
  c.tfds_name = ''  # tfds: e.g. 'glue/sst2', 'imdb_reviews'.
  c.tfds_data_dir = ''  # tfds: where it is prepared ('': TFDS default).
  # tfds: split name -> TFDS split ('' = no such split).
  c.tfds_splits = ml_collections.ConfigDict(
      {'train': 'train', 'valid': 'validation'})
  c.text_key = 'sentence'  # tfds: text feature ('sentence' glue, 'text' imdb).
  c.label_key = 'label'  # tfds: ClassLabel feature.
  c.lowercase = False  # Lower-case the text before tokenising.
  c.add_eos = False  # End examples with eos_id (truncation may cut it).
  # Tokenizer (as the LM config): 'word', 'char' or 'sentencepiece'.
  c.tokenizer = 'word'
  c.vocab_size = 0  # word: cap (0: none); sentencepiece: size.
  c.min_count = 1  # word: minimum count in train.
  c.spm_model_type = 'unigram'  # Or 'bpe'.
  c.spm_model_path = ''  # Load this model instead of training one.
  c.spm_character_coverage = 1.0  # sentencepiece: characters covered.
  c.spm_max_training_lines = 1_000_000  # sentencepiece: training sample.
  # Batching.
  c.batch_size = 32  # Global (all processes) rows per training batch.
  c.eval_batch_size = 128  # Global rows per evaluation batch.
  c.max_length = 256  # Longer examples are truncated (and counted).
  # Batch widths (up to max_length).
  c.bucket_boundaries = batching.DEFAULT_BOUNDARIES
  c.shuffle_seed = 0  # Seeds each epoch's shuffle (with the epoch number).
  c.cache_dir = ''  # '': workdir/data_cache.
  c.prefetch = 2  # Batches prepared ahead on a thread (0: none).
  # Seconds a process waits for process 0 to cache the encoded splits.
  c.wait_timeout_s = 3600.0
  return c


@dataclasses.dataclass
class ClassificationSplit:
  """An encoded split.

  ``ids``: int32 flat tokens; ``offsets``: int64 ``[n + 1]``; ``labels``:
  int32 ``[n]``; ``source_index``: int64 ``[n]``, where each example comes
  from (the 1-based line of a file, or the TFDS example's position);
  ``num_skipped``: empty lines / blank texts that were skipped;
  ``num_truncated``: examples longer than ``max_length``.
  """

  ids: np.ndarray
  offsets: np.ndarray
  labels: np.ndarray
  source_index: np.ndarray
  num_skipped: int
  num_truncated: int = 0

  @property
  def num_examples(self) -> int:
    return len(self.offsets) - 1

  @property
  def lengths(self) -> np.ndarray:
    """Tokens of each example, before truncation."""
    return np.diff(self.offsets)


@dataclasses.dataclass
class ClassificationDatasets:
  """The tokenizer, labels and encoded splits of a classification run."""

  config: dict[str, Any]
  tokenizer: tokenizers_lib.Tokenizer
  label_names: list[str]
  splits: dict[str, ClassificationSplit]
  shard: hosts.HostShard

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.vocab_size

  @property
  def num_classes(self) -> int:
    return len(self.label_names)

  @property
  def eval_splits(self) -> tuple[str, ...]:
    """The loaded splits other than train, in config order."""
    return tuple(split for split in self.splits if split != 'train')

  def _split(self, split: str) -> ClassificationSplit:
    if split not in self.splits:
      where = 'files' if self.config['source'] == 'labelled_text' else (
          'tfds_splits')
      raise errors.ConfigError(
          f'Split {split!r} was not loaded; loaded: {sorted(self.splits)}. '
          f'Add it to the data config {where}.')
    return self.splits[split]

  def num_examples(self, split: str) -> int:
    """Examples of ``split`` (skipped empty lines not included)."""
    return self._split(split).num_examples

  def num_truncated(self, split: str) -> int:
    """Examples of ``split`` longer than ``max_length`` (truncated)."""
    return self._split(split).num_truncated

  def batcher(self, split: str, training: bool | None = None
              ) -> batching.ClassificationBatcher:
    """The batcher of ``split``: training (shuffled epochs of ``batch_size``
    rows) for ``'train'``, else one pass of ``eval_batch_size`` rows
    (``training`` overrides, e.g. ``False`` to evaluate on train)."""
    data, cfg = self._split(split), self.config
    if training is None:
      training = split == 'train'
    return batching.ClassificationBatcher(
        data.ids, data.offsets, data.labels, self.shard,
        batch_size=cfg['batch_size' if training else 'eval_batch_size'],
        max_length=cfg['max_length'], boundaries=cfg['bucket_boundaries'],
        pad_id=self.tokenizer.pad_id, training=training,
        seed=cfg['shuffle_seed'])

  def steps_per_epoch(self) -> int:
    """Training batches per epoch (``len(batcher('train').plan(epoch))``)."""
    return len(self.batcher('train'))

  def train_batches(self, start_step: int = 0) -> Iterator[Batch]:
    """Training batches forever, from global step ``start_step`` on."""
    return prefetch.prefetch(self.batcher('train').iterate(start_step),
                             self.config['prefetch'])

  def eval_batches(self, split: str = 'valid') -> Iterator[Batch]:
    """One pass over ``split``: every example once (padding rows: -1)."""
    return prefetch.prefetch(
        self.batcher(split, training=False).iterate(num_epochs=1),
        self.config['prefetch'])

  def encode_lines(self, lines: Sequence[str]) -> Batch:
    """Raw texts -> one padded batch, encoded as the data was
    (:class:`lstm_flax.tokenizer.TextEncoding`, as at inference): truncated
    to ``max_length`` tokens, padded to the bucket width of the longest;
    ``labels`` are 0 and ``example_index`` is the position in ``lines``.

    Raises:
      errors.EmptyDataError: no lines, or a blank line (nothing to classify).
    """
    if not lines:
      raise errors.EmptyDataError('No text to encode.')
    for number, line in enumerate(lines, 1):
      if not line.strip():
        raise errors.EmptyDataError(
            f'Input line {number} is blank: there is nothing to classify. '
            'Remove blank lines from the input.')
    tokens, lengths = TextEncoding.from_mapping(self.config).encode(
        self.tokenizer, list(lines))
    return {'tokens': tokens, 'lengths': lengths,
            'labels': np.zeros(len(lines), np.int32),
            'example_index': np.arange(len(lines), dtype=np.int32)}


# ---------------------------------------------------- tokenizer, labels ------


def load_label_names(workdir: str | os.PathLike[str]) -> list[str]:
  """The label names saved with a classification run (class id -> name).

  Raises:
    errors.DataFileNotFoundError: the workdir has no saved labels.
  """
  path = Path(workdir) / tokenizers_lib.TOKENIZER_DIR / LABELS_FILE
  if not path.is_file():
    raise errors.DataFileNotFoundError(
        f'No label names are saved in {path}. Point at the workdir of a '
        'classification run that has loaded its data.')
  return list(json.loads(path.read_text('utf-8'))['label_names'])


def _save_label_names(workdir: str | os.PathLike[str],
                      label_names: list[str]) -> None:
  """Saves the label names, or checks them against the saved ones."""
  path = Path(workdir) / tokenizers_lib.TOKENIZER_DIR / LABELS_FILE
  if path.is_file():
    saved = load_label_names(workdir)
    if saved == label_names:
      return
    raise errors.LabelMismatchError(
        f'The labels of the training data now, {label_names}, differ from '
        f'the ones saved with this run in {path}, {saved}; the saved model '
        'only fits the saved labels. Restore the training data the run was '
        'started with, or start a new run in a fresh workdir.')
  cache.atomic_write_bytes(
      path, json.dumps({'label_names': label_names}, indent=1,
                       ensure_ascii=False).encode())


# ---------------------------------------------------------- entry point -----


def get_classification_datasets(
    config: Mapping[str, Any] | ml_collections.ConfigDict,
    workdir: str | os.PathLike[str], *,
    tokenizer: tokenizers_lib.Tokenizer | None = None,
    process_index: int | None = None,
    process_count: int | None = None) -> ClassificationDatasets:
  """Loads (or reuses) the tokenizer, labels and encoded splits of a run.

  Args:
    config: the data config (keys of :func:`default_classification_config`).
    workdir: the run directory (tokenizer, labels and default cache).
    tokenizer: use this tokenizer as is (e.g. a language model's, from
      :func:`input_pipeline.load_tokenizer` on its workdir, for transfer learning; words it
      does not know become its unk) instead of building one from the train
      split; it is saved in ``workdir/tokenizer/`` like a built one. Without
      it, the tokenizer saved in the workdir is reused (a given one too), else
      one is built from the train split's text as the config says.
    process_index, process_count: this process among the JAX processes
      (default: ``jax.process_index()``, ``jax.process_count()``).

  Returns:
    :class:`ClassificationDatasets` with every split of ``files`` /
    ``tfds_splits``.
  """
  cfg = sharded_encoding.resolve_config(config,
                                        default_classification_config())
  cfg['bucket_boundaries'] = tuple(cfg['bucket_boundaries'])
  shard = hosts.resolve(process_index, process_count)
  shard.rows(cfg['batch_size'], 'batch_size')
  shard.rows(cfg['eval_batch_size'], 'eval_batch_size')
  encoding = TextEncoding.from_mapping(cfg)
  try:
    encoding.widths()
  except ValueError as e:
    raise errors.ConfigError(f'Data config: {e}') from None
  source = labelled_text.make_source(cfg)
  if 'train' not in source.splits:
    raise errors.ConfigError(
        f'The data config names no train split ({source.splits}); set '
        f"{'files' if cfg['source'] == 'labelled_text' else 'tfds_splits'}"
        '.train.')
  options = {'lowercase': bool(cfg['lowercase']),
             'add_eos': bool(cfg['add_eos'])}

  read = functools.cache(source.read)

  def fingerprint(split: str) -> str:
    return text_lines.fingerprint_of(source.fingerprint(split),
                                     json.dumps(options, sort_keys=True))

  tokenizer = _run_tokenizer(
      cfg, workdir, tokenizer,
      lambda: [encoding.text(text) for text in read('train').texts],
      fingerprint('train'))
  cache_dir = sharded_encoding.cache_dir(cfg, workdir)
  key = {'tokenizer': tokenizer.fingerprint(), **options}

  def cached(split: str, label_names: list[str] | None
             ) -> tuple[ClassificationSplit, list[str]]:
    return _cached_split(
        cache_dir, split, {**key, 'source': fingerprint(split),
                           'label_names': label_names}, shard,
        cfg['wait_timeout_s'],
        lambda: _encode(tokenizer, read(split), label_names, encoding))

  splits = {}
  splits['train'], label_names = cached('train', source.label_names())
  for split in source.splits:
    if split != 'train':
      splits[split], _ = cached(split, label_names)
  read.cache_clear()  # The raw text is no longer needed.
  _save_label_names(workdir, label_names)
  for split, data in splits.items():
    data.num_truncated = log_truncation(data.lengths, cfg['max_length'],
                                        split)
    logging.info('Classification split %s: %d examples, %d tokens%s', split,
                 data.num_examples, len(data.ids),
                 f', {data.num_skipped} empty skipped' if data.num_skipped
                 else '')
  datasets = ClassificationDatasets(cfg, tokenizer, label_names, splits, shard)
  datasets.batcher('train')  # Checks batch_size against the examples.
  return datasets


def _run_tokenizer(cfg: Mapping[str, Any], workdir: str | os.PathLike[str],
                   given: tokenizers_lib.Tokenizer | None,
                   train_texts: Callable[[], list[str]],
                   data_fingerprint: str) -> tokenizers_lib.Tokenizer:
  """The given tokenizer (saved), the saved given one, or the built one."""
  if given is not None:
    tokenizers_lib.use_given(given, workdir)
    return given
  saved = tokenizers_lib.load_saved(Path(workdir) /
                                    tokenizers_lib.TOKENIZER_DIR)
  if saved is not None and saved[1].get('origin') == 'given':
    logging.info('Using the %s tokenizer given when this run started.',
                 saved[0].kind)
    return saved[0]
  # As the LM pipeline: every process builds the same tokenizer (it is
  # deterministic) or loads the saved one; saves are atomic.
  return tokenizers_lib.get_tokenizer(tokenizers_lib.spec_of(cfg), workdir,
                                      train_texts, data_fingerprint)


def _encode(tokenizer: tokenizers_lib.Tokenizer, raw: labelled_text.RawSplit,
            label_names: list[str] | None, encoding: TextEncoding
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Encodes a raw split: (arrays, metadata) for the cache."""
  if isinstance(raw.labels, np.ndarray):  # TFDS: already ids.
    labels = raw.labels
  else:
    if label_names is None:  # The train split defines the labels.
      label_names = labelled_text.sorted_label_names(raw.labels)
    label_id = {name: i for i, name in enumerate(label_names)}
    labels = np.empty(len(raw.labels), np.int32)
    for k, label in enumerate(raw.labels):
      if label not in label_id:
        raise errors.UnknownLabelError(
            f'{raw.where(int(raw.source_index[k]))}: label {label!r} does '
            f'not occur in the train split, whose labels are {label_names}. '
            'Fix the label, or remove the line.')
      labels[k] = label_id[label]
  ids, offsets = encoding.encode_flat(tokenizer, raw.texts)
  empty = np.flatnonzero(np.diff(offsets) == 0)
  if len(empty):
    raise errors.EmptyDataError(
        f'{raw.where(int(raw.source_index[empty[0]]))}: the text encodes to '
        f'no tokens ({len(empty)} such examples). Remove it, or set the data '
        'config add_eos=True.')
  return ({'ids': ids, 'offsets': offsets, 'labels': labels,
           'source_index': raw.source_index},
          {'label_names': label_names, 'num_skipped': raw.num_skipped})


def _cached_split(cache_dir: Path, split: str, key: Mapping[str, Any],
                  shard: hosts.HostShard, timeout_s: float,
                  build: Callable[[], tuple[dict[str, np.ndarray],
                                            dict[str, Any]]]
                  ) -> tuple[ClassificationSplit, list[str]]:
  """The encoded ``split`` from its cache entry (one shard, memory-mapped),
  which process 0 builds and writes if missing; the others wait for it.

  Returns:
    (the split, its label names).
  """
  entry = cache.ShardedEntry(cache_dir, f'classification-{split}',
                             {'format': CACHE_FORMAT, **key}, 1, _FIELDS)
  if shard.process_index == 0 and not entry.complete(0):
    arrays, meta = build()
    entry.write(0, iter([arrays]), lambda: meta)
    logging.info('Cached classification split %s in %s', split,
                 entry.directory)
  meta = entry.wait(timeout_s)[0]
  arrays = {field: cache.concat(entry.open(field)) for field in _FIELDS}
  return (ClassificationSplit(arrays['ids'], arrays['offsets'],
                              arrays['labels'], arrays['source_index'],
                              int(meta['num_skipped'])),
          list(meta['label_names']))

