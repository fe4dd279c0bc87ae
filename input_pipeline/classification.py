"""Sentence classification data: labelled text files or TFDS, length-bucketed.

``get_classification_datasets(config.data, workdir)`` takes a config with the
keys of :func:`default_classification_config` and returns
:class:`ClassificationDatasets`.

Sources:

* ``'labelled_text'``: one example per line, ``LABEL TEXT`` (the label, one
  space or tab, the text), e.g. SST-2's ``stsa.binary.{train,dev}``. Empty
  lines are skipped and counted; a line without text or with an empty label
  is an error naming file and line. The label vocabulary is the sorted set of
  the train split's labels (numerically sorted when all are integers); a label
  of another split that train does not have is an error naming file, line and
  label.
* ``'tfds'``: a TFDS dataset with a text feature and a ``ClassLabel`` feature
  (``'glue/sst2'``: ``sentence`` / ``label``; ``'imdb_reviews'``: ``text`` /
  ``label``); the label names are the ``ClassLabel``'s. A label of -1 (the
  unlabelled test split of GLUE) is an error. Blank texts are skipped and
  counted.

What a run builds is kept in the workdir: the tokenizer in
``workdir/tokenizer/`` (built from the train split's text, or the one given,
e.g. a language model's for transfer learning), the label names in
``workdir/tokenizer/labels.json`` (:func:`load_label_names`), and the encoded
splits in ``cache_dir`` (default ``workdir/data_cache``) as ``.npy`` files,
so a second start reads no text and tokenises nothing.

Each split is stored as one flat int32 array of token ids, int64 offsets and
int32 labels. Examples longer than ``max_length`` tokens are truncated (kept:
the first ``max_length`` tokens); how many is logged and returned by
:meth:`ClassificationDatasets.num_truncated`.

Batches (:class:`ClassificationBatcher`), numpy, ``b`` = this process's rows
of the global batch (:class:`~input_pipeline.hosts.HostShard`), ``T`` the
bucket boundary that holds the batch's longest (truncated) example:

* ``tokens``: int32 ``[b, T]``, padded with the tokenizer's ``pad_id``.
* ``lengths``: int32 ``[b]``, tokens of each row (0 on padding rows).
* ``labels``: int32 ``[b]``, in ``[0, num_classes)`` (0 on padding rows).
* ``example_index``: int32 ``[b]``, the example's index in its split
  (-1 on padding rows).

Training batches are planned per epoch from lengths alone, as the LM
batchers' are (:mod:`input_pipeline.lm`): the plan is a function of
(``shuffle_seed``, epoch), so every process plans the same global batches
(their rows concatenated in process order are the single-process batch) and
``train_batches(start_step=k)`` yields exactly what an uninterrupted run
yields from step ``k``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from input_pipeline import cache, corpora, errors, hosts, prefetch
from input_pipeline import tokenizers as tokenizers_lib
from input_pipeline.pipelines import resolve_config

Batch = dict[str, np.ndarray]

LABELS_FILE = 'labels.json'
SOURCES = ('labelled_text', 'tfds')
DEFAULT_BOUNDARIES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                      768, 1024)
# Bumped when the cached arrays' meaning changes.
CACHE_FORMAT = 1
# Label, one space or tab, text. The label may be empty (an error).
_LABELLED_LINE = re.compile(r'([^ \t]*)[ \t](.*)', re.DOTALL)


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
  c.bucket_boundaries = DEFAULT_BOUNDARIES  # Batch widths (up to max_length).
  c.shuffle_seed = 0  # Seeds each epoch's shuffle (with the epoch number).
  c.cache_dir = ''  # '': workdir/data_cache.
  c.prefetch = 2  # Batches prepared ahead on a thread (0: none).
  return c


# ----------------------------------------------------------- batching -------


def bucket_boundaries(max_length: int,
                      boundaries: Sequence[int] = ()) -> np.ndarray:
  """Sorted batch widths: the ``boundaries`` below ``max_length``, then it."""
  if max_length < 1:
    raise errors.ConfigError(f'max_length={max_length} must be >= 1.')
  chosen = sorted({int(b) for b in boundaries if 0 < b < max_length}
                  | {int(max_length)})
  return np.asarray(chosen, np.int64)


class ClassificationBatcher:
  """Length-bucketed batches of labelled examples.

  Args:
    ids: int32 flat tokens of the split.
    offsets: int64 ``[n + 1]``; example i is ``ids[offsets[i]:offsets[i+1]]``.
    labels: int32 ``[n]``.
    shard: this process's place.
    batch_size: global rows per batch.
    max_length: examples are cut to their first ``max_length`` tokens.
    boundaries: bucket boundaries (batch widths); ``max_length`` is added.
    pad_id: the id of padding tokens.
    training: plan shuffled, fixed-size epochs (:meth:`plan`); else one pass
      sorted by length whose last batch is filled with padding rows.
    seed: with the epoch, seeds the training shuffle.
  """

  def __init__(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
               shard: hosts.HostShard, *, batch_size: int, max_length: int,
               boundaries: Sequence[int] = DEFAULT_BOUNDARIES, pad_id: int = 0,
               training: bool = True, seed: int = 0):
    self.rows = shard.rows(batch_size,
                           'batch_size' if training else 'eval_batch_size')
    self.ids = ids
    self.starts = np.asarray(offsets[:-1], np.int64)
    self.lengths = np.minimum(np.diff(offsets), max_length)
    self.labels = np.asarray(labels, np.int32)
    if not len(self.lengths):
      raise errors.EmptyDataError('The split has no examples to batch.')
    self.boundaries = bucket_boundaries(max_length, boundaries)
    self.bucket_of = np.searchsorted(self.boundaries, self.lengths)
    self.batch_size = batch_size
    self.pad_id = pad_id
    self.training = training
    self.seed = seed
    if training and len(self.lengths) < batch_size:
      raise errors.ConfigError(
          f'batch_size={batch_size} is larger than the {len(self.lengths)} '
          'training examples; no batch can be made. Use a smaller '
          'batch_size.')

  def __len__(self) -> int:
    """Batches per epoch (every training epoch has as many)."""
    n, b = len(self.lengths), self.batch_size
    return n // b if self.training else -(-n // b)

  def plan(self, epoch: int = 0) -> np.ndarray:
    """The global batches of an epoch: int64 ``[len(self), batch_size]``
    example indices (-1: padding row).

    Training: the examples are shuffled (seed, epoch), the last
    ``n % batch_size`` of the shuffle are left out of this epoch (so which
    ones varies and no length is favoured), the rest are grouped by bucket
    (random order within a bucket) and cut into batches, and the batches are
    shuffled. Evaluation: the examples sorted by length (ties by index), the
    last batch filled with -1.
    """
    n, b = len(self.lengths), self.batch_size
    if not self.training:
      order = np.argsort(self.lengths, kind='stable')
      padded = np.full(len(self) * b, -1, np.int64)
      padded[:n] = order
      return padded.reshape(-1, b)
    rng = np.random.default_rng([self.seed, epoch])
    order = rng.permutation(n)[:n - n % b]
    order = order[np.argsort(self.bucket_of[order], kind='stable')]
    batches = order.reshape(-1, b)
    return batches[rng.permutation(len(batches))]

  def width(self, planned: np.ndarray) -> int:
    """The bucket boundary that holds the longest example of a batch."""
    real = planned[planned >= 0]
    longest = int(self.lengths[real].max()) if len(real) else 1
    return int(self.boundaries[np.searchsorted(self.boundaries, longest)])

  def batch(self, planned: np.ndarray) -> Batch:
    """Materialises this process's rows of one planned global batch."""
    return _gather(self.ids, self.starts, self.lengths, self.labels,
                   planned[self.rows], self.width(planned), self.pad_id)

  def iterate(self, start_step: int = 0,
              num_epochs: int | None = None) -> Iterator[Batch]:
    """Yields local batches from global step ``start_step`` on.

    Training batchers repeat forever by default; evaluation ones make one
    pass. Skipped epochs are neither planned nor materialised.
    """
    if num_epochs is None and not self.training:
      num_epochs = 1
    steps = len(self)
    epoch, skip = divmod(start_step, steps)
    while num_epochs is None or epoch < num_epochs:
      for planned in self.plan(epoch)[skip:]:
        yield self.batch(planned)
      epoch, skip = epoch + 1, 0


def _gather(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
            labels: np.ndarray, rows: np.ndarray, width: int,
            pad_id: int) -> Batch:
  """The batch of examples ``rows`` (-1: padding), ``width`` tokens wide."""
  real = rows >= 0
  index = np.where(real, rows, 0)
  row_lengths = np.where(real, lengths[index], 0)
  positions = np.arange(width)
  mask = positions < row_lengths[:, None]
  tokens = np.full((len(rows), width), pad_id, np.int32)
  tokens[mask] = ids[(starts[index][:, None] + positions)[mask]]
  return {'tokens': tokens, 'lengths': row_lengths.astype(np.int32),
          'labels': np.where(real, labels[index], 0).astype(np.int32),
          'example_index': rows.astype(np.int32)}


def encode_texts(tokenizer: tokenizers_lib.Tokenizer, lines: Sequence[str],
                 *, max_length: int,
                 boundaries: Sequence[int] = DEFAULT_BOUNDARIES,
                 lowercase: bool = False, add_eos: bool = False) -> Batch:
  """Raw texts -> one padded batch (for inference, e.g. ``classify.py``).

  The texts are encoded as the training data was (same ``lowercase`` /
  ``add_eos``), truncated to ``max_length`` tokens (counted in the log) and
  padded to the bucket boundary of the longest. ``labels`` are 0 and
  ``example_index`` is the position in ``lines``.

  Raises:
    errors.EmptyDataError: no lines, or a blank line (nothing to classify).
  """
  lines = list(lines)
  if not lines:
    raise errors.EmptyDataError('No text to encode.')
  for number, line in enumerate(lines, 1):
    if not line.strip():
      raise errors.EmptyDataError(
          f'Input line {number} is blank: there is nothing to classify. '
          'Remove blank lines from the input.')
  texts = [line.lower() for line in lines] if lowercase else lines
  ids, offsets = tokenizer.encode_lines(texts, add_eos=add_eos)
  lengths = np.diff(offsets)
  _log_truncation(lengths, max_length, 'input')
  lengths = np.minimum(lengths, max_length)
  chosen = bucket_boundaries(max_length, boundaries)
  width = int(chosen[np.searchsorted(chosen, max(1, int(lengths.max())))])
  return _gather(ids, offsets[:-1], lengths, np.zeros(len(lines), np.int32),
                 np.arange(len(lines)), width, tokenizer.pad_id)


def _log_truncation(lengths: np.ndarray, max_length: int, what: str) -> int:
  truncated = int((lengths > max_length).sum())
  if truncated:
    logging.warning(
        'Truncated %d of %d %s examples (%.2f%%) to max_length=%d tokens; '
        'the longest has %d. Raise the data config max_length to keep more.',
        truncated, len(lengths), what, 100 * truncated / len(lengths),
        max_length, int(lengths.max()))
  return truncated


# ------------------------------------------------------------ datasets ------


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

  def batcher(self, split: str,
              training: bool | None = None) -> ClassificationBatcher:
    """The batcher of ``split``: training (shuffled epochs of ``batch_size``
    rows) for ``'train'``, else one pass of ``eval_batch_size`` rows
    (``training`` overrides, e.g. ``False`` to evaluate on train)."""
    data, cfg = self._split(split), self.config
    if training is None:
      training = split == 'train'
    return ClassificationBatcher(
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
    (:func:`encode_texts`)."""
    cfg = self.config
    return encode_texts(self.tokenizer, lines, max_length=cfg['max_length'],
                        boundaries=cfg['bucket_boundaries'],
                        lowercase=cfg['lowercase'], add_eos=cfg['add_eos'])


# ------------------------------------------------------------- sources ------


@dataclasses.dataclass
class _RawSplit:
  """A split as read: texts, label ids or strings, where each comes from."""

  texts: list[str]
  labels: list[str] | np.ndarray
  source_index: np.ndarray
  num_skipped: int
  where: Callable[[int], str]  # Position -> 'file, line N' for messages.


class _LabelledTextSource:
  """``LABEL TEXT`` files in ``data_dir``."""

  def __init__(self, cfg: Mapping[str, Any]):
    self.split_files = corpora.TextFilesCorpus(cfg['data_dir'], cfg['files'],
                                         cfg['encoding_errors'],
                                         source='labelled_text')
    self.encoding_errors = cfg['encoding_errors']

  @property
  def splits(self) -> tuple[str, ...]:
    return self.split_files.splits

  def path(self, split: str) -> Path:
    return self.split_files.path(split)

  def fingerprint(self, split: str) -> str:
    return corpora.fingerprint_of('labelled_text', corpora.file_fingerprint(
        self.path(split)), self.encoding_errors)

  def label_names(self) -> list[str] | None:
    return None  # From the train split's labels.

  def read(self, split: str) -> _RawSplit:
    path = self.path(split)
    labels, texts, numbers = [], [], []
    skipped = 0
    for number, line in enumerate(
        corpora.read_text_file(path, self.encoding_errors), 1):
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
    return _RawSplit(texts, labels, np.asarray(numbers, np.int64), skipped,
                     lambda number: f'{path}, line {number}')


class _TfdsSource:
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
    self.builder = corpora.tfds_builder(self.name, self.data_dir)
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
    return corpora.fingerprint_of(
        'tfds_classification', self.name, str(self.builder.version),
        self.split_map[split], self.text_key, self.label_key,
        str(self.builder.data_dir), self.encoding_errors)

  def label_names(self) -> list[str] | None:
    return self.names

  def read(self, split: str) -> _RawSplit:
    tfds = corpora._import_tfds()  # pylint: disable=protected-access
    tfds_split = self.split_map[split]
    dataset = corpora.tfds_read(self.builder, tfds_split, self.data_dir)
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
      text = corpora.decode_utf8(example[self.text_key],
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
    return _RawSplit(texts, np.asarray(labels, np.int32),
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


# --------------------------------------------------------------- cache ------


def _cache_entry(cache_dir: Path, name: str, key: Mapping[str, Any]) -> Path:
  digest = hashlib.sha256(json.dumps(
      {'format': CACHE_FORMAT, **key}, sort_keys=True,
      default=str).encode()).hexdigest()[:20]
  return cache_dir / f'{name}-{digest}'


def _load_or_build(cache_dir: Path, name: str, key: Mapping[str, Any],
                   build: Callable[[], tuple[dict[str, np.ndarray],
                                             dict[str, Any]]]
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """The cached (arrays, metadata) for ``key``, built and cached if new.

  An entry is a directory of ``.npy`` files and ``meta.json``, written in a
  temporary directory and renamed into place, so processes sharing the cache
  never see a partial entry. ``ids`` is memory-mapped.
  """
  path = _cache_entry(cache_dir, name, key)
  meta_path = path / 'meta.json'
  if meta_path.is_file():
    meta = json.loads(meta_path.read_text('utf-8'))
    arrays = {k: np.load(path / f'{k}.npy', allow_pickle=False,
                         mmap_mode='r' if k == 'ids' else None)
              for k in meta['arrays']}
    return arrays, meta['meta']
  arrays, meta = build()
  cache_dir.mkdir(parents=True, exist_ok=True)
  temporary = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f'.{path.name}.',
                                    suffix='.tmp'))
  try:
    temporary.chmod(0o755)  # mkdtemp's 0o700 would hide it from other users.
    for k, array in arrays.items():
      np.save(temporary / f'{k}.npy', array, allow_pickle=False)
    (temporary / 'meta.json').write_text(json.dumps(
        {'key': key, 'arrays': sorted(arrays), 'meta': meta}, indent=1,
        default=str), 'utf-8')
    try:
      os.rename(temporary, path)
    except OSError:
      if not meta_path.is_file():  # Not a concurrent writer's entry.
        raise
  finally:
    shutil.rmtree(temporary, ignore_errors=True)
  logging.info('Cached %s in %s', name, path)
  return arrays, meta


# ---------------------------------------------------- tokenizer, labels ------


def load_tokenizer(workdir: str | os.PathLike[str]
                   ) -> tokenizers_lib.Tokenizer:
  """The tokenizer saved in ``workdir/tokenizer/`` (by an LM or classifier
  run), e.g. to pass to :func:`get_classification_datasets` for transfer.

  Raises:
    errors.TokenizerNotFoundError: no tokenizer is saved there.
  """
  directory = Path(workdir) / tokenizers_lib.TOKENIZER_DIR
  saved = tokenizers_lib.load_saved(directory)
  if saved is None:
    raise errors.TokenizerNotFoundError(
        f'No tokenizer is saved in {directory} ({tokenizers_lib.METADATA_FILE} '
        'missing). Point at the workdir of a run that has started training.')
  return saved[0]


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


def _use_given_tokenizer(tokenizer: tokenizers_lib.Tokenizer,
                         workdir: str | os.PathLike[str]) -> None:
  """Saves a given tokenizer as the run's (checks it against a saved one)."""
  directory = Path(workdir) / tokenizers_lib.TOKENIZER_DIR
  saved = tokenizers_lib.load_saved(directory)
  if saved is not None:
    if saved[0].fingerprint() == tokenizer.fingerprint():
      return
    raise errors.VocabularyMismatchError(
        f'The tokenizer given for this run ({tokenizer.kind}, '
        f'{tokenizer.vocab_size} ids) differs from the one saved with it in '
        f'{directory} ({saved[0].kind}, {saved[0].vocab_size} ids); the '
        'saved model weights only fit the saved vocabulary. Give the '
        'tokenizer the run was started with, or start a new run in a fresh '
        'workdir.')
  tokenizers_lib.save(tokenizer, directory, {'spec': {'kind': tokenizer.kind},
                             'origin': 'given'})
  logging.info('Saved the given %s tokenizer (%d ids) in %s', tokenizer.kind,
               tokenizer.vocab_size, directory)


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
      :func:`load_tokenizer` on its workdir, for transfer learning; words it
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
  cfg = resolve_config(config, default_classification_config())
  cfg['bucket_boundaries'] = tuple(cfg['bucket_boundaries'])
  shard = hosts.resolve(process_index, process_count)
  shard.rows(cfg['batch_size'], 'batch_size')
  shard.rows(cfg['eval_batch_size'], 'eval_batch_size')
  bucket_boundaries(cfg['max_length'], cfg['bucket_boundaries'])
  if cfg['source'] == 'labelled_text':
    source: _LabelledTextSource | _TfdsSource = _LabelledTextSource(cfg)
  elif cfg['source'] == 'tfds':
    source = _TfdsSource(cfg)
  else:
    raise errors.ConfigError(
        f"source={cfg['source']!r} is unknown; use one of {list(SOURCES)}.")
  if 'train' not in source.splits:
    raise errors.ConfigError(
        f'The data config names no train split ({source.splits}); set '
        f"{'files' if cfg['source'] == 'labelled_text' else 'tfds_splits'}"
        '.train.')
  options = {'lowercase': bool(cfg['lowercase']),
             'add_eos': bool(cfg['add_eos'])}

  @functools.cache
  def read(split: str) -> _RawSplit:
    raw = source.read(split)
    if cfg['lowercase']:
      raw.texts = [text.lower() for text in raw.texts]
    return raw

  def fingerprint(split: str) -> str:
    return corpora.fingerprint_of(source.fingerprint(split),
                                  json.dumps(options, sort_keys=True))

  tokenizer = _run_tokenizer(cfg, workdir, tokenizer,
                             lambda: read('train').texts, fingerprint('train'))
  cache_dir = Path(cfg['cache_dir'] or Path(workdir) / 'data_cache')
  key = {'tokenizer': tokenizer.fingerprint(), **options}
  arrays, meta = _load_or_build(
      cache_dir, 'classification-train',
      {**key, 'source': fingerprint('train'),
       'label_names': source.label_names()},
      lambda: _encode(tokenizer, read('train'), source.label_names(), options))
  label_names = list(meta['label_names'])
  splits = {'train': _split(arrays, meta)}
  for split in source.splits:
    if split != 'train':
      arrays, meta = _load_or_build(
          cache_dir, f'classification-{split}',
          {**key, 'source': fingerprint(split), 'label_names': label_names},
          lambda split=split: _encode(tokenizer, read(split), label_names,
                                      options))
      splits[split] = _split(arrays, meta)
  read.cache_clear()  # The raw text is no longer needed.
  _save_label_names(workdir, label_names)
  for split, data in splits.items():
    data.num_truncated = _log_truncation(data.lengths, cfg['max_length'],
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
    _use_given_tokenizer(given, workdir)
    return given
  saved = tokenizers_lib.load_saved(Path(workdir) /
                                    tokenizers_lib.TOKENIZER_DIR)
  if saved is not None and saved[1].get('origin') == 'given':
    logging.info('Using the %s tokenizer given when this run started.',
                 saved[0].kind)
    return saved[0]
  # As the LM pipeline: every process builds the same tokenizer (it is
  # deterministic) or loads the saved one; saves are atomic.
  return tokenizers_lib.get_tokenizer(tokenizers_lib.spec_of(cfg), workdir, train_texts,
                                      data_fingerprint)


def _encode(tokenizer: tokenizers_lib.Tokenizer, raw: _RawSplit,
            label_names: list[str] | None, options: Mapping[str, bool]
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Encodes a raw split: (arrays, metadata) for the cache."""
  if isinstance(raw.labels, np.ndarray):  # TFDS: already ids.
    labels = raw.labels
  else:
    if label_names is None:  # The train split defines the labels.
      label_names = sorted_label_names(raw.labels)
    label_id = {name: i for i, name in enumerate(label_names)}
    labels = np.empty(len(raw.labels), np.int32)
    for k, label in enumerate(raw.labels):
      if label not in label_id:
        raise errors.UnknownLabelError(
            f'{raw.where(int(raw.source_index[k]))}: label {label!r} does '
            f'not occur in the train split, whose labels are {label_names}. '
            'Fix the label, or remove the line.')
      labels[k] = label_id[label]
  ids, offsets = tokenizer.encode_lines(raw.texts, add_eos=options['add_eos'])
  empty = np.flatnonzero(np.diff(offsets) == 0)
  if len(empty):
    raise errors.EmptyDataError(
        f'{raw.where(int(raw.source_index[empty[0]]))}: the text encodes to '
        f'no tokens ({len(empty)} such examples). Remove it, or set the data '
        'config add_eos=True.')
  return ({'ids': ids, 'offsets': offsets, 'labels': labels,
           'source_index': raw.source_index},
          {'label_names': label_names, 'num_skipped': raw.num_skipped})


def _split(arrays: Mapping[str, np.ndarray],
           meta: Mapping[str, Any]) -> ClassificationSplit:
  return ClassificationSplit(arrays['ids'], arrays['offsets'],
                             arrays['labels'], arrays['source_index'],
                             int(meta['num_skipped']))
