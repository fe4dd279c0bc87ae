"""Metric writers: clu's console + TensorBoard writer, plus a JSON-lines file.

``create_writer(workdir)`` returns a clu ``MetricWriter`` that writes scalars
to the log (console), to TensorBoard event files in ``workdir`` and to
``workdir/metrics.jsonl`` (one ``{"step": ..., name: value}`` object per
line, easy to read back in scripts and tests). Processes other than 0 only log.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

import jax

try:
  from clu import metric_writers
except ModuleNotFoundError as e:  # clu's TensorBoard writer needs it.
  if e.name != 'tensorboard':
    raise
  raise ModuleNotFoundError(
      "The trainer's metric writers (clu) need the tensorboard package: "
      'pip install "tensorboard>=2.18,<2.22".', name='tensorboard') from e

METRICS_FILE = 'metrics.jsonl'


class JsonlWriter(metric_writers.MetricWriter):
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


def create_writer(workdir: str | os.PathLike[str]) -> metric_writers.MetricWriter:
  """Console + TensorBoard + metrics.jsonl on process 0; console elsewhere."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(just_logging=True,
                                                asynchronous=False)
  default = metric_writers.create_default_writer(os.fspath(workdir),
                                                 asynchronous=False)
  return metric_writers.MultiWriter(
      [default, JsonlWriter(os.path.join(os.fspath(workdir), METRICS_FILE))])


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
    return record.levelno >= logging.WARNING and (
        'did not provide metrics' not in str(record.msg) and
        'read only' not in str(record.msg))

  absl_logging.get_absl_handler().addFilter(keep)
