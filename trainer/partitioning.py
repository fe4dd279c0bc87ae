"""The one place that builds the device mesh and the shardings.

A ``jax.sharding.Mesh`` with axes ``('data', 'model')`` over all devices of
all processes. Batches and the LSTM carry are split over ``data`` (data
parallelism); parameters and optimiser state are replicated over ``data``
and, when ``model_parallelism > 1``, split over ``model`` along the LSTM's
fused-gate dimension ``4H`` and the vocabulary ``V`` (for models larger than
one chip). ``train_step`` / ``eval_step`` are jit-compiled with these
shardings (no ``pmap``), and each process feeds only its rows of a global
batch with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from trainer import errors

PyTree = Any
DATA = 'data'
MODEL = 'model'

# Parameter name -> which dimension the 'model' axis splits (if divisible).
# LSTM kernels [in, 4H] / [P, 4H] and bias [4H]: the fused gates, last dim.
# Embedding [V, E]: the vocabulary. Softmax kernel [P, V] and bias [V]: V.
_MODEL_DIM = {
    'input_kernel': -1,
    'recurrent_kernel': -1,
    'bias': -1,
    'projection_kernel': 0,
    'embedding': 0,
    'kernel': -1,
    'output_bias': -1,
}


class Partitioner:
  """The mesh and the shardings of a run.

  Args:
    model_parallelism: size of the ``model`` axis; the ``data`` axis gets
      ``len(devices) // model_parallelism`` devices.
    devices: the devices (default: ``jax.devices()``, all processes).
  """

  def __init__(self, model_parallelism: int = 1,
               devices: Sequence[jax.Device] | None = None):
    devices = list(jax.devices() if devices is None else devices)
    # Process-major order, so each process's devices hold a contiguous block
    # of the data axis (the rows its input pipeline produces).
    devices.sort(key=lambda d: (d.process_index, d.id))
    if model_parallelism < 1 or len(devices) % model_parallelism:
      raise errors.ConfigError(
          f'model_parallelism={model_parallelism} must divide the number of '
          f'devices ({len(devices)}).')
    self.mesh = Mesh(
        np.asarray(devices, dtype=object).reshape(
            len(devices) // model_parallelism, model_parallelism),
        (DATA, MODEL))

  @property
  def data_size(self) -> int:
    return self.mesh.shape[DATA]

  @property
  def model_size(self) -> int:
    return self.mesh.shape[MODEL]

  def sharding(self, spec: P) -> NamedSharding:
    return NamedSharding(self.mesh, spec)

  @property
  def replicated(self) -> NamedSharding:
    return self.sharding(P())

  def check_batch_size(self, global_batch_size: int, name: str) -> None:
    """Raises BatchSizeError unless the data axis divides the batch."""
    if global_batch_size % self.data_size:
      multiple = -(-global_batch_size // self.data_size) * self.data_size
      raise errors.BatchSizeError(
          f'Global {name}={global_batch_size} is not divisible by the '
          f'{self.data_size} data-parallel devices ({jax.device_count()} '
          f'devices / model_parallelism={self.model_size}). Set {name} to a '
          f'multiple of {self.data_size} (e.g. {multiple}).')

  # ------------------------------------------------------------ shardings --

  def batch_sharding(self, ndim: int = 2) -> NamedSharding:
    """Rows over ``data``."""
    return self.sharding(P(DATA, *([None] * (ndim - 1))))

  def carry_sharding(self) -> NamedSharding:
    """LSTM carry ``[layers, batch, features]``: batch over ``data``."""
    return self.sharding(P(None, DATA, None))

  def param_spec(self, path: Sequence[Any], shape: Sequence[int]) -> P:
    """The spec of a parameter (or optimiser-state copy of one)."""
    if self.model_size == 1 or not shape:
      return P()
    names = [str(getattr(k, 'key', getattr(k, 'name', ''))) for k in path]
    dim = _MODEL_DIM.get(names[-1]) if names else None
    if dim is None or shape[dim] % self.model_size:
      return P()
    spec = [None] * len(shape)
    spec[dim] = MODEL
    return P(*spec)

  def tree_shardings(self, abstract_tree: PyTree) -> PyTree:
    """NamedShardings of params / optimiser state, by parameter name."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: self.sharding(self.param_spec(path, leaf.shape)),
        abstract_tree)

  # -------------------------------------------------------------- batches --

  def global_batch(self, local_batch: Mapping[str, np.ndarray]
                   ) -> dict[str, jax.Array]:
    """This process's rows -> global arrays sharded over ``data``."""
    out = {}
    for key, value in local_batch.items():
      global_shape = (value.shape[0] * jax.process_count(), *value.shape[1:])
      out[key] = jax.make_array_from_process_local_data(
          self.batch_sharding(value.ndim), value, global_shape)
    return out
