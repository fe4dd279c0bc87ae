"""Splitting global batches across JAX processes (hosts).

Every host plans the same global batches (same seed, same data) and
materialises only its rows: host ``p`` of ``P`` gets rows
``[p * B / P, (p + 1) * B / P)`` of each global batch of ``B`` rows, so the
concatenation over hosts, in process order, is the single-host batch.
"""

from __future__ import annotations

import dataclasses

from input_pipeline import errors


@dataclasses.dataclass(frozen=True)
class HostShard:
  """This process's place among the processes that share a global batch."""

  process_index: int
  process_count: int

  def __post_init__(self):
    if self.process_count < 1 or not (
        0 <= self.process_index < self.process_count):
      raise errors.ConfigError(
          f'process_index={self.process_index} must be in [0, '
          f'process_count={self.process_count}).')

  def rows(self, global_batch_size: int, name: str = 'batch_size') -> slice:
    """This host's rows of a global batch of ``global_batch_size`` rows.

    Raises:
      errors.BatchSizeError: ``global_batch_size`` is not divisible by the
        number of processes.
    """
    if global_batch_size % self.process_count:
      raise errors.BatchSizeError(
          f'Global {name}={global_batch_size} is not divisible by the '
          f'{self.process_count} JAX processes, so it cannot be split evenly '
          f'across hosts. Set {name} to a multiple of {self.process_count} '
          f'(e.g. {self.rounded(global_batch_size)}).')
    local = global_batch_size // self.process_count
    return slice(self.process_index * local, (self.process_index + 1) * local)

  def rounded(self, size: int) -> int:
    """The nearest multiple of ``process_count`` that is >= ``size``."""
    return max(1, -(-size // self.process_count)) * self.process_count


def resolve(process_index: int | None = None,
            process_count: int | None = None) -> HostShard:
  """The host shard: the given values, else ``jax.process_index/count()``."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    if process_index is None:
      process_index = jax.process_index()
    if process_count is None:
      process_count = jax.process_count()
  return HostShard(int(process_index), int(process_count))
