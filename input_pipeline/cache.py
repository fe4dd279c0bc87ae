"""Sharded, memory-mapped cache of tokenised data.

A cache *entry* (one tokenised split) is a directory named by a digest of
everything that determines its content (source fingerprint, tokenizer
fingerprint, number of shards, format version)::

    cache_dir/lm-train-<digest>/
      00000-of-00016.ids.npy       int32 token ids of shard 0
      00000-of-00016.lengths.npy   int32 tokens per line (record) of shard 0
      00000-of-00016.json          written last: shard 0 is complete
      ...

Shards are a property of the data (contiguous line ranges of a file, or TFDS
sub-splits), never of the number of processes: with ``P`` processes, process
``p`` writes the shards ``k`` with ``k % P == p`` and then maps them all.

Each array is written chunk by chunk into a ``.npy`` file (the header is
reserved first and filled in at the end), so no split is ever held in memory.
Every file is written under a temporary name, flushed to disk and renamed;
the shard's ``.json`` marker is renamed into place last, after its arrays. A
crash, a ``kill -9`` or a full disk therefore leaves at most temporary files
and no marker, and the shard is rebuilt by the next run; a marker whose key
differs from the expected one (another tokenizer or format version) is never
used. Readers open the arrays with ``np.load(mmap_mode='r')``: O(1), no data
read until a batch touches its pages.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import json
import logging
import os
import struct
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from input_pipeline import errors

FORMAT_VERSION = 2
# The .npy header is reserved before the data is known; 128 bytes hold the
# header of any 1-D array or array of fixed-shape rows (numpy aligns data to
# 64 bytes).
_NPY_HEADER_BYTES = 128


def digest_of(key: Mapping[str, Any]) -> str:
  return hashlib.sha256(json.dumps(
      {'version': FORMAT_VERSION, **key}, sort_keys=True,
      default=str).encode()).hexdigest()[:20]


def entry_dir(cache_dir: str | os.PathLike[str], name: str,
              key: Mapping[str, Any]) -> Path:
  """The directory of the entry ``name`` for ``key``."""
  return Path(cache_dir) / f'{name}-{digest_of(key)}'


def _tmp_name(path: Path) -> Path:
  return path.with_name(f'.{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}')


def _fsync_dir(directory: Path) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def disk_error(path: Path, error: OSError) -> errors.CacheWriteError:
  """A clear error for a failed cache write (disk full, read-only, ...)."""
  what = ('the disk is full' if error.errno in (errno.ENOSPC, errno.EDQUOT)
          else f'{error.strerror or error}')
  return errors.CacheWriteError(
      f'Writing the data cache file {path} failed: {what} ({error}). The '
      'partial file was removed and no incomplete shard will be used. Free '
      f'space on {path.parent} or point the data config cache_dir at a '
      'larger file system, then rerun: completed shards are kept.')


def atomic_write_bytes(path: Path, data: bytes) -> None:
  """Writes ``data`` to ``path`` via a flushed temporary file and a rename."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = _tmp_name(path)
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    tmp.unlink(missing_ok=True)
    raise disk_error(path, e) from e


def npy_header(dtype: np.dtype, length: int) -> bytes:
  """A version 1.0 ``.npy`` header of ``length`` rows, exactly 128 bytes.

  A sub-array ``dtype`` (e.g. ``np.dtype((np.float32, (80,)))``) gives rows
  of its shape: a ``[length, 80]`` float32 array.
  """
  dtype = np.dtype(dtype)
  header = repr({'descr': np.lib.format.dtype_to_descr(dtype.base),
                 'fortran_order': False,
                 'shape': (int(length), *dtype.shape)})
  size = _NPY_HEADER_BYTES - 10
  if len(header) + 1 > size:
    raise ValueError(f'npy header too long: {header}')
  return (b'\x93NUMPY\x01\x00' + struct.pack('<H', size) +
          (header.ljust(size - 1) + '\n').encode('latin1'))


class NpyAppender:
  """Writes a 1-D ``.npy`` file chunk by chunk (bounded memory), atomically.

  ``append`` writes each chunk to a temporary file after a reserved header;
  ``commit`` writes the header (now that the length is known), flushes and
  renames the file into place; ``abort`` removes the temporary file.
  """

  def __init__(self, path: Path, dtype: np.dtype):
    self.path = path
    self.dtype = np.dtype(dtype)
    self.length = 0
    self.tmp = _tmp_name(path)
    try:
      self.file = open(self.tmp, 'wb')
      self.file.write(b'\0' * _NPY_HEADER_BYTES)
    except OSError as e:
      self.abort()
      raise disk_error(path, e) from e

  def append(self, values: np.ndarray) -> None:
    values = np.ascontiguousarray(values, self.dtype.base)
    if values.shape[1:] != self.dtype.shape:
      self.abort()
      raise ValueError(f'{self.path}: rows of shape {values.shape[1:]}, '
                       f'expected {self.dtype.shape}.')
    try:
      self.file.write(memoryview(values).cast('B'))
    except OSError as e:
      self.abort()
      raise disk_error(self.path, e) from e
    self.length += len(values)

  def commit(self) -> None:
    try:
      self.file.seek(0)
      self.file.write(npy_header(self.dtype, self.length))
      self.file.flush()
      os.fsync(self.file.fileno())
      self.file.close()
      os.replace(self.tmp, self.path)
    except OSError as e:
      self.abort()
      raise disk_error(self.path, e) from e

  def abort(self) -> None:
    try:
      if getattr(self, 'file', None) is not None:
        self.file.close()
    except OSError:
      pass
    self.tmp.unlink(missing_ok=True)


class ConcatArray:
  """Read-only concatenation of arrays (memory maps) along their first axis
  (1-D ids, or rows of a sub-array field), without copying.

  Slicing ``a[i:j]`` copies only the rows asked for; ``np.asarray(a)``
  materialises the whole array (small splits and tests only).
  """

  def __init__(self, parts: Sequence[np.ndarray]):
    self.parts = [p for p in parts if len(p)] or list(parts[:1])
    # Plain ndarray views of the same (mapped) memory: slicing an np.memmap
    # runs Python code (__array_finalize__), ~10x slower per slice.
    self._fast = [_plain(p) for p in self.parts]
    self.dtype = self.parts[0].dtype if self.parts else np.dtype(np.int32)
    self.bounds = np.zeros(len(self.parts) + 1, np.int64)
    np.cumsum([len(p) for p in self.parts], out=self.bounds[1:])
    self._bounds = self.bounds.tolist()
    row = self.parts[0].shape[1:] if self.parts else ()
    self.shape = (int(self.bounds[-1]), *row)  # Rows of a sub-array field.
    self.ndim = len(self.shape)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, key):
    if isinstance(key, slice):
      start, stop, step = key.indices(len(self))
      if step != 1:
        return np.asarray(self)[key]
      if stop <= start:
        return np.zeros((0, *self.shape[1:]), self.dtype)
      bounds = self._bounds
      first = bisect.bisect_right(bounds, start) - 1
      if stop <= bounds[first + 1]:  # The common case: within one part.
        base = bounds[first]
        return self._fast[first][start - base:stop - base]
      return np.asarray(self.view(start, stop))
    if isinstance(key, (int, np.integer)):
      index = int(key) + (len(self) if key < 0 else 0)
      if not 0 <= index < len(self):
        raise IndexError(key)
      k = bisect.bisect_right(self._bounds, index) - 1
      return self._fast[k][index - self._bounds[k]]
    return np.asarray(self)[key]

  def view(self, start: int, stop: int) -> np.ndarray | ConcatArray:
    """Items ``[start, stop)`` without copying: a view of one part (a memory
    map) when they lie in one, else a ConcatArray of views."""
    start, stop = max(start, 0), min(stop, len(self))
    if stop <= start:
      return np.zeros((0, *self.shape[1:]), self.dtype)
    first = int(np.searchsorted(self.bounds, start, 'right')) - 1
    last = int(np.searchsorted(self.bounds, stop, 'left')) - 1
    views = [self._fast[k][max(start - self.bounds[k], 0):
                           min(stop, self.bounds[k + 1]) - self.bounds[k]]
             for k in range(first, last + 1)]
    return views[0] if len(views) == 1 else ConcatArray(views)

  def __array__(self, dtype=None, copy=None):
    del copy
    out = (np.concatenate(self.parts) if self.parts else
           np.zeros((0, *self.shape[1:]), self.dtype))
    return out if dtype is None else out.astype(dtype)

  def __iter__(self):
    for part in self.parts:
      yield from part

  def __eq__(self, other):
    return np.asarray(self) == other

  def __ne__(self, other):
    return np.asarray(self) != other

  __hash__ = None

  def max(self):
    return max(p.max() for p in self.parts)

  def min(self):
    return min(p.min() for p in self.parts)

  def sum(self, dtype=None):
    return sum(p.sum(dtype=dtype) for p in self.parts)

  def __repr__(self) -> str:
    return f'ConcatArray({len(self.parts)} parts, {len(self)} items)'


def _plain(array: np.ndarray) -> np.ndarray:
  """``array`` as a plain ndarray view (of a memory map's pages: no copy)."""
  return array.view(np.ndarray) if isinstance(array, np.memmap) else array


def concat(parts: Sequence[np.ndarray]) -> np.ndarray | ConcatArray:
  """One array (a plain view of the memory map) if there is one part, else
  a :class:`ConcatArray`."""
  return _plain(parts[0]) if len(parts) == 1 else ConcatArray(parts)


def wait_until(ready: Callable[[], bool], timeout_s: float, message: str,
               poll_s: float = 0.2) -> None:
  """Polls ``ready()`` until true; raises ``errors.WaitTimeoutError``."""
  deadline = time.monotonic() + timeout_s
  poll = 0.01
  while not ready():
    if time.monotonic() > deadline:
      raise errors.WaitTimeoutError(message)
    time.sleep(poll)
    poll = min(poll * 2, poll_s)


class ShardedEntry:
  """A cached split: ``num_shards`` shards of the arrays ``fields``.

  Args:
    cache_dir: the cache directory.
    name: readable prefix, e.g. ``'lm-train'``.
    key: JSON-able values that determine the content (the number of shards
      is added).
    num_shards: shards of the split (a property of the data).
    fields: array name -> dtype. A plain dtype is a 1-D field; a sub-array
      dtype ``(dtype, row_shape)`` a field of rows, e.g.
      ``np.dtype((np.float32, (80,)))``: ``[total, 80]`` float32. (The
      speech cache, ``input_pipeline.audio``, stores its frames flat, 1-D,
      with each example's frame count beside them.)
  """

  def __init__(self, cache_dir: str | os.PathLike[str], name: str,
               key: Mapping[str, Any], num_shards: int,
               fields: Mapping[str, Any]):
    self.key = {**key, 'num_shards': num_shards,
                'fields': {k: _dtype_key(v) for k, v in fields.items()}}
    self.digest = digest_of(self.key)
    self.directory = Path(cache_dir) / f'{name}-{self.digest}'
    self.name = name
    self.num_shards = num_shards
    self.fields = {k: np.dtype(v) for k, v in fields.items()}

  def _stem(self, shard: int) -> str:
    return f'{shard:05d}-of-{self.num_shards:05d}'

  def marker(self, shard: int) -> Path:
    return self.directory / f'{self._stem(shard)}.json'

  def array_path(self, shard: int, field: str) -> Path:
    return self.directory / f'{self._stem(shard)}.{field}.npy'

  def meta(self, shard: int) -> dict[str, Any] | None:
    """The shard's metadata if the shard is complete and ours, else None."""
    try:
      meta = json.loads(self.marker(shard).read_text())
    except (OSError, ValueError):
      return None
    if meta.get('version') != FORMAT_VERSION or meta.get(
        'digest') != self.digest:
      logging.warning(
          'Cache shard %s was written by another tokenizer or format '
          'version (%s); it is not used and will be rebuilt.',
          self.marker(shard), meta.get('digest'))
      return None
    for field in self.fields:
      path = self.array_path(shard, field)
      try:
        size = path.stat().st_size
      except OSError:
        return None
      expected = _NPY_HEADER_BYTES + meta['lengths'][field] * self.fields[
          field].itemsize
      if size != expected:
        logging.warning('Cache file %s has %d bytes, expected %d; the shard '
                        'will be rebuilt.', path, size, expected)
        return None
    return meta

  def complete(self, shard: int) -> bool:
    return self.meta(shard) is not None

  def write(self, shard: int,
            chunks: Iterator[Mapping[str, np.ndarray]],
            stats: Callable[[], Mapping[str, Any]] = dict) -> dict[str, Any]:
    """Writes shard ``shard`` from ``chunks`` (dicts of field -> rows).

    Memory is bounded by one chunk. ``stats()`` (called at the end) adds
    values to the shard's metadata.
    """
    self.directory.mkdir(parents=True, exist_ok=True)
    writers = {f: NpyAppender(self.array_path(shard, f), dtype)
               for f, dtype in self.fields.items()}
    try:
      for chunk in chunks:
        for field, values in chunk.items():
          writers[field].append(values)
      for writer in writers.values():
        writer.commit()
    except BaseException:
      for writer in writers.values():
        writer.abort()
      raise
    meta = {'version': FORMAT_VERSION, 'digest': self.digest,
            'key': self.key, 'shard': shard,
            'lengths': {f: w.length for f, w in writers.items()},
            **stats()}
    _fsync_dir(self.directory)
    atomic_write_bytes(self.marker(shard), json.dumps(meta).encode())
    return meta

  def wait(self, timeout_s: float) -> list[dict[str, Any]]:
    """Waits until every shard is complete; returns their metadata."""
    missing = list(range(self.num_shards))

    def ready() -> bool:
      while missing and self.complete(missing[0]):
        missing.pop(0)
      return not missing

    if not ready():
      logging.info('Waiting for the other processes to write %d shard(s) of '
                   '%s in %s', len(missing), self.name, self.directory)
    wait_until(ready, timeout_s,
               f'Timed out after {timeout_s:.0f} s waiting for shard '
               f'{missing[0] if missing else 0} of {self.num_shards} of '
               f'{self.name} in {self.directory} (shard k is written by '
               'process k % process_count). Check the other processes\' logs; '
               'rerun to resume (complete shards are kept) or raise the data '
               'config wait_timeout_s.')
    return [self.meta(k) for k in range(self.num_shards)]

  def open(self, field: str) -> list[np.ndarray]:
    """The shards' arrays ``field``, memory-mapped read-only (O(1))."""
    return [np.load(self.array_path(k, field), mmap_mode='r')
            for k in range(self.num_shards)]


def _dtype_key(dtype: Any) -> str | list[Any]:
  """A field's dtype in an entry key (plain dtypes as before: same digests)."""
  dtype = np.dtype(dtype)
  return dtype.str if not dtype.shape else [dtype.base.str, list(dtype.shape)]


def my_shards(num_shards: int, process_index: int,
              process_count: int) -> list[int]:
  """The shards process ``process_index`` of ``process_count`` writes."""
  return list(range(process_index, num_shards, process_count))
