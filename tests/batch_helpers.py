"""Helpers shared by the input-pipeline tests (imported as a sibling module)."""

from collections.abc import Iterator, Mapping, Sequence

import numpy as np


def take(iterator: Iterator[Mapping[str, np.ndarray]], n: int
         ) -> list[Mapping[str, np.ndarray]]:
  """The first ``n`` batches of ``iterator`` (fewer if it ends)."""
  return [b for _, b in zip(range(n), iterator)]


def assert_same_batches(batches_a: Sequence[Mapping[str, np.ndarray]],
                        batches_b: Sequence[Mapping[str, np.ndarray]]) -> None:
  """Asserts both lists hold the same batches: same keys, equal arrays."""
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
