"""trainer.host_memory: large allocations come from the heap and stay there."""

import ctypes
import sys

import pytest

from trainer import host_memory

_SIZE = 64 << 20  # Above glibc's 32 MB ceiling for serving requests by mmap.


def _heap_ranges() -> list[tuple[int, int]]:
  """The address ranges of the main arena's heap (``[heap]`` in /proc/self/maps)."""
  ranges = []
  with open('/proc/self/maps') as maps:
    for line in maps:
      if line.rstrip().endswith('[heap]'):
        start, end = line.split()[0].split('-')
        ranges.append((int(start, 16), int(end, 16)))
  return ranges


def _malloc_lands_in_heap(libc: ctypes.CDLL) -> tuple[bool, bool]:
  """(a 64 MB block is in the heap, a second one after freeing reuses its address)."""
  libc.malloc.restype = ctypes.c_void_p
  libc.malloc.argtypes = [ctypes.c_size_t]
  libc.free.argtypes = [ctypes.c_void_p]
  first = libc.malloc(_SIZE)
  in_heap = any(lo <= first < hi for lo, hi in _heap_ranges())
  libc.free(first)
  second = libc.malloc(_SIZE)
  libc.free(second)
  return in_heap, first == second


@pytest.mark.skipif(host_memory._glibc() is None, reason='needs Linux with glibc')
def test_retain_freed_memory_serves_large_blocks_from_the_heap():
  libc = host_memory._glibc()
  try:
    assert host_memory.retain_freed_memory(False)  # glibc's defaults: mmap.
    in_heap, _ = _malloc_lands_in_heap(libc)
    assert not in_heap
    assert host_memory.retain_freed_memory()
    in_heap, reused = _malloc_lands_in_heap(libc)
    assert in_heap and reused
  finally:
    host_memory.retain_freed_memory(False)


def test_retain_freed_memory_is_a_no_op_off_glibc(monkeypatch):
  monkeypatch.setattr(sys, 'platform', 'darwin')
  assert host_memory.retain_freed_memory() is False
