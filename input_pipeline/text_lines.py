"""Text line files: reading, decoding and sharding the lines of a split.

The one reader of UTF-8 line files (PTB / WikiText split files, each side of
parallel text, ``LABEL TEXT`` files): :func:`read_text_file` reads a small
file into its lines; :class:`FileShards` streams a large one as contiguous
shards, chunk by chunk (bounded memory, one shard per process at a time).
:func:`fingerprint_of` / :func:`file_fingerprint` give the cheap digests that
key the data cache and the saved tokenizer.

Lines never include their ``\\n``; an empty line is the empty string. Lines
are split on ``\\n`` only (not ``str.splitlines``, which also splits on
``\\x0b``, ``\\u2028``, ... and would change the line counts of WikiText).
"""

from __future__ import annotations

import abc
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from input_pipeline import errors


def fingerprint_of(*parts: str | bytes) -> str:
  digest = hashlib.sha256()
  for part in parts:
    digest.update(part.encode('utf-8') if isinstance(part, str) else part)
    digest.update(b'\0')
  return digest.hexdigest()


def file_fingerprint(path: Path) -> str:
  """Path, size and modification time of a file (cheap: reads no data)."""
  path = path.resolve()
  stat = path.stat()
  return f'{path}:{stat.st_size}:{stat.st_mtime_ns}'


def decode_utf8(data: bytes, path: str | os.PathLike[str],
                errors_policy: str = 'strict') -> str:
  """Decodes file bytes as UTF-8.

  Args:
    data: the raw bytes of the file.
    path: the file (or TFDS example), for the error message.
    errors_policy: ``'strict'`` raises :class:`errors.NotUtf8Error` naming the
      file, line and bytes; ``'replace'`` replaces invalid bytes with U+FFFD.

  Returns:
    The decoded text.
  """
  if errors_policy not in ('strict', 'replace'):
    raise errors.ConfigError(
        f"encoding_errors={errors_policy!r} is not supported; use 'strict' "
        "(fail on bytes that are not UTF-8) or 'replace' (replace them with "
        'U+FFFD).')
  try:
    return data.decode('utf-8', errors=errors_policy)
  except UnicodeDecodeError as e:
    line = data.count(b'\n', 0, e.start) + 1
    bad = data[e.start:e.end]
    raise errors.NotUtf8Error(
        f'{path}, line {line}: bytes {bad!r} at byte offset {e.start} are not '
        f'valid UTF-8 ({e.reason}). Re-encode the text as UTF-8 (a file: e.g. '
        f'`iconv -f latin1 -t utf-8`), or set the data config '
        f"encoding_errors='replace' to replace such bytes with U+FFFD."
    ) from None


def split_text_lines(text: str) -> list[str]:
  """Splits text into lines on ``\\n``; a final newline ends the last line."""
  lines = text.split('\n')
  if lines and lines[-1] == '':
    lines.pop()
  return lines


def read_text_file(path: str | os.PathLike[str],
                   encoding_errors: str = 'strict') -> list[str]:
  """Reads a UTF-8 text file into its lines, with clear errors.

  Raises:
    errors.DataFileNotFoundError: the file does not exist.
    errors.EmptyDataError: the file holds no text (zero bytes or only
      whitespace).
    errors.NotUtf8Error: the file holds bytes that are not UTF-8 (and
      ``encoding_errors`` is ``'strict'``).
  """
  path = Path(path)
  if not path.is_file():
    raise errors.DataFileNotFoundError(
        f'Data file {path} does not exist. Check the data directory and the '
        'split file names in the data config (data_dir / files), or create '
        'the file.')
  data = path.read_bytes()
  if not data.strip():
    raise errors.EmptyDataError(
        f'Data file {path} is empty ({len(data)} bytes, no text). Put the '
        'split text in it (one sentence or paragraph per line) or point the '
        'data config at another file.')
  return split_text_lines(decode_utf8(data, path, encoding_errors))


# ----------------------------------------------------- sharded reading -----
#
# Large splits are read as contiguous shards, chunk by chunk, so that no
# split is ever held in memory and several processes can each encode a part.

MIB = 1 << 20
_SCAN_BLOCK = 16 * MIB


def auto_num_shards(size_bytes: int, shard_mb: float = 0) -> int:
  """Shards of a split of ``size_bytes``: ``shard_mb`` MiB each, or (0) 1/16
  of the split, at least 1 MiB and at most 64 MiB each. Depends on the data
  only, never on the number of processes."""
  if shard_mb and shard_mb > 0:
    target = shard_mb * MIB
  else:
    target = min(max(size_bytes / 16, MIB), 64 * MIB)
  return max(1, math.ceil(size_bytes / target))


class LineShards(abc.ABC):
  """The lines of a split, cut into ``num_shards`` contiguous shards.

  Concatenating the lines of shards 0, 1, ... gives the split's lines in
  order. ``chunks(k, chunk_bytes)`` yields shard ``k``'s lines in lists of
  about ``chunk_bytes`` of text (a longer line is yielded whole).
  """

  num_shards: int = 1

  @abc.abstractmethod
  def chunks(self, shard: int, chunk_bytes: int) -> Iterator[list[str]]:
    """Lists of consecutive lines of shard ``shard``."""

  def lines(self) -> Iterator[str]:
    """Every line of every shard, in order (streamed)."""
    for shard in range(self.num_shards):
      for chunk in self.chunks(shard, 4 * MIB):
        yield from chunk


def _chunk_list(lines: Sequence[str], chunk_bytes: int
                ) -> Iterator[list[str]]:
  chunk: list[str] = []
  size = 0
  for line in lines:
    chunk.append(line)
    size += len(line) + 1
    if size >= chunk_bytes:
      yield chunk
      chunk, size = [], 0
  if chunk:
    yield chunk


class ListShards(LineShards):
  """Lines already in memory (small corpora), as one shard."""

  def __init__(self, lines: Sequence[str] | Callable[[], Sequence[str]]):
    self._lines = lines

  def _get(self) -> Sequence[str]:
    if callable(self._lines):
      self._lines = self._lines()
    return self._lines

  def chunks(self, shard: int, chunk_bytes: int) -> Iterator[list[str]]:
    assert shard == 0, shard
    return _chunk_list(self._get(), chunk_bytes)


def check_not_empty(path: Path) -> int:
  size = path.stat().st_size
  if size == 0:
    raise errors.EmptyDataError(
        f'Data file {path} is empty (0 bytes, no text). Put the split text '
        'in it (one sentence or paragraph per line) or point the data config '
        'at another file.')
  return size


def scan_lines(path: Path, wanted: Sequence[int] = ()
               ) -> tuple[int, list[int]]:
  """Counts the lines of a file and finds where some of them start.

  Streams the file in 16 MiB blocks (bounded memory).

  Args:
    path: the file.
    wanted: sorted line numbers; line ``n`` of ``n_lines`` starts at the file
      size.

  Returns:
    (number of lines, the byte offset of each wanted line, clipped to the
    file size).
  """
  size = path.stat().st_size
  offsets: list[int] = []
  pending = list(wanted)
  count, position, last = 0, 0, b'\n'
  with open(path, 'rb') as f:
    while True:
      block = f.read(_SCAN_BLOCK)
      if not block:
        break
      while pending and pending[0] <= count:
        offsets.append(position if pending[0] == count else size)
        pending.pop(0)
      newlines = block.count(b'\n')
      if pending and pending[0] <= count + newlines:
        at = 0
        for _ in range(pending[0] - count):
          at = block.index(b'\n', at) + 1
        # Every wanted line in this block.
        seen = pending[0]
        while pending and pending[0] <= count + newlines:
          while seen < pending[0]:
            at = block.index(b'\n', at) + 1
            seen += 1
          offsets.append(position + at)
          pending.pop(0)
      count += newlines
      position += len(block)
      last = block[-1:]
  if size and last != b'\n':
    count += 1  # A last line without its newline.
  offsets.extend(size for _ in pending)
  return count, offsets


def _first_line_start(f, position: int, end: int) -> int:
  """The start of the first line that starts at or after ``position``."""
  if position <= 0:
    return 0
  f.seek(position - 1)
  at = position - 1
  while at < end:
    block = f.read(min(1 * MIB, end - at))
    if not block:
      break
    found = block.find(b'\n')
    if found >= 0:
      return min(at + found + 1, end)
    at += len(block)
  return end


def _read_blocks(path: Path, start: int, end: int, chunk_bytes: int
                 ) -> Iterator[tuple[int, bytes]]:
  """Yields (file offset, bytes) of [start, end) cut after newlines; a line
  longer than ``chunk_bytes`` is yielded whole (never cut or truncated)."""
  carry, carry_at = b'', start
  with open(path, 'rb') as f:
    f.seek(start)
    position = start
    warned = False
    while position < end:
      data = f.read(min(chunk_bytes, end - position))
      if not data:
        break
      position += len(data)
      buffer = carry + data if carry else data
      if position >= end:
        yield carry_at, buffer
        return
      cut = buffer.rfind(b'\n')
      if cut < 0:  # One line longer than the chunk: keep reading it.
        if not warned and len(buffer) > chunk_bytes:
          logging.info('%s: the line at byte %d is longer than the chunk '
                       'size (%d bytes); it is read whole.', path, carry_at,
                       chunk_bytes)
          warned = True
        carry = buffer
        continue
      yield carry_at, buffer[:cut + 1]
      carry, carry_at = buffer[cut + 1:], carry_at + cut + 1
    if carry:
      yield carry_at, carry


def _decode_block(block: bytes, path: Path, at: int, line: int | None,
                  errors_policy: str) -> list[str]:
  try:
    return split_text_lines(block.decode('utf-8', errors=errors_policy))
  except UnicodeDecodeError as e:
    newlines = block.count(b'\n', 0, e.start)
    where = (f'line {line + newlines + 1}' if line is not None
             else f'byte offset {at + e.start}')
    bad = block[e.start:e.end]
    raise errors.NotUtf8Error(
        f'{path}, {where}: bytes {bad!r} at byte offset {at + e.start} are '
        f'not valid UTF-8 ({e.reason}). Re-encode the text as UTF-8 (a file: '
        'e.g. `iconv -f latin1 -t utf-8`), or set the data config '
        "encoding_errors='replace' to replace such bytes with U+FFFD."
    ) from None


class FileShards(LineShards):
  """A text file read in ``num_shards`` contiguous byte ranges, each cut at
  line starts (so each shard holds whole lines).

  Args:
    path: the file.
    end: bytes of the file to use (the first ``max_lines`` lines' bytes).
    num_shards: number of shards.
    encoding_errors: ``'strict'`` or ``'replace'``.
    line_bounds: instead of byte ranges, the byte offsets of each shard's
      first line and of the end (``num_shards + 1`` values), e.g. to align
      the shards of two parallel files.
  """

  def __init__(self, path: Path, end: int, num_shards: int,
               encoding_errors: str = 'strict',
               line_bounds: Sequence[int] | None = None):
    if encoding_errors not in ('strict', 'replace'):
      decode_utf8(b'', path, encoding_errors)  # Raises the ConfigError.
    self.path = Path(path)
    self.end = end
    self.num_shards = num_shards
    self.encoding_errors = encoding_errors
    self._bounds = list(line_bounds) if line_bounds is not None else None

  def bounds(self) -> list[int]:
    if self._bounds is None:
      with open(self.path, 'rb') as f:
        self._bounds = [_first_line_start(f, k * self.end // self.num_shards,
                                          self.end)
                        for k in range(self.num_shards)] + [self.end]
    return self._bounds

  def chunks(self, shard: int, chunk_bytes: int) -> Iterator[list[str]]:
    start, end = self.bounds()[shard:shard + 2]
    line = 0 if start == 0 else None
    for at, block in _read_blocks(self.path, start, end, chunk_bytes):
      lines = _decode_block(block, self.path, at, line,
                            self.encoding_errors)
      if line is not None:
        line += len(lines)
      yield lines
