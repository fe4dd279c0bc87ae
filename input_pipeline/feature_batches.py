"""Length-bucketed, padded batches of real-valued frame sequences.

A :class:`FeatureSplit` holds a split as flat frames ``[total_frames, F]``
(any numeric dtype; e.g. memory-mapped float32 log-mel frames or uint8
pixels), int64 offsets and int32 labels. :class:`FeatureBatcher` is the
classification data's batcher (``ClassificationBatcher``: the same plan,
buckets, host sharding and evaluation padding) with a float gather: batches
are::

  {'features': float32 [b, T, F]  ((x - mean) / std, 0 beyond each length),
   'lengths': int32 [b], 'labels': int32 [b], 'example_index': int32 [b]}

with ``T`` the bucket boundary holding the batch's longest example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from input_pipeline import hosts
from input_pipeline.classification_batching import (
    Batch, ClassificationBatcher, DEFAULT_BOUNDARIES)


class FeatureBatcher(ClassificationBatcher):
  """``ClassificationBatcher`` over frames ``[total_frames, F]``.

  Args:
    frames: ``[total_frames, F]``; example i is ``frames[offsets[i]:offsets[i+1]]``.
    offsets: int64 ``[n + 1]``.
    labels: int32 ``[n]``.
    shard, batch_size, max_length, boundaries, training, seed: as
      ``ClassificationBatcher`` (``max_length`` in frames).
    mean, std: per-feature ``[F]`` (or scalar) normalisation of the frames.
  """

  def __init__(self, frames: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
               shard: hosts.HostShard, *, batch_size: int, max_length: int,
               boundaries: Sequence[int] = DEFAULT_BOUNDARIES, training: bool = True,
               seed: int = 0, mean: np.ndarray | float = 0.0,
               std: np.ndarray | float = 1.0):
    super().__init__(frames, offsets, labels, shard, batch_size=batch_size,
                     max_length=max_length, boundaries=boundaries, training=training,
                     seed=seed)
    self.mean = np.asarray(mean, np.float32)
    self.inverse_std = 1.0 / np.asarray(std, np.float32)

  def batch(self, planned: np.ndarray) -> Batch:
    """This process's rows of one planned global batch (see module doc)."""
    rows = planned[self.rows]
    width = self.width(planned)
    real = rows >= 0
    index = np.where(real, rows, 0)
    lengths = np.where(real, self.lengths[index], 0)
    mask = np.arange(width) < lengths[:, None]  # [b, T]
    out = np.zeros((len(rows), width, self.ids.shape[1]), np.float32)
    picked = self.ids[(self.starts[index][:, None] + np.arange(width))[mask]]
    out[mask] = (picked.astype(np.float32) - self.mean) * self.inverse_std
    return {'features': out, 'lengths': lengths.astype(np.int32),
            'labels': np.where(real, self.labels[index], 0).astype(np.int32),
            'example_index': rows.astype(np.int32)}


@dataclasses.dataclass
class FeatureSplit:
  """A split of frame sequences (see module doc)."""

  frames: np.ndarray  # [total_frames, F]
  offsets: np.ndarray  # int64 [n + 1]
  labels: np.ndarray  # int32 [n]

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  @property
  def lengths(self) -> np.ndarray:
    """int64 ``[n]`` frames per example."""
    return np.diff(self.offsets)

  def batcher(self, shard: hosts.HostShard, *, mean: np.ndarray | float = 0.0,
              std: np.ndarray | float = 1.0, **kwargs) -> FeatureBatcher:
    """A :class:`FeatureBatcher` of this split (``kwargs``: its arguments)."""
    return FeatureBatcher(self.frames, self.offsets, self.labels, shard,
                          mean=mean, std=std, **kwargs)
