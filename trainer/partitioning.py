"""The one place that builds the device mesh and the shardings.

A ``jax.sharding.Mesh`` with axes ``('data', 'model')`` over all devices of
all processes. Batches and the carry are split over ``data`` (data
parallelism). Parameters and optimiser state are placed by their *logical*
axis names (``nn.with_logical_partitioning`` in ``lstm_flax``; names in
``lstm_flax.axes``) through the config's ``logical_axis_rules``, as in
Flax's lm1b example: by default the LSTM's hidden units (``lstm_hidden``)
and the vocabulary (``vocab``) are split over ``model``, everything else is
replicated. LSTM kernels are ``[in, 4, H]``, so splitting ``H`` leaves all
four gates of a unit on one device: a recurrence step needs one all-gather
of ``h`` and no other collective. A parameter without logical names is an
error, never silently replicated.

``train_step`` / ``eval_step`` are jit-compiled with these shardings (no
``pmap``), and each process feeds only its rows of a global batch with
``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax.core import meta
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lstm_flax import axes, param_paths
from trainer import errors

PyTree = Any
DATA = 'data'
MODEL = 'model'
Rules = Sequence[tuple[str, Any]]


def _is_box(x: Any) -> bool:
  return isinstance(x, meta.AxisMetadata)


def check_named(boxed_params: PyTree) -> None:
  """Raises ConfigError naming every parameter without logical axis names
  (``lstm_flax.axes.check_all_named``)."""
  try:
    axes.check_all_named(boxed_params)
  except ValueError as e:
    raise errors.ConfigError(
        f'{e}. Declare them with nn.with_logical_partitioning(init, names) '
        '(see lstm_flax.axes) so that logical_axis_rules can place them.'
    ) from e


class Partitioner:
  """The mesh and the shardings of a run.

  Args:
    model_parallelism: size of the ``model`` axis; the ``data`` axis gets
      ``len(devices) // model_parallelism`` devices.
    rules: logical axis name -> mesh axis (or None) pairs.
    devices: the devices (default: ``jax.devices()``, all processes).
  """

  def __init__(self, model_parallelism: int = 1, rules: Rules = (),
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
    self.rules = tuple((str(a), b) for a, b in rules)

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

  def batch_sharding(self) -> NamedSharding:
    """Rows (the leading axis, any rank) over ``data``."""
    return self.sharding(P(DATA))

  def carry_sharding(self, ndim: int = 3) -> NamedSharding:
    """A carry leaf ``[layers, batch, features]``: batch over ``data``."""
    return self.sharding(P(None, DATA, *([None] * (ndim - 2))))

  def logical_spec(self, names: Sequence[str | None], shape: Sequence[int],
                   where: str = '') -> P:
    """The mesh spec of a value with logical axis ``names``.

    Raises:
      ConfigError: the mesh axis a rule maps to does not divide the size.
    """
    spec = nn.logical_to_mesh_axes(tuple(names), self.rules)
    for axis, (size, mesh_axes) in enumerate(zip(shape, spec)):
      if mesh_axes is None:
        continue
      parts = int(np.prod([self.mesh.shape[a] for a in (
          mesh_axes if isinstance(mesh_axes, tuple) else (mesh_axes,))]))
      if size % parts:
        raise errors.ConfigError(
            f'{where or "A parameter"} has {size} along its logical axis '
            f'{names[axis]!r}, which logical_axis_rules split over {parts} '
            f'devices ({mesh_axes!r}); choose sizes divisible by {parts} '
            f'(e.g. data.vocab_size) or drop the rule for {names[axis]!r}.')
    return spec

  def tree_shardings(self, boxed_tree: PyTree) -> PyTree:
    """NamedShardings of a tree whose leaves may be logically partitioned
    boxes (parameters and their optimiser-state copies); other leaves
    (counts, scalars) are replicated. The result has the unboxed tree's
    structure."""
    def leaf_sharding(path, leaf):
      if isinstance(leaf, nn.LogicallyPartitioned):
        return self.sharding(self.logical_spec(
            leaf.names, leaf.value.shape, param_paths.path_name(path)))
      return self.replicated
    return jax.tree_util.tree_map_with_path(leaf_sharding, boxed_tree,
                                            is_leaf=_is_box)

  # -------------------------------------------------------------- batches --

  def global_batch(self, local_batch: Mapping[str, np.ndarray]
                   ) -> dict[str, jax.Array]:
    """This process's rows -> global arrays sharded over ``data``."""
    out = {}
    for key, value in local_batch.items():
      global_shape = (value.shape[0] * jax.process_count(), *value.shape[1:])
      out[key] = jax.make_array_from_process_local_data(
          self.batch_sharding(), value, global_shape)
    return out
