"""Background prefetching of numpy batches with ``tf.data``."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
  """Yields the same batches, produced ``buffer_size`` ahead on a TF thread.

  The batches go through ``tf.data.Dataset.from_generator(...).prefetch`` so
  they are built while the trainer runs its step. ``buffer_size <= 0``
  returns ``batches`` unchanged. Keys, shapes (rank) and dtypes are taken
  from the first batch; later batches may differ in the sizes of dimensions.
  """
  if buffer_size <= 0:
    return batches
  first = next(batches, None)
  if first is None:
    return iter(())
  tf = import_tensorflow()
  signature = {key: tf.TensorSpec((None,) * value.ndim,
                                  tf.as_dtype(value.dtype))
               for key, value in first.items()}

  def generate():
    yield first
    yield from batches

  dataset = tf.data.Dataset.from_generator(generate,
                                           output_signature=signature)
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.deterministic = True
  dataset = dataset.with_options(options).prefetch(buffer_size)
  return dataset.as_numpy_iterator()
