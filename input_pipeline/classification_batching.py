"""Length-bucketed batches of labelled examples (sentence classification).

Batches (:class:`ClassificationBatcher`), numpy, ``b`` = this process's rows
of the global batch (:class:`~input_pipeline.hosts.HostShard`), ``T`` the
bucket boundary that holds the batch's longest (truncated) example
(:meth:`lstm_flax.tokenizer.TextEncoding.widths`, as at inference):

* ``tokens``: int32 ``[b, T]``, padded with the tokenizer's ``pad_id``.
* ``lengths``: int32 ``[b]``, tokens of each row (0 on padding rows).
* ``labels``: int32 ``[b]``, in ``[0, num_classes)`` (0 on padding rows).
* ``example_index``: int32 ``[b]``, the example's index in its split
  (-1 on padding rows).

Training batches are planned per epoch from lengths alone, as the LM
batchers' are (:mod:`input_pipeline.lm`): the plan is a function of
(``shuffle_seed``, epoch), so every process plans the same global batches
(their rows concatenated in process order are the single-process batch) and
``iterate(start_step=k)`` yields exactly what an uninterrupted run yields
from step ``k``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from input_pipeline import errors, hosts
from lstm_flax.tokenizer import padded_rows, TextEncoding

Batch = dict[str, np.ndarray]

DEFAULT_BOUNDARIES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                      768, 1024)


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
    self.boundaries = TextEncoding(max_length, tuple(boundaries)).widths()
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
    return gather(self.ids, self.starts, self.lengths, self.labels,
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


def gather(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
           labels: np.ndarray, rows: np.ndarray, width: int,
           pad_id: int) -> Batch:
  """The batch of examples ``rows`` (-1: padding), ``width`` tokens wide."""
  real = rows >= 0
  index = np.where(real, rows, 0)
  row_lengths = np.where(real, lengths[index], 0)
  tokens = padded_rows(ids, starts[index], row_lengths, width, pad_id)
  return {'tokens': tokens, 'lengths': row_lengths.astype(np.int32),
          'labels': np.where(real, labels[index], 0).astype(np.int32),
          'example_index': rows.astype(np.int32)}
