"""Keeps freed host memory in the process, so XLA:CPU's per-step buffers stay mapped.

XLA:CPU allocates an executable's temporary buffers afresh at every call (48 MB
for the PTB-small training step) with the C library's ``malloc``. glibc serves
any request over 32 MB with a fresh ``mmap`` and returns it with ``munmap`` on
free, and trims the top of its heap once 128 kB are free there, so every step
pays a page fault for every 4 kB page it touches. On 2 CPU cores that is
about a fifth of the PTB-small step (``python benchmarks/lm_step_speed.py
--malloc``: 89.9 ms with glibc's defaults, 68.0 ms with the settings below;
in training, 15.5-16.0 steps/s with them, 12.7-13.2 without).

:func:`retain_freed_memory` tells glibc to serve large requests from its heap
and to keep freed memory for the next request: the process's resident memory
then stays at its peak instead of shrinking between steps, which is what a
training process wants. ``train.py`` calls it when JAX runs on the CPU (on
accelerators the step's buffers live in device memory). Other C libraries
(musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>.
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_KEEP = ((_M_MMAP_MAX, 0),  # No mmap: large requests come from the heap...
         (_M_TRIM_THRESHOLD, 2**31 - 1))  # ... and freed memory stays there.
# glibc's documented defaults (mallopt(3)). Setting any of these parameters
# turns off glibc's dynamic mmap threshold, which this does not turn back on.
_GLIBC_DEFAULTS = ((_M_MMAP_MAX, 65536), (_M_TRIM_THRESHOLD, 128 * 1024),
                   (_M_MMAP_THRESHOLD, 128 * 1024))


def _glibc() -> ctypes.CDLL | None:
  """The process's glibc, or None on another platform or C library."""
  if not sys.platform.startswith('linux'):
    return None
  try:
    libc = ctypes.CDLL(None)
    libc.gnu_get_libc_version  # Only glibc has it (musl has a no-op mallopt).
  except (OSError, AttributeError):
    return None
  return libc


def retain_freed_memory(retain: bool = True) -> bool:
  """Makes glibc keep freed memory for reuse (``retain=False``: its defaults).

  Affects the allocations made after the call, in every thread. Returns
  whether the settings took effect: False where the C library is not glibc.
  """
  libc = _glibc()
  if libc is None:
    return False
  return all(libc.mallopt(param, value) == 1
             for param, value in (_KEEP if retain else _GLIBC_DEFAULTS))
