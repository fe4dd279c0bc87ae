"""Background prefetching of numpy batches (a thread and a bounded queue)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]


def import_tensorflow():
  """Imports TensorFlow kept off any GPU (the accelerators are JAX's)."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # Devices already initialised; nothing to hide then.
    pass
  return tf


def prefetch(batches: Iterator[Batch], buffer_size: int) -> Iterator[Batch]:
  """Yields the same batches, produced ``buffer_size`` ahead on a thread.

  The batches are numpy arrays built in Python (tokenised, cached corpora),
  so one background thread and a bounded queue overlap their making with the
  trainer's step. (``tf.data.Dataset.from_generator`` did the same job but
  its runtime threads took ~45% of a 2-core machine's training speed.)
  ``buffer_size <= 0`` returns ``batches`` unchanged. An exception in the
  producer is raised in the consumer; closing or dropping the returned
  iterator stops the thread.
  """
  if buffer_size <= 0:
    return batches
  return _Prefetcher(batches, buffer_size)


class _Prefetcher(Iterator[Batch]):
  """The iterator :func:`prefetch` returns. The thread holds only the queue
  and the stop flag, so dropping this iterator stops it (``__del__``)."""

  def __init__(self, batches: Iterator[Batch], buffer_size: int):
    self._queue: queue.Queue = queue.Queue(maxsize=buffer_size)
    self._stop = threading.Event()
    self._finished = False
    threading.Thread(target=_produce, args=(batches, self._queue, self._stop),
                     daemon=True, name='input_pipeline.prefetch').start()

  def __next__(self) -> Batch:
    if self._finished:
      raise StopIteration
    item = self._queue.get()
    if item is _DONE:
      self._finished = True
      raise StopIteration
    if isinstance(item, _Raised):
      self._finished = True
      raise item.error
    return item

  def close(self) -> None:
    self._finished = True
    self._stop.set()

  def __del__(self):
    self._stop.set()


_DONE = object()


class _Raised:

  def __init__(self, error: BaseException):
    self.error = error


def _put(q: queue.Queue, stop: threading.Event, item: Any) -> bool:
  while not stop.is_set():
    try:
      q.put(item, timeout=0.1)
      return True
    except queue.Full:
      pass
  return False


def _produce(batches: Iterator[Batch], q: queue.Queue,
             stop: threading.Event) -> None:
  try:
    for batch in batches:
      if not _put(q, stop, batch):
        return
  except BaseException as e:  # pylint: disable=broad-except
    _put(q, stop, _Raised(e))
    return
  _put(q, stop, _DONE)
