"""Language-model batching: token streams for truncated BPTT, and sentences.

Both batchers plan each epoch's global batches from token counts alone (with
numpy, from ``seed`` and the epoch number), then materialise only this host's
rows. Hence

* every host plans the same global batches, and the union of the hosts'
  batches (concatenated in process order) is the single-host batch;
* the same seed gives the same batches, and ``iterate(start_step=k)`` yields
  exactly what an uninterrupted run yields after ``k`` batches, by re-planning
  the skipped epochs (cheap arithmetic on lengths) without reading or
  gathering any skipped token.

The plans are done in numpy rather than with ``tf.data`` shuffling and
bucketing because those give neither property (their per-host sharding
changes the batches with the number of hosts, and resuming means replaying the
skipped data). ``tf.data`` only reads TFDS sources; batches are prefetched
by a Python thread (:mod:`input_pipeline.prefetch`). The token ids are
memory-mapped cache shards: a batch slices only its rows' tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from input_pipeline import errors
from input_pipeline.hosts import HostShard

Batch = dict[str, np.ndarray]
T = TypeVar('T')


def round_up(value: int | np.ndarray, multiple: int) -> int | np.ndarray:
  return -(-value // multiple) * multiple


def planned_steps(plan: Callable[[int], Sequence[T]], start_step: int = 0,
                  num_epochs: int | None = None, *, fixed_epochs: bool = False,
                  empty_message: str = 'An epoch has no batch.'
                  ) -> Iterator[tuple[int, T]]:
  """Yields ``(epoch, item)`` for the items of ``plan(epoch)``, epoch after
  epoch, from global step ``start_step`` on.

  The skipped epochs are planned (cheap) but not materialised; with
  ``fixed_epochs`` (every epoch has as many items as epoch 0) they are not
  even planned. ``num_epochs=None`` repeats forever.

  Raises:
    errors.ConfigError: (``empty_message``) an epoch plans no batch and
      ``num_epochs`` is ``None``, so iteration would never yield.
  """
  epoch, skip = 0, start_step
  while num_epochs is None or epoch < num_epochs:
    items = plan(epoch)
    if not len(items) and num_epochs is None:
      raise errors.ConfigError(empty_message)
    if skip >= len(items):
      skipped = skip // len(items) if fixed_epochs and len(items) else 1
      if num_epochs is not None:
        skipped = min(skipped, num_epochs - epoch)
      epoch, skip = epoch + skipped, skip - skipped * len(items)
      continue
    for item in items[skip:]:
      yield epoch, item
    epoch, skip = epoch + 1, 0


def _view(ids, start: int, stop: int):
  """``ids[start:stop]`` (clipped) without copying."""
  if hasattr(ids, 'view') and hasattr(ids, 'parts'):  # cache.ConcatArray
    return ids.view(start, stop)
  return ids[max(start, 0):max(min(stop, len(ids)), 0)]


class StreamBatcher:
  """Truncated-BPTT batches over B parallel streams (Zaremba et al.; AWD-LSTM).

  The split (all lines, each ending in ``<eos>``) is cut into ``batch_size``
  streams; a batch is the next window of each stream, so the LSTM state of
  row ``r`` at the end of one batch is the right initial state for row ``r``
  of the next. Each epoch restarts the streams at position 0.

  * Training (``drop_remainder``): as Zaremba et al. / AWD-LSTM, ``batch_size``
    disjoint streams of ``L = len(ids) // batch_size`` tokens (the last
    ``len(ids) % batch_size`` tokens are dropped); the ``L - 1`` positions of
    a stream with a next token are split into windows and the last, shorter
    window of an epoch is dropped.
  * Evaluation (not ``drop_remainder``): the targets ``ids[1:]`` are cut into
    ``batch_size`` streams of ``S = ceil((len(ids) - 1) / batch_size)``
    positions (the last ones padded and masked) and the inputs are the token
    before each target, so every token but the first is scored exactly once;
    the last window is padded and masked.

  Batches (``b = batch_size / process_count`` local rows, ``t`` the window):

  * ``inputs``: int32 ``[b, t]``, tokens ``s .. s+t-1`` of each stream.
  * ``targets``: int32 ``[b, t]``, tokens ``s+1 .. s+t`` (the next token).
  * ``mask``: float32 ``[b, t]``, 1 on real positions, 0 on padding.

  With fixed windows ``t = seq_len``. With ``random_window`` (AWD-LSTM) each
  window's length is drawn as in AWD-LSTM: ``seq_len`` (or ``seq_len / 2``
  with probability ``short_window_prob``) plus normal noise with std
  ``window_std``, at least ``min_window`` and at most
  ``seq_len + max_window_extra`` tokens; the arrays are padded to a multiple
  of ``pad_to_multiple`` to bound recompilation. ``mask.sum(1)`` is the window
  length (AWD-LSTM scales the learning rate by ``length / seq_len``).
  """

  def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int,
               shard: HostShard, *, drop_remainder: bool = True,
               random_window: bool = False, seed: int = 0,
               window_std: float = 5.0, short_window_prob: float = 0.05,
               min_window: int = 5, max_window_extra: int = 20,
               pad_to_multiple: int = 8):
    if seq_len < 1:
      raise errors.ConfigError(f'seq_len={seq_len} must be >= 1.')
    self.rows = shard.rows(batch_size)
    self.batch_size = batch_size
    self.seq_len = seq_len
    if not isinstance(ids, np.ndarray) and not hasattr(ids, 'parts'):
      ids = np.asarray(ids, np.int32)
    elif isinstance(ids, np.ndarray) and ids.dtype != np.int32:
      ids = ids.astype(np.int32)
    # Stream r is ids[r * stride : r * stride + stream_length + 1]; rows are
    # sliced from ids (a memory map: only the pages of this host's rows are
    # read) when a batch is made, never copied whole.
    self.ids = ids
    if drop_remainder:
      # stream_length: positions of a stream that have a next token.
      self.stream_length = len(ids) // batch_size - 1
      if self.stream_length < 1:
        raise errors.ConfigError(
            f'The split has {len(ids)} tokens: too few for batch_size='
            f'{batch_size} streams of at least 2 tokens. Use a smaller batch '
            'size or more data.')
      self.stride = self.stream_length + 1
      valid = np.full(batch_size, self.stream_length, np.int64)
    else:
      num_targets = len(ids) - 1
      if num_targets < 1:
        raise errors.EmptyDataError(
            f'The split has {len(ids)} token(s): nothing to evaluate.')
      self.stream_length = -(-num_targets // batch_size)
      # Stream r: ids[r * S .. (r + 1) * S] (S + 1 tokens, the last one the
      # first of stream r + 1), zero-padded past the end of the split.
      self.stride = self.stream_length
      valid = np.clip(num_targets - np.arange(batch_size) * self.stream_length,
                      0, self.stream_length)
    # This host's stream indices and their valid positions.
    self.local_rows = np.arange(batch_size)[self.rows]
    self.local_valid = valid[self.rows]
    # Each local stream as a view of ids (no copy; a memory map's pages are
    # read when a batch slices them).
    self.local_streams = [
        _view(ids, r * self.stride, r * self.stride + self.stream_length + 1)
        for r in self.local_rows.tolist()]
    self.drop_remainder = drop_remainder
    self.random_window = random_window
    self.seed = seed
    self.window_std = window_std
    self.short_window_prob = short_window_prob
    self.min_window = min_window
    self.max_window = seq_len + max_window_extra
    self.pad_to_multiple = pad_to_multiple
    if not random_window and not self.windows(0).shape[0]:
      raise errors.ConfigError(
          f'Streams of {self.stream_length + 1} tokens hold no full window '
          f'of seq_len={seq_len}; use a smaller seq_len or batch_size.')

  def windows(self, epoch: int) -> np.ndarray:
    """int64 ``[num_batches, 2]``: (start, length) of each window of an epoch."""
    usable = self.stream_length
    if not self.random_window:
      count = usable // self.seq_len if self.drop_remainder else math.ceil(
          usable / self.seq_len)
      starts = np.arange(count, dtype=np.int64) * self.seq_len
      return np.stack([starts, np.minimum(self.seq_len, usable - starts)], 1)
    rng = np.random.default_rng([self.seed, epoch])
    draws = usable // self.min_window + 1
    base = np.where(rng.random(draws) < self.short_window_prob,
                    self.seq_len / 2, self.seq_len)
    lengths = (base + self.window_std * rng.standard_normal(draws)).astype(
        np.int64)
    lengths = np.clip(lengths, self.min_window, self.max_window)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keep = starts < usable
    starts, lengths = starts[keep], lengths[keep]
    lengths[-1] = min(lengths[-1], usable - starts[-1])
    return np.stack([starts, lengths], 1)

  def batch(self, start: int, length: int) -> Batch:
    width = self.seq_len if not self.random_window else min(
        round_up(length, self.pad_to_multiple), round_up(
            self.max_window, self.pad_to_multiple))
    rows = len(self.local_rows)
    tokens = np.zeros((rows, length + 1), np.int32)
    for i, stream in enumerate(self.local_streams):
      window = stream[start:start + length + 1]
      tokens[i, :len(window)] = window
    inputs = np.zeros((rows, width), np.int32)
    targets = np.zeros((rows, width), np.int32)
    mask = np.zeros((rows, width), np.float32)
    inputs[:, :length] = tokens[:, :length]
    targets[:, :length] = tokens[:, 1:]
    mask[:, :length] = np.arange(start, start + length) < self.local_valid[
        :, None]
    return {'inputs': inputs, 'targets': targets, 'mask': mask}

  def iterate(self, start_step: int = 0,
              num_epochs: int | None = None) -> Iterator[Batch]:
    """Yields local batches from global step ``start_step`` on.

    Args:
      start_step: number of batches already taken (resumption).
      num_epochs: passes over the split (``None``: forever).
    """
    for _, (start, length) in planned_steps(
        self.windows, start_step, num_epochs,
        fixed_epochs=not self.random_window):
      yield self.batch(int(start), int(length))


class SentenceBatcher:
  """lm1b-style batches of whole sentences, length-bucketed or packed.

  Each sentence (a line plus ``<eos>``) has inputs ``[bos, w_1, ...,
  w_{n-1}]`` and targets ``[w_1, ..., w_n]`` (``w_n`` = eos), so every token,
  the first included, is predicted. In training (``drop_remainder``) a
  sentence is truncated to ``max_length`` tokens; in evaluation none is
  truncated (the row length ``L`` grows to the longest sentence, rounded up to
  ``pad_to_multiple``), so every token is scored exactly once.

  Per epoch the sentences are shuffled (``shuffle``; seeded by ``seed`` and
  the epoch). Then either

  * bucketed (``packing=False``): pools of ``pool_batches`` batches are sorted
    by length and cut into batches, and the batches shuffled, so sentences of a
    batch have similar lengths. Each batch is padded to its longest sentence
    rounded up to ``pad_to_multiple`` (at most ``row_length``). Keys
    ``inputs``, ``targets`` (int32 ``[b, L]``), ``mask`` (float32 ``[b, L]``).
  * packed (``packing=True``): sentences are concatenated greedily, in
    shuffled order, into rows of exactly ``row_length`` tokens. Keys
    ``inputs``, ``targets``, ``mask`` as above with ``L = row_length``, plus
    ``segment_ids`` (int32 ``[b, L]``: 1, 2, ... per sentence in the row, 0 on
    padding; attention / state resets at segment changes) and ``positions``
    (int32 ``[b, L]``: position within the sentence).

  ``b = batch_size / process_count``. A final incomplete batch is dropped when
  ``drop_remainder`` (training), else filled with empty, fully masked rows.
  """

  def __init__(self, ids: np.ndarray, offsets: np.ndarray, batch_size: int,
               max_length: int, shard: HostShard, *, bos_id: int,
               packing: bool = False, shuffle: bool = True, seed: int = 0,
               drop_remainder: bool = True, pad_to_multiple: int = 8,
               pool_batches: int = 100):
    self.rows = shard.rows(batch_size)
    if max_length < 2:
      raise errors.ConfigError(f'max_length={max_length} must be >= 2.')
    self.ids = ids
    self.starts = offsets[:-1]
    self.lengths = np.diff(offsets)
    if not len(self.lengths):
      raise errors.EmptyDataError('The split has no sentences.')
    # The longest row: max_length in training, else the longest sentence.
    self.row_length = max_length if drop_remainder else max(
        max_length, int(round_up(int(self.lengths.max()), pad_to_multiple)))
    self.lengths = np.minimum(self.lengths, self.row_length)
    self.batch_size = batch_size
    self.bos_id = bos_id
    self.packing = packing
    self.shuffle = shuffle
    self.seed = seed
    self.drop_remainder = drop_remainder
    self.pad_to_multiple = pad_to_multiple
    self.pool_batches = pool_batches

  def _order(self, epoch: int) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng([self.seed, epoch])
    n = len(self.lengths)
    return (rng.permutation(n) if self.shuffle else np.arange(n)), rng

  def plan(self, epoch: int) -> list[np.ndarray]:
    """The global batches of an epoch, from lengths only.

    Returns:
      Bucketed: per batch an int64 ``[batch_size]`` array of sentence
      indices (-1: empty row). Packed: per batch an int64
      ``[batch_size, 2]`` array of (first, end) positions into the epoch's
      sentence order (``self._order``) for each row (first == end: empty).
    """
    order, rng = self._order(epoch)
    b = self.batch_size
    if self.packing:
      row_bounds = self._pack(self.lengths[order])
      rows = len(row_bounds)
      count = rows // b if self.drop_remainder else math.ceil(rows / b)
      padded = np.full((count * b, 2), len(order), np.int64)
      usable = min(rows, count * b)
      padded[:usable] = row_bounds[:usable]
      return list(padded.reshape(count, b, 2))
    pool = b * self.pool_batches
    batches = []
    for begin in range(0, len(order), pool):
      chunk = order[begin:begin + pool]
      chunk = chunk[np.argsort(self.lengths[chunk], kind='stable')]
      batches.extend(chunk[i:i + b] for i in range(0, len(chunk), b))
    last = batches[-1] if len(batches[-1]) < b else None
    if last is not None:
      batches.pop()
    if self.shuffle:
      batches = [batches[i] for i in rng.permutation(len(batches))]
    if last is not None and not self.drop_remainder:
      batches.append(np.concatenate([last, np.full(b - len(last), -1)]))
    return batches

  def _pack(self, lengths: np.ndarray) -> np.ndarray:
    """Greedy packing of consecutive sentences: int64 [rows, 2] (first, end)."""
    bounds = []
    first, used = 0, 0
    for k, length in enumerate(lengths.tolist()):
      if used + length > self.row_length:
        bounds.append((first, k))
        first, used = k, 0
      used += length
    bounds.append((first, len(lengths)))
    return np.asarray(bounds, np.int64)

  def _sentence(self, index: int) -> np.ndarray:
    start = self.starts[index]
    return self.ids[start:start + self.lengths[index]]

  def batch(self, epoch_order: np.ndarray, planned: np.ndarray) -> Batch:
    """Materialises this host's rows of one planned global batch."""
    local = planned[self.rows]
    if self.packing:
      width = self.row_length
      # Per row, the sentences (indices into self.lengths) packed into it.
      rows = [epoch_order[first:end] for first, end in local.tolist()]
    else:
      real = planned[planned >= 0]
      longest = int(self.lengths[real].max()) if len(real) else 1
      width = min(round_up(longest, self.pad_to_multiple), self.row_length)
      rows = [local[r:r + 1] if local[r] >= 0 else local[:0]
              for r in range(len(local))]
    shape = (len(local), width)
    batch = {key: np.zeros(shape, np.float32 if key == 'mask' else np.int32)
             for key in ('inputs', 'targets', 'mask', 'segment_ids',
                         'positions')}
    for r, sentences in enumerate(rows):
      at = 0
      for segment, index in enumerate(sentences.tolist(), 1):
        tokens = self._sentence(index)
        n = len(tokens)
        batch['targets'][r, at:at + n] = tokens
        batch['inputs'][r, at] = self.bos_id
        batch['inputs'][r, at + 1:at + n] = tokens[:-1]
        batch['mask'][r, at:at + n] = 1.0
        batch['segment_ids'][r, at:at + n] = segment
        batch['positions'][r, at:at + n] = np.arange(n)
        at += n
    if not self.packing:
      del batch['segment_ids'], batch['positions']
    return batch

  def iterate(self, start_step: int = 0,
              num_epochs: int | None = None) -> Iterator[Batch]:
    """Yields local batches from global step ``start_step`` on."""
    order_epoch, order = -1, None
    for epoch, planned in planned_steps(
        self.plan, start_step, num_epochs,
        empty_message=f'batch_size={self.batch_size} is larger than the '
        'number of sentences (or packed rows) of the split; no batch can be '
        'made. Use a smaller batch_size.'):
      if self.packing and epoch != order_epoch:
        order_epoch, order = epoch, self._order(epoch)[0]
      yield self.batch(order, planned)
