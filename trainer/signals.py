"""Clean exits on SIGINT / SIGTERM at any moment, start-up included.

Python's default SIGINT handling raises ``KeyboardInterrupt`` wherever the
main thread is, also in the middle of importing TensorFlow or jaxlib or of
starting JAX's backend; the half-initialised C++ state then crashed at exit
(``Segmentation fault``, exit -11, or ``Fatal Python error``). And SIGTERM
before the training loop installs its preemption handler killed the process
with status -15.

:func:`exit_cleanly_on_signals` (first line of ``train.py``, before any
heavy import) installs handlers that print one line and leave at once with
``os._exit``: status 130 for SIGINT, 143 for SIGTERM (128 + the signal).
Nothing unfinished is ever used after such an exit: checkpoints are written
into temporary directories and renamed when complete, ``metrics.jsonl`` rows
after the resumed checkpoint are dropped and replayed, and the workdir lock
is released by the kernel; from the last atexit hook on (the run's work
done) both signals are ignored, so the process exits with its own status
(on several processes from the end of the run's work on: :func:`ignore`).
The training loop replaces these handlers while it runs (single process:
SIGTERM or SIGINT saves a checkpoint and exits 0, a second signal leaves at
once; several processes: JAX's preemption service catches SIGTERM and all
processes save the same step) and restores these afterwards.

This module imports only the standard library, so installing it costs
nothing and no signal can arrive in the middle of its own import of JAX.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from types import FrameType

_NAMES = {signal.SIGINT: 'SIGINT', signal.SIGTERM: 'SIGTERM'}


def exit_status(signum: int) -> int:
  """The shell's status for a process ended by signal ``signum``."""
  return 128 + int(signum)


def _exit_now(signum: int, frame: FrameType | None) -> None:
  """Prints one line and exits with ``128 + signum`` (no unwinding: no
  exception can surface inside an import or a C++ call)."""
  del frame
  name = _NAMES.get(signum, f'signal {signum}')
  try:
    os.write(2, (f'{os.path.basename(sys.argv[0]) or "python"}: stopped by '
                 f'{name}; rerun the same command to resume from the latest '
                 'checkpoint.\n').encode())
  except OSError:
    pass
  os._exit(exit_status(signum))  # pylint: disable=protected-access


def exit_cleanly_on_signals() -> None:
  """Makes SIGINT and SIGTERM exit with status 130 / 143 and a one-line
  message, wherever the process is (call it first, in the main thread)."""
  if threading.current_thread() is not threading.main_thread():
    return
  for signum in _NAMES:
    signal.signal(signum, _exit_now)
  # Registered before JAX's and Orbax's atexit hooks, so it runs last.
  atexit.register(_ignore_during_teardown)


def _ignore_during_teardown() -> None:
  """Ignores SIGINT / SIGTERM for the rest of the interpreter's teardown.

  The run's work is over here (every atexit hook of JAX and Orbax ran), but
  finalisation resets Python-level handlers to the default, and JAX's
  preemption service leaves the default SIGTERM action behind: a signal
  in that window killed the process (status -15) after a complete run. An
  ignored signal lets it exit with its own status.
  """
  ignore()


def ignore() -> None:
  """Ignores SIGINT and SIGTERM from now on (main thread only; the run's
  work is done).

  On several processes ``train.py`` calls it as soon as the run's work is
  over: each process must still reach JAX's shutdown barrier, and one that
  a signal ended before it (exit 130 / 143 without leaving the barrier)
  left the others waiting there until JAX's heartbeat timeout (60 s).
  """
  if threading.current_thread() is not threading.main_thread():
    return
  for signum in _NAMES:
    with contextlib.suppress(ValueError, OSError):
      signal.signal(signum, signal.SIG_IGN)
