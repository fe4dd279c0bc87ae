"""Translation batching: length-bucketed batches of sentence pairs.

Pairs are encoded with one joint SentencePiece model: the source as
``[x_1, ..., x_m, eos]``, the target as ``target_input = [bos, y_1, ..., y_n]``
and ``target_output = [y_1, ..., y_n, eos]`` (teacher forcing). Pairs whose
source or target exceeds ``max_length`` tokens (with EOS) are dropped by
:func:`length_filter`, which counts and logs them.

Batching (:class:`TranslationBatcher`) follows the Flax WMT example: each pair
goes to the smallest bucket boundary that holds both its sides; a bucket of
length ``L`` makes global batches of ``max(m, tokens_per_batch // L // m * m)``
pairs (``m = batch_size_multiple``), so every batch holds about
``tokens_per_batch`` tokens per side and there is one array shape per bucket.
Like the LM batchers, the epoch's global batches are planned from lengths with
numpy (seeded by ``seed`` and the epoch), so the hosts' batches union to the
single-host batch and ``iterate(start_step)`` resumes exactly.

Batch keys (``b`` local rows = global bucket batch size / process_count, ``L``
the bucket length):

* ``source``, ``target_input``, ``target_output``: int32 ``[b, L]``, padded
  with ``pad_id`` (0).
* ``source_mask``, ``target_mask``: float32 ``[b, L]``, 1 on tokens.
* ``example_index``: int32 ``[b]``, index of the pair in the (filtered) split;
  -1 for the empty rows that fill the last batch of a bucket in evaluation.
  ``TranslationDatasets.eval_references[example_index]`` is the raw target
  string for BLEU.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from input_pipeline import errors
from input_pipeline.hosts import HostShard
from input_pipeline.lm import Batch, planned_steps, round_up
from lstm_flax.tokenizer import bucket_widths

DEFAULT_BOUNDARIES = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


class Spans(NamedTuple):
  """Sentences in a flat array as (start, length) pairs: unlike offsets,
  they can name any subset of the sentences (the length-filtered pairs) of a
  memory-mapped array without copying it."""

  starts: np.ndarray
  lengths: np.ndarray


def _spans(offsets: np.ndarray | Spans) -> tuple[np.ndarray, np.ndarray]:
  if isinstance(offsets, Spans):  # Lengths stay int32 (memory per pair).
    return np.asarray(offsets.starts, np.int64), np.asarray(offsets.lengths)
  offsets = np.asarray(offsets, np.int64)
  return offsets[:-1], np.diff(offsets)


def length_filter(source_lengths: np.ndarray, target_lengths: np.ndarray,
                  max_length: int, what: str) -> np.ndarray:
  """Indices of pairs whose sides both have at most ``max_length`` tokens.

  Logs how many pairs were dropped (``what`` names the split in the log).
  ``max_length <= 0`` keeps everything.
  """
  keep = length_mask(source_lengths, target_lengths, max_length, what)
  if keep is None:
    return np.arange(len(source_lengths))
  return np.flatnonzero(keep)


def length_mask(source_lengths: np.ndarray, target_lengths: np.ndarray,
                max_length: int, what: str) -> np.ndarray | None:
  """As :func:`length_filter`, as a boolean mask; ``None`` if every pair
  is kept (no array of the size of the split is made then)."""
  if max_length <= 0:
    return None
  keep = (source_lengths <= max_length) & (target_lengths <= max_length)
  dropped = len(keep) - int(np.count_nonzero(keep))
  if not dropped:
    return None
  if dropped:
    logging.info(
        'Dropped %d of %d %s pairs (%.2f%%) with more than max_length=%d '
        'tokens (source with EOS, or target with BOS/EOS).', dropped,
        len(keep), what, 100 * dropped / max(1, len(keep)), max_length)
  return keep


def bucket_boundaries(max_length: int,
                      boundaries: Sequence[int] = ()) -> np.ndarray:
  """Sorted bucket lengths up to and including ``max_length``
  (``boundaries`` or :data:`DEFAULT_BOUNDARIES`)."""
  return bucket_widths(max_length, tuple(boundaries) or DEFAULT_BOUNDARIES)


class TranslationBatcher:
  """Token-budget bucketed batches of (source, target) pairs.

  Args:
    source_ids, source_offsets: flat source tokens (each with EOS; any array
      that slices, e.g. a memory map) and offsets ``[num_pairs + 1]`` or
      :class:`Spans` of the pairs.
    target_ids, target_offsets: the same for targets (each with EOS).
    shard: this host's place.
    bos_id, pad_id: special ids.
    tokens_per_batch: global token budget per batch and side.
    max_length: longest pair (in tokens, source with EOS / target with
      BOS or EOS) in the data; the last bucket boundary.
    batch_size_multiple: each bucket batch size is a multiple of it (use the
      number of devices); must be divisible by the number of processes.
    training: shuffle each epoch and drop incomplete bucket batches; else one
      ordered pass in which incomplete batches are filled with empty rows.
  """

  def __init__(self, source_ids: np.ndarray,
               source_offsets: np.ndarray | Spans,
               target_ids: np.ndarray, target_offsets: np.ndarray | Spans,
               shard: HostShard, *, bos_id: int, pad_id: int,
               tokens_per_batch: int, max_length: int,
               batch_size_multiple: int = 8, training: bool = True,
               seed: int = 0, boundaries: Sequence[int] = ()):
    self.source_ids, self.target_ids = source_ids, target_ids
    self.source_starts, self.source_lengths = _spans(source_offsets)
    self.target_starts, self.target_lengths = _spans(target_offsets)
    if not len(self.source_lengths):
      raise errors.EmptyDataError('No sentence pairs left to batch.')
    longest = int(np.maximum(self.source_lengths, self.target_lengths).max())
    if longest > max_length:
      raise errors.ConfigError(
          f'A pair has {longest} tokens, more than max_length={max_length}; '
          'filter the pairs with length_filter first.')
    self.boundaries = bucket_boundaries(max_length, boundaries)
    # Every bucket batch size is a multiple of batch_size_multiple.
    shard.rows(batch_size_multiple, 'batch_size_multiple')
    self.bucket_batch_sizes = np.maximum(
        batch_size_multiple,
        tokens_per_batch // self.boundaries // batch_size_multiple
        * batch_size_multiple)
    self.bucket_rows = [shard.rows(int(size), 'bucket batch size')
                        for size in self.bucket_batch_sizes]
    self.bucket_of = np.searchsorted(
        self.boundaries, np.maximum(self.source_lengths, self.target_lengths))
    self.bos_id, self.pad_id = bos_id, pad_id
    self.training, self.seed = training, seed

  def plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """The epoch's global batches: (bucket, int64 pair indices; -1 = empty)."""
    batches: list[tuple[int, np.ndarray]] = []
    if self.training:
      # Pairs in shuffled order fill their bucket's queue; a batch is made
      # when a queue is full. Vectorised: bucket b's k-th batch is its
      # members k*size .. (k+1)*size - 1 in shuffled order, made at the
      # position of its last member; incomplete queues are dropped.
      order = np.random.default_rng([self.seed, epoch]).permutation(
          len(self.bucket_of))
      buckets = self.bucket_of[order]
      made_at, members = [], []
      for bucket, size in enumerate(self.bucket_batch_sizes.tolist()):
        positions = np.flatnonzero(buckets == bucket)
        full = len(positions) // size * size
        if not full:
          continue
        groups = positions[:full].reshape(-1, size)
        made_at.append(groups[:, -1])
        members.extend((bucket, order[g]) for g in groups)
      if not members:
        return batches
      return [members[i] for i in np.argsort(np.concatenate(made_at))]
    for bucket, size in enumerate(self.bucket_batch_sizes.tolist()):
      members = np.flatnonzero(self.bucket_of == bucket)
      for begin in range(0, len(members), size):
        chunk = members[begin:begin + size]
        batches.append((bucket, np.concatenate(
            [chunk, np.full(size - len(chunk), -1, np.int64)])))
    return batches

  def batch(self, bucket: int, planned: np.ndarray) -> Batch:
    """Materialises this host's rows of one planned global batch."""
    local = planned[self.bucket_rows[bucket]]
    shape = (len(local), int(self.boundaries[bucket]))
    source = np.full(shape, self.pad_id, np.int32)
    target_input = np.full(shape, self.pad_id, np.int32)
    target_output = np.full(shape, self.pad_id, np.int32)
    source_mask = np.zeros(shape, np.float32)
    target_mask = np.zeros(shape, np.float32)
    for r, index in enumerate(local.tolist()):
      if index < 0:
        continue
      m = self.source_lengths[index]
      start = self.source_starts[index]
      source[r, :m] = self.source_ids[start:start + m]
      source_mask[r, :m] = 1.0
      n = self.target_lengths[index]
      start = self.target_starts[index]
      target_output[r, :n] = self.target_ids[start:start + n]
      target_input[r, 0] = self.bos_id
      target_input[r, 1:n] = self.target_ids[start:start + n - 1]
      target_mask[r, :n] = 1.0
    return {'source': source, 'target_input': target_input,
            'target_output': target_output, 'source_mask': source_mask,
            'target_mask': target_mask,
            'example_index': local.astype(np.int32)}

  def iterate(self, start_step: int = 0,
              num_epochs: int | None = None) -> Iterator[Batch]:
    """Yields local batches from global step ``start_step`` on.

    Training batchers repeat forever by default; evaluation ones make one
    pass (``num_epochs`` overrides).
    """
    if num_epochs is None and not self.training:
      num_epochs = 1
    for _, (bucket, planned) in planned_steps(
        self.plan, start_step, num_epochs,
        empty_message='No bucket fills one batch: tokens_per_batch / '
        'batch_size_multiple ask for more pairs than the data has. Use a '
        'smaller tokens_per_batch or batch_size_multiple.'):
      yield self.batch(bucket, planned)


def max_length_of(lengths: np.ndarray, multiple: int = 16) -> int:
  """The longest length rounded up to ``multiple``."""
  return int(round_up(int(lengths.max()), multiple))
