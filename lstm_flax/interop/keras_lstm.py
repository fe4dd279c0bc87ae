"""Keras ``layers.LSTM`` weights (single, ``Bidirectional``, stacked) <-> lstm_flax.

Keras' ``layers.LSTM`` stores ``kernel [in, 4u]``, ``recurrent_kernel [u,
4u]`` and ``bias [4u]`` (``layer.get_weights()``), gate order ``i f c o``
(``c`` is our ``g``), sigmoid gates and tanh activations: our layout with the
gate axis fused. Keras is never imported: layers are read through their
public attributes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from lstm_flax import kernel
from lstm_flax.interop import common
from lstm_flax.spec import layer_name

# ndims of one stack entry's weight list -> number of directions.
_KERAS_WEIGHT_NDIMS = {(2, 2, 1): 1, (2, 2): 1, (2, 2, 1, 2, 2, 1): 2, (2, 2, 2, 2): 2}


def _is_keras_layer(obj: Any) -> bool:
  return hasattr(obj, 'get_weights')


def _is_weights_list(obj: Any) -> bool:
  """A list of arrays (``layer.get_weights()``), not a list of layers or lists."""
  return (isinstance(obj, Sequence) and not isinstance(obj, str) and len(obj) > 0
          and all(hasattr(w, 'shape') and not _is_keras_layer(w) for w in obj))


def _keras_lstm_weights(layer: Any, where: str) -> list[np.ndarray]:
  """``layer.get_weights()`` of a Keras ``LSTM``, after checking that it
  computes what ``lstm_flax`` does (sigmoid gates, tanh activations)."""
  for attr, expected in (('activation', 'tanh'), ('recurrent_activation', 'sigmoid')):
    fn = getattr(layer, attr, None)
    name = getattr(fn, '__name__', fn)
    if fn is not None and name != expected:
      raise ValueError(
          f'{where} has {attr}={name!r}; lstm_flax computes {attr}={expected!r} '
          '(Keras\' LSTM default), so the converted layer would compute another function.')
  return [common.to_numpy(w) for w in layer.get_weights()]


def _keras_directions(entry: Any, where: str) -> list[list[np.ndarray]]:
  """One stack entry (a Keras layer or weight list) -> its directions'
  weight lists: ``[forward]`` or ``[forward, backward]``."""
  if _is_keras_layer(entry) and hasattr(entry, 'forward_layer'):  # Bidirectional
    merge_mode = getattr(entry, 'merge_mode', 'concat')
    if merge_mode != 'concat':
      raise ValueError(
          f"{where} is a Bidirectional with merge_mode={merge_mode!r}; lstm_flax's "
          "bidirectional LSTM concatenates the directions (merge_mode='concat'). Pass "
          'layer.get_weights() to convert the weights anyway, and merge the two halves '
          'of the outputs yourself.')
    forward, backward = entry.forward_layer, entry.backward_layer
    if getattr(forward, 'go_backwards', False) or not getattr(backward, 'go_backwards', True):
      raise ValueError(
          f'{where}: expected forward_layer.go_backwards=False and '
          'backward_layer.go_backwards=True (Keras\' default Bidirectional).')
    return [_keras_lstm_weights(forward, f'{where} forward_layer'),
            _keras_lstm_weights(backward, f'{where} backward_layer')]
  if _is_keras_layer(entry):
    if getattr(entry, 'go_backwards', False):
      raise ValueError(
          f'{where} is an LSTM with go_backwards=True: it reads the sequence reversed and '
          'returns its outputs in reversed order, which lstm_flax.LSTM does not. Pass '
          'layer.get_weights() to convert the weights anyway, and run the LSTM on '
          'x[:, ::-1].')
    return [_keras_lstm_weights(entry, where)]
  if not _is_weights_list(entry):
    raise TypeError(
        f'{where} must be a Keras LSTM or Bidirectional(LSTM) layer or its get_weights() '
        f'list; got {type(entry).__name__}.')
  arrays = [common.to_numpy(w) for w in entry]
  ndims = tuple(a.ndim for a in arrays)
  if ndims not in _KERAS_WEIGHT_NDIMS:
    raise ValueError(
        f'{where} weights have shapes {[a.shape for a in arrays]}; expected an LSTM\'s '
        '[kernel [in, 4u], recurrent_kernel [u, 4u], bias [4u]] (bias only with '
        'use_bias=True) or a Bidirectional\'s forward then backward lists.')
  if _KERAS_WEIGHT_NDIMS[ndims] == 1:
    return [arrays]
  half = len(arrays) // 2
  return [arrays[:half], arrays[half:]]


def _from_keras_weights(weights: list[np.ndarray], where: str) -> dict[str, np.ndarray]:
  """``[kernel [in, 4u], recurrent_kernel [u, 4u](, bias [4u])]`` -> one layer's params."""
  w_x, w_h = weights[0], weights[1]
  if w_h.ndim != 2 or w_h.shape[1] != 4 * w_h.shape[0]:
    raise ValueError(f'{where} recurrent_kernel must be [units, 4 * units]; got {w_h.shape}.')
  units = w_h.shape[0]
  if w_x.ndim != 2 or w_x.shape[1] != 4 * units:
    raise ValueError(
        f'{where} kernel must be [in, 4 * units] = [in, {4 * units}] to match '
        f'recurrent_kernel {w_h.shape}; got {w_x.shape}.')
  bias = weights[2] if len(weights) == 3 else np.zeros((4 * units,), w_x.dtype)
  if bias.shape != (4 * units,):
    raise ValueError(f'{where} bias must be [4 * units] = ({4 * units},); got {bias.shape}.')
  return common.layer_params(w_x, w_h, bias, None, where, 'converted from Keras')


def from_keras_lstm(layers: Any) -> dict[str, dict[str, np.ndarray]]:
  """Converts Keras ``LSTM`` weights (single, ``Bidirectional``, stacked) to ``LSTM`` params.

  Keras' ``LSTM(u)`` computes what ``lstm_flax.LSTM(u)`` does: gate order
  ``i f c o`` (ours ``i f g o``), ``recurrent_activation='sigmoid'``,
  ``activation='tanh'``, one bias (``unit_forget_bias`` only changes its
  initial value). ``Bidirectional(LSTM(u, return_sequences=True))`` (merge
  mode ``'concat'``) flips its backward layer's outputs back to input order,
  so its ``[batch, time, 2u]`` outputs line up with ours, forward features
  first. Final states: Keras returns ``[h, c]`` per direction
  (``Bidirectional``: ``h_fw, c_fw, h_bw, c_bw``); ours are stacked,
  ``carry.h[layer * D + direction]`` and likewise ``carry.c``. Padding: with a
  ``mask`` of right-padded sequences a ``Bidirectional`` gives the same valid
  outputs and final states as ``lengths=``; a lone ``LSTM`` repeats its last
  valid output at padded steps where ours outputs zeros.

  Args:
    layers: one stack entry, or a sequence of them (stacked layers, bottom
      first; each reads the one below's sequence). An entry is a Keras
      ``LSTM`` layer, a ``Bidirectional`` wrapping one, or their
      ``get_weights()``: ``[kernel [in, 4u], recurrent_kernel [u, 4u], bias
      [4u]]`` (no bias with ``use_bias=False``), a ``Bidirectional``'s the
      forward layer's list then the backward one's. Entries are all
      unidirectional or all bidirectional.

  Returns:
    ``{'layer_0': {...}[, 'layer_0_reverse': {...}], 'layer_1': ...}``
    (numpy), the params of ``lstm_flax.LSTM(hidden_size=u,
    num_layers=len(layers), bidirectional=...)``.

  Raises:
    ValueError: weights whose shapes do not fit (the message names the layer,
      the array and the expected shape), layers that do not stack, or a
      layer that computes something else (other activations, ``go_backwards``
      outside ``Bidirectional``, a merge mode other than ``'concat'``).
  """
  if isinstance(layers, Mapping):
    raise TypeError(
        'from_keras_lstm takes Keras layers or get_weights() lists (one, or a list of them), '
        f'not a mapping (got keys {sorted(layers)[:8]}).')
  single = _is_keras_layer(layers) or _is_weights_list(layers)
  entries = [layers] if single else list(layers)
  if not entries:
    raise ValueError('from_keras_lstm got no layers.')
  params = {}
  num_directions = None
  for index, entry in enumerate(entries):
    where = f'Keras layer {index}'
    directions = _keras_directions(entry, where)
    if num_directions is not None and len(directions) != num_directions:
      raise ValueError(
          f'{where} has {len(directions)} direction(s) but the layers below have '
          f'{num_directions}; a stack is all Bidirectional or all unidirectional.')
    num_directions = len(directions)
    for reverse, weights in zip((False, True), directions):
      name = f'{where}{" backward" if reverse else ""}'
      if len(weights) not in (2, 3):
        raise ValueError(f'{name} must have 2 or 3 weight arrays; got {len(weights)}.')
      params[layer_name(index, reverse)] = _from_keras_weights(weights, name)
  common.check_stack(params)
  return params


def to_keras_lstm(
    params: Mapping[str, Any], *, use_bias: bool = True
) -> list[list[np.ndarray]]:
  """Converts ``LSTM`` params to Keras weight lists, one per layer, for ``set_weights``.

  Args:
    params: ``lstm_flax.LSTM`` parameters (``{'layer_0': ..., ...}`` or
      ``{'params': ...}``), without ``proj_size`` (Keras' LSTM has no
      projection).
    use_bias: the Keras layers' ``use_bias``; with False the biases must be
      zero and are left out.

  Returns:
    ``weights[k]`` for layer ``k``: ``[kernel [in, 4u], recurrent_kernel [u,
    4u], bias [4u]]`` for ``keras.layers.LSTM(u).set_weights``, or for a
    bidirectional stack the forward list then the backward one, as
    ``Bidirectional(LSTM(u)).set_weights`` takes (numpy).
  """
  entries = common.layers(params)
  weights: list[list[np.ndarray]] = [[] for _ in range(entries[-1][0] + 1)]
  for layer, reverse, layer_params in entries:
    name = layer_name(layer, reverse)
    if kernel.PROJECTION_KERNEL in layer_params:
      raise ValueError(f'{name} has a projection_kernel (proj_size); Keras\' LSTM has none.')
    bias = common.fused(layer_params[kernel.BIAS]).copy()
    weights[layer] += [common.fused(layer_params[kernel.INPUT_KERNEL]).copy(),
                       common.fused(layer_params[kernel.RECURRENT_KERNEL]).copy()]
    if use_bias:
      weights[layer].append(bias)
    elif np.any(bias != 0):
      raise ValueError(f'{name} has a non-zero bias; it needs use_bias=True.')
  return weights

