"""Metric writers: clu's console + TensorBoard writer, plus a JSON-lines file.

``create_writer(workdir)`` returns a clu ``MetricWriter`` that writes scalars
to the log (console), to TensorBoard event files in ``workdir`` and to
``workdir/metrics.jsonl`` (one ``{"step": ..., name: value}`` object per
line, easy to read back in scripts and tests). Processes other than 0 only log.
``progress_reporter`` is clu's ``ReportProgress``.

clu's writers import TensorFlow. Where TensorFlow is not installed (GPU
images that carry only JAX, say), the same three outputs come from
tensorboard's own TF-free event writer and a small progress logger, so
``train.py`` runs there on local text files (with ``data.prefetch=0``).

``orbax_errors_to_file`` routes the checkpoint writers' warnings and
tracebacks (Orbax, TensorStore, asyncio) to a file in the workdir during a
run, so the console shows only the trainer's one-line error.
"""

from __future__ import annotations

import contextlib
import json
import logging as std_logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax

from absl import logging

try:
  from clu import metric_writers
  from clu import periodic_actions
except ModuleNotFoundError as e:  # clu's TensorBoard writer needs both.
  if e.name == 'tensorboard':
    raise ModuleNotFoundError(
        "The trainer's metric writers (clu) need the tensorboard package: "
        'pip install "tensorboard>=2.18,<2.22".', name='tensorboard') from e
  if e.name not in ('tensorflow', 'clu'):
    raise
  metric_writers = periodic_actions = None  # The TF-free writers below.

METRICS_FILE = 'metrics.jsonl'


_WriterBase = metric_writers.MetricWriter if metric_writers else object


class JsonlWriter(_WriterBase):
  """Appends scalars to a JSON-lines file (other summaries are ignored)."""

  def __init__(self, path: str | os.PathLike[str]):
    self._path = os.fspath(path)
    self._lock = threading.Lock()

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    row = {'step': int(step)}
    for key, value in scalars.items():
      value = float(value)
      row[key] = value if math.isfinite(value) else repr(value)
    with self._lock, open(self._path, 'a', encoding='utf-8') as f:
      f.write(json.dumps(row) + '\n')

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


class _TfFreeWriter(JsonlWriter):
  """Console + (process 0) TensorBoard events + metrics.jsonl, without TF.

  Scalars only, like :class:`JsonlWriter`; used where clu cannot import.
  """

  def __init__(self, workdir: str | None):
    self._jsonl = workdir and JsonlWriter(os.path.join(workdir, METRICS_FILE))
    self._events = None
    if workdir:
      from tensorboard import summary  # pylint: disable=g-import-not-at-top
      self._events = summary.Writer(summary.DirectoryOutput(workdir))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    logging.info('[%d] %s', step, ', '.join(
        f'{k}={float(v):.6g}' for k, v in scalars.items()))
    if self._jsonl:
      self._jsonl.write_scalars(step, scalars)
    if self._events:
      for key, value in scalars.items():
        self._events.add_scalar(key, float(value), int(step))

  def write_hparams(self, hparams):
    logging.info('[Hyperparameters] %s', dict(hparams))

  def flush(self):
    if self._events:
      self._events.flush()

  def close(self):
    if self._events:
      self._events.close()


class _TfFreeProgress:
  """clu ``ReportProgress``'s interface: logs steps/s, ETA and timed work."""

  def __init__(self, num_train_steps: int, writer: Any, every_secs: float):
    self._num_steps = num_train_steps
    self._writer = writer
    self._every_secs = every_secs
    self._last: tuple[int, float] | None = None
    self._timed: dict[str, float] = {}

  def __call__(self, step: int) -> None:
    now = time.monotonic()
    if self._last is None:
      self._last = (step, now)
      return
    last_step, last_time = self._last
    if now - last_time < self._every_secs:
      return
    rate = (step - last_step) / (now - last_time)
    self._writer.write_scalars(step, {'steps_per_sec': rate})
    timed = ', '.join(f'{k}: {v / 60:.1f} min' for k, v in self._timed.items())
    logging.info('Step %d of %d, %.1f steps/s, ETA %.0f min%s', step,
                 self._num_steps, rate,
                 (self._num_steps - step) / max(rate, 1e-9) / 60,
                 f' ({timed})' if timed else '')
    self._last = (step, now)

  @contextlib.contextmanager
  def timed(self, name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
      yield
    finally:
      self._timed[name] = self._timed.get(name, 0.0) + time.monotonic() - start
      if self._last is not None:  # Time spent here is not training time.
        self._last = (self._last[0], self._last[1] + time.monotonic() - start)


def loss_and_perplexity(prefix: str, sums: Mapping[str, float]
                        ) -> dict[str, float]:
  """``{prefix}_loss`` (per weight unit) and ``{prefix}_perplexity`` of
  summed token losses (language models, translation)."""
  loss = sums['loss_sum'] / max(sums['weight'], 1.0)
  # inf beyond float32 (TensorBoard stores float32 scalars).
  return {f'{prefix}_loss': loss,
          f'{prefix}_perplexity': math.exp(loss) if loss < 88.0 else math.inf}


def progress_reporter(num_train_steps: int, writer: Any,
                      every_secs: float) -> Any:
  """clu's ``ReportProgress`` (or its TF-free stand-in): call it with the
  step after each step; ``.timed(name)`` wraps non-training work."""
  if periodic_actions is None:
    return _TfFreeProgress(num_train_steps, writer, every_secs)
  return periodic_actions.ReportProgress(
      num_train_steps=num_train_steps, writer=writer, every_secs=every_secs)


def create_writer(workdir: str | os.PathLike[str]) -> Any:
  """Console + TensorBoard + metrics.jsonl on process 0; console elsewhere."""
  if metric_writers is None:
    return _TfFreeWriter(os.fspath(workdir) if jax.process_index() == 0
                         else None)
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(just_logging=True,
                                                asynchronous=False)
  default = metric_writers.create_default_writer(os.fspath(workdir),
                                                 asynchronous=False)
  return metric_writers.MultiWriter(
      [default, JsonlWriter(os.path.join(os.fspath(workdir), METRICS_FILE))])


def drop_rows_after(workdir: str | os.PathLike[str], step: int) -> int:
  """Removes the ``metrics.jsonl`` rows of steps after ``step`` (a run that
  resumes from ``step`` writes them again, so each step stays once; a line
  cut short by a kill goes too). Atomic: a temporary file and a rename.
  Returns the number of lines removed."""
  path = os.path.join(os.fspath(workdir), METRICS_FILE)
  if not os.path.exists(path):
    return 0
  kept, dropped = [], 0
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        keep = int(json.loads(line)['step']) <= step
      except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        keep = False
      if keep:
        kept.append(line if line.endswith('\n') else line + '\n')
      else:
        dropped += 1
  if dropped:
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
      f.writelines(kept)
    os.replace(tmp, path)
  return dropped


def read_metrics(workdir: str | os.PathLike[str]) -> list[dict[str, Any]]:
  """The rows of ``workdir/metrics.jsonl`` (empty if there is none)."""
  path = os.path.join(os.fspath(workdir), METRICS_FILE)
  if not os.path.exists(path):
    return []
  rows = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:  # A line cut short by a kill.
        pass
  return rows


def quiet_checkpoint_logs() -> None:
  """Drops Orbax's (very chatty) INFO log lines from the console."""
  import logging  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

  def keep(record: logging.LogRecord) -> bool:
    if '/orbax/' not in record.pathname.replace('\\', '/'):
      return True
    return (record.levelno >= logging.WARNING and
            'read only' not in str(record.msg))

  absl_logging.get_absl_handler().addFilter(keep)


# ------------------------------------------- checkpoint errors to a file --


def _from_checkpointing(record: std_logging.LogRecord) -> bool:
  """Whether a log record comes from the checkpoint writers: Orbax,
  TensorStore, or asyncio (whose event loops Orbax runs TensorStore in)."""
  path = record.pathname.replace('\\', '/')
  return ('/orbax/' in path or '/tensorstore/' in path or
          record.name == 'asyncio' or record.name.startswith('asyncio.'))


def _closed_loop_callback(kind: type[BaseException],
                          value: BaseException) -> bool:
  """Whether an exception is TensorStore completing a write for an asyncio
  loop that Orbax already closed (after the save failed): TensorStore's C++
  prints those with ``PyErr_Print``, one traceback per pending write."""
  return issubclass(kind, RuntimeError) and str(value) == 'Event loop is closed'


@contextlib.contextmanager
def orbax_errors_to_file(path: str | os.PathLike[str]) -> Iterator[str]:
  """Within the block, Orbax's, TensorStore's and asyncio's warnings and
  errors go to the file ``path`` (``checkpoints.CHECKPOINT_LOG`` in the
  workdir; created only if one arrives) and their errors leave the console
  (every handler of the root and absl loggers), where the trainer's
  one-line error reports the failure.
  So do the "Event loop is closed" tracebacks that TensorStore prints
  through ``sys.excepthook`` after a failed write. Yields the log's path."""
  path = os.fspath(path)
  handler = std_logging.FileHandler(path, delay=True, encoding='utf-8')
  handler.setLevel(std_logging.WARNING)
  handler.addFilter(_from_checkpointing)
  handler.setFormatter(std_logging.Formatter(
      '%(asctime)s %(levelname)s %(pathname)s:%(lineno)d] %(message)s'))
  not_checkpoint_errors = lambda r: not (  # noqa: E731
      _from_checkpointing(r) and r.levelno >= std_logging.ERROR)
  root = std_logging.getLogger()
  console = list(dict.fromkeys(
      [logging.get_absl_handler(), *root.handlers,
       *std_logging.getLogger('absl').handlers]))
  previous_hook = sys.excepthook

  def excepthook(kind, value, traceback):
    if _closed_loop_callback(kind, value):
      std_logging.getLogger('asyncio').error(
          'A checkpoint write completed after its event loop closed',
          exc_info=(kind, value, traceback))
    else:
      previous_hook(kind, value, traceback)

  root.addHandler(handler)
  for h in console:
    h.addFilter(not_checkpoint_errors)
  sys.excepthook = excepthook
  try:
    yield path
  finally:
    if sys.excepthook is excepthook:
      sys.excepthook = previous_hook
    for h in console:
      h.removeFilter(not_checkpoint_errors)
    root.removeHandler(handler)
    handler.close()
