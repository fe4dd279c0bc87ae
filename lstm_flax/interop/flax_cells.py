"""Flax ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell`` parameters <-> lstm_flax layers.

Flax's cells store one ``Dense`` per gate: ``i{g}`` (input, no bias) and
``h{g}`` (hidden, with bias) for ``g in 'ifgo'``. ``from_flax_lstm_cells``
converts every such cell in a whole model's parameter tree, for swapping in
``lstm_flax.LSTMCell``; ``to_flax_lstm_cells`` goes back.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

import numpy as np

from lstm_flax import kernel, param_paths
from lstm_flax.interop import common

_GATES = 'ifgo'


def _check_cell_layer(params: Mapping[str, np.ndarray], where: str) -> None:
  """``kernel.check_params`` for a layer whose arrays may have the same
  leading axes (``nn.scan`` with ``variable_axes={'params': 0}`` stacks a
  cell's parameters: ``[n, in, 4, H]``, ``[n, P, 4, H]``, ``[n, 4, H]``)."""
  lead = max(np.ndim(params.get(kernel.RECURRENT_KERNEL, np.zeros((0,) * 3))) - 3, 0)
  shapes = {k: np.shape(v)[:lead] for k, v in params.items()}
  if len(set(shapes.values())) > 1:
    raise ValueError(f'{where} have different leading (scanned) axes: {shapes}.')
  kernel.check_params({k: np.asarray(v)[(0,) * lead] for k, v in params.items()}, where)


def from_flax_lstm_cell(cell_params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Converts ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell`` parameters to one layer's.

  The result is what ``lstm_flax.LSTMCell`` (and one layer of ``LSTM``) takes:
  the same function, ``b = b_h`` (Flax's input denses have no bias).

  Args:
    cell_params: the cell's parameter dict ``{'ii': {'kernel' [in, H]}, ...,
      'ho': {'kernel' [H, H], 'bias' [H]}}`` (e.g. ``variables['params']['cell']``
      of an ``nn.RNN``). Arrays may share leading axes (a cell under
      ``nn.scan`` with ``variable_axes={'params': 0}``); they are kept.

  Returns:
    ``{'input_kernel': [*lead, in, 4, H], 'recurrent_kernel': [*lead, H, 4, H],
    'bias': [*lead, 4, H]}`` (numpy).
  """
  expected = [f'{src}{g}' for src in 'ih' for g in _GATES]
  missing = [k for k in expected if k not in cell_params]
  if missing:
    raise ValueError(
        f'Flax LSTMCell params are missing {missing}; expected {expected} '
        f'(got {sorted(cell_params)}). Pass the cell\'s own params, e.g. '
        "variables['params']['cell'] of an nn.RNN."
    )
  try:
    input_kernel = np.stack([common.to_numpy(cell_params[f'i{g}']['kernel']) for g in _GATES], -2)
    recurrent_kernel = np.stack([common.to_numpy(cell_params[f'h{g}']['kernel']) for g in _GATES], -2)
    bias = np.stack([common.to_numpy(cell_params[f'h{g}']['bias']) for g in _GATES], -2)
  except (KeyError, ValueError) as e:
    raise ValueError(f'Flax LSTMCell params have a missing or mismatched entry: {e}') from None
  params = {
      kernel.INPUT_KERNEL: input_kernel,
      kernel.RECURRENT_KERNEL: recurrent_kernel,
      kernel.BIAS: bias,
  }
  _check_cell_layer(params, 'Flax LSTMCell params')
  return params


def to_flax_lstm_cell(layer_params: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
  """Converts one layer's parameters to ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell`` ones.

  The inverse of ``from_flax_lstm_cell``: ``{'input_kernel' [*lead, in, 4,
  H], 'recurrent_kernel' [*lead, H, 4, H], 'bias' [*lead, 4, H]}`` (boxed or
  not) -> ``{'i{g}': {'kernel' [*lead, in, H]}, 'h{g}': {'kernel' [*lead, H,
  H], 'bias' [*lead, H]}}`` for ``g`` in ``i f g o``. A ``projection_kernel``
  (``proj_size``) has no Flax equivalent and raises ValueError.
  """
  layer_params = {k: common.to_numpy(v) for k, v in layer_params.items()}
  _check_cell_layer(layer_params, 'layer params')
  if kernel.PROJECTION_KERNEL in layer_params:
    raise ValueError('Flax LSTM cells have no projection; this layer has a projection_kernel.')
  split = lambda a: [a[..., k, :].copy() for k in range(kernel.NUM_GATES)]  # noqa: E731
  out = {}
  for g, w_i, w_h, b in zip(
      _GATES,
      split(layer_params[kernel.INPUT_KERNEL]),
      split(layer_params[kernel.RECURRENT_KERNEL]),
      split(layer_params[kernel.BIAS]),
  ):
    out[f'i{g}'] = {'kernel': w_i}
    out[f'h{g}'] = {'kernel': w_h, 'bias': b}
  return out


_FLAX_CELL_KEYS = frozenset(f'{src}{g}' for src in 'ih' for g in _GATES)
_LAYER_KEYS = frozenset((kernel.INPUT_KERNEL, kernel.RECURRENT_KERNEL, kernel.BIAS))


def _map_subtrees(
    tree: Mapping[str, Any],
    is_target: Callable[[Mapping[str, Any]], bool],
    convert: Callable[[Mapping[str, Any]], dict],
    rename: Callable[[str], str],
    what: str,
) -> dict:
  """``tree`` (nested mappings, as plain dicts) with every sub-mapping for
  which ``is_target`` holds replaced by ``convert`` of it, under the key
  ``rename(key)``; other entries are kept as they are."""
  found = []

  def walk(node: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(node, Mapping):
      return node
    out = {}
    for key, value in node.items():
      where = param_paths.path_name(path + (str(key),))
      if isinstance(value, Mapping) and is_target(value):
        found.append(where)
        try:
          value = convert(value)
        except ValueError as e:
          raise ValueError(f'{where}: {e}') from None
        new_key = rename(key)
        if new_key in out or (new_key != key and new_key in node):
          raise ValueError(
              f'{where}: renaming it to {new_key!r} would clash with another entry; name the '
              'cells explicitly (name=...) so that the two models share the names.')
        key = new_key
      else:
        value = walk(value, path + (str(key),))
      out[key] = value
    return out

  out = walk(tree, ())
  if not found:
    raise ValueError(f'found no {what} in the parameter tree (top-level keys {sorted(tree)}).')
  return out


def _renamer(old: str, new: Optional[str]) -> Callable[[str], str]:
  """Renames Flax's automatic module names ``[Scan...]{old}_{n}`` to
  ``[Scan...]{new}_{n}`` (``new=None``: keeps every name)."""
  # Prefixes are the lifted transforms' (``nn.scan(Cell)`` is ``ScanCell``).
  pattern = re.compile(rf'^((?:[A-Z][a-z]+)*){old}_(\d+)$')

  def rename(key: str) -> str:
    match = pattern.match(key) if new is not None else None
    if match is None or match.group(1).endswith('Optimized'):
      return key
    return f'{match.group(1)}{new}_{match.group(2)}'

  return rename


def from_flax_lstm_cells(
    tree: Mapping[str, Any], *, rename_auto_names: bool = True
) -> dict[str, Any]:
  """Converts every Flax LSTM cell in a model's parameters, to swap in ``lstm_flax.LSTMCell``.

  Walks ``tree`` (``variables`` or ``variables['params']`` of any Linen
  model) and replaces each ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell``
  parameter dict (keys ``ii if ig io hi hf hg ho``) with
  ``from_flax_lstm_cell`` of it. Everything else is kept as it is, so the
  result is the variables of the same model with ``lstm_flax.LSTMCell(H)``
  in place of the Flax cells (inside ``nn.RNN``, ``nn.Bidirectional``,
  ``nn.scan``, ...), which computes the same outputs and carries.

  Args:
    tree: nested mappings of arrays (a Flax parameter tree).
    rename_auto_names: a cell built without ``name=`` gets Flax's automatic
      name, ``OptimizedLSTMCell_0`` (``ScanOptimizedLSTMCell_0`` under
      ``nn.scan``); in the swapped model it is ``LSTMCell_0``
      (``ScanLSTMCell_0``). True renames the converted cells' entries so.
      A model that mixes ``nn.LSTMCell`` and ``nn.OptimizedLSTMCell`` without
      names may clash (ValueError): name its cells.

  Returns:
    The converted tree (plain dicts; the cells' arrays as numpy).

  Raises:
    ValueError: no Flax LSTM cell in ``tree``, or one with mismatched shapes
      (the message names its path).
  """
  return _map_subtrees(tree, lambda d: set(d) == _FLAX_CELL_KEYS, from_flax_lstm_cell,
                       _renamer('OptimizedLSTMCell', 'LSTMCell' if rename_auto_names else None),
                       'Flax LSTM cell parameters (keys ii, if, ..., ho)')


def to_flax_lstm_cells(
    tree: Mapping[str, Any], *, auto_name_class: Optional[str] = 'OptimizedLSTMCell'
) -> dict[str, Any]:
  """The inverse of ``from_flax_lstm_cells``.

  Every layer parameter dict in ``tree`` (``lstm_flax.LSTMCell``'s, or a
  layer of ``LSTM``: keys ``input_kernel``, ``recurrent_kernel``, ``bias``,
  boxed or not) becomes ``to_flax_lstm_cell`` of it; everything else is
  kept. ``auto_name_class``: the Flax cell class the automatic names
  ``[Scan]LSTMCell_{n}`` are renamed for (``'OptimizedLSTMCell'``;
  ``'LSTMCell'`` or None keeps them, as for ``nn.LSTMCell``).
  """
  return _map_subtrees(tree, lambda d: _LAYER_KEYS <= set(d), to_flax_lstm_cell,
                       _renamer('LSTMCell', auto_name_class),
                       'lstm_flax layer parameters (input_kernel, recurrent_kernel, bias)')

