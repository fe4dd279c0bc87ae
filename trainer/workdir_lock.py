"""One training run per workdir: an exclusive ``fcntl`` lock on
``workdir/.lock``, held for the whole run.

The kernel drops the lock when its process ends, however it ends (``kill
-9`` included), so a lock left behind never blocks the rerun. The file stays
(removing it would race with a run that is opening it); it records the
holder's host, PID and start time, which a refused run names. On several
hosts only the primary process (``jax.process_index() == 0``, Orbax's
convention) takes it. ``flock`` locks are advisory and local to one
machine's kernel (and NFS clients that map them); two hosts that mount one
workdir each see only their own runs.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator

from trainer import errors

LOCK_FILE = '.lock'


def _holder(path: str) -> str:
  try:
    with open(path, encoding='utf-8') as f:
      info = json.load(f)
    return (f"process {info['pid']} on host {info['host']}, started "
            f"{info['started']}")
  except (OSError, ValueError, KeyError, TypeError):
    return 'another process'


def writable(directory: str) -> bool:
  """Whether a file can be created in ``directory``: tried, not inferred
  from permission bits (which root, read-only mounts and immutable
  directories defeat)."""
  try:
    fd, path = tempfile.mkstemp(dir=directory, prefix='.write-probe-')
  except OSError:
    return False
  os.close(fd)
  os.remove(path)
  return True


def check_workdir(workdir: str) -> None:
  """Creates ``workdir`` if needed; raises WorkdirError if it is a file or
  cannot be written."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.WorkdirError(
        f'The workdir {workdir} is a file, not a directory; give a directory '
        '(it is created if missing).')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.WorkdirError(
        f'Cannot create the workdir {workdir}: {e.strerror or e}; choose a '
        'writable directory.') from e
  if not writable(workdir):
    raise errors.WorkdirError(
        f'The workdir {workdir} is not writable; training writes checkpoints '
        'there. Choose a writable directory (evaluation and generation only '
        'read it).')


@contextlib.contextmanager
def hold(workdir: str, primary: bool = True) -> Iterator[None]:
  """Holds the workdir's lock for the ``with`` block (a no-op unless
  ``primary``).

  Raises:
    WorkdirError: another live run holds it (named), or the workdir is a
      file or cannot be written. Nothing in the workdir is changed.
  """
  check_workdir(workdir)
  if not primary:
    yield
    return
  path = os.path.join(workdir, LOCK_FILE)
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise errors.WorkdirError(
        f'Cannot create the lock file {path}: {e.strerror or e}; choose a '
        'writable workdir.') from e
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise errors.WorkdirError(
          f'The workdir {workdir} is in use by another run ({_holder(path)}); '
          'one run per workdir. Wait for it to end or stop it, or use another '
          '--workdir. Nothing was changed.') from None
    info = {'host': socket.gethostname(), 'pid': os.getpid(),
            'started': datetime.datetime.now().isoformat(timespec='seconds')}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + '\n').encode(), 0)
    try:
      yield
    finally:
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
