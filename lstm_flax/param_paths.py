"""Parameter paths as strings: the one ``'/'``-joined naming of a tree's leaves.

``{'lstm': {'layer_0': {'bias': x}}}`` has the leaf ``'lstm/layer_0/bias'``.
Exports (``params.safetensors``), sharding messages and parameter transfer
between models all name parameters so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import traverse_util

SEPARATOR = '/'


def path_name(path: Sequence[Any]) -> str:
  """A key path (``jax.tree_util`` keys: ``DictKey``, ``GetAttrKey``,
  ``SequenceKey``, or plain strings) as ``'lstm/layer_0/bias'``."""
  return SEPARATOR.join(
      str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def flatten(tree: Any) -> dict[str, Any]:
  """Nested ``{'lstm': {'layer_0': {'bias': x}}}`` -> ``{'lstm/layer_0/bias': x}``
  (every leaf of ``tree``, in ``jax.tree_util`` order)."""
  return {path_name(path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of :func:`flatten` for nested dicts."""
  return traverse_util.unflatten_dict(dict(flat), sep=SEPARATOR)
