"""Weight conversion: PyTorch ``nn.LSTM`` and Flax ``nn.LSTMCell`` <-> lstm_flax.

PyTorch's ``nn.LSTM`` stores, per layer ``k`` and direction (suffix
``_reverse``), ``weight_ih_l{k}`` ``[4H, in]``, ``weight_hh_l{k}`` ``[4H, P]``,
``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``[4H]`` and, with ``proj_size``,
``weight_hr_l{k}`` ``[P, H]``, gate order ``i f g o`` (the same as ours). Our
layout transposes the matrices, splits ``4H`` into a gate axis (``[in, 4, H]``,
``[P, 4, H]``, ``[4, H]``) and keeps one bias (``b_ih + b_hh``).

Flax's ``nn.LSTMCell`` and ``nn.OptimizedLSTMCell`` store one ``Dense`` per
gate: ``i{g}`` (input, no bias) and ``h{g}`` (hidden, with bias) for
``g in 'ifgo'``.

Nothing here imports torch: state dicts may hold torch tensors or numpy arrays,
and ``to_torch_state_dict`` returns numpy arrays (``torch.from_numpy`` them).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from lstm_flax import kernel
from lstm_flax.spec import layer_name

_TORCH_KEY = re.compile(r'^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$')
_GATES = 'ifgo'


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, 'detach'):  # a torch tensor
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def from_torch_state_dict(
    state_dict: Mapping[str, Any], prefix: str = ''
) -> dict[str, dict[str, np.ndarray]]:
  """Converts a PyTorch ``nn.LSTM`` state_dict to ``LSTM`` parameters.

  Args:
    state_dict: ``lstm.state_dict()`` (torch tensors or numpy arrays), or a
      whole model's state_dict with ``prefix`` naming the LSTM (e.g. ``'rnn.'``).
    prefix: key prefix of the LSTM's entries.

  Returns:
    ``{'layer_0': {...}, 'layer_0_reverse': {...}, ...}``, to use as
    ``{'params': ...}`` of ``lstm_flax.LSTM(hidden_size=H, num_layers=L,
    bidirectional=..., proj_size=...)``. ``bias`` is ``bias_ih + bias_hh``.

  Raises:
    ValueError: no LSTM keys under ``prefix``, a missing or unexpected key, or
      shapes that do not fit together; the message names the key.
  """
  entries: dict[tuple[int, bool], dict[str, np.ndarray]] = {}
  unexpected = []
  for key, value in state_dict.items():
    if not key.startswith(prefix):
      continue
    match = _TORCH_KEY.match(key[len(prefix):])
    if match is None:
      unexpected.append(key)
      continue
    name, layer, reverse = match.group(1), int(match.group(2)), bool(match.group(3))
    entries.setdefault((layer, reverse), {})[name] = _to_numpy(value)
  if unexpected:
    raise ValueError(
        f'state_dict has keys that are not nn.LSTM weights under prefix '
        f'{prefix!r}: {unexpected}. Pass prefix= to select the LSTM.'
    )
  if not entries:
    raise ValueError(
        f'state_dict has no nn.LSTM weights under prefix {prefix!r} (keys like '
        f"'{prefix}weight_ih_l0'); got keys {sorted(state_dict)[:8]}."
    )
  num_layers = max(layer for layer, _ in entries) + 1
  bidirectional = any(reverse for _, reverse in entries)
  params = {}
  for layer in range(num_layers):
    for reverse in (False, True) if bidirectional else (False,):
      suffix = f'_l{layer}' + ('_reverse' if reverse else '')
      weights = entries.get((layer, reverse), {})
      for required in ('weight_ih', 'weight_hh'):
        if required not in weights:
          raise ValueError(f"state_dict is missing '{prefix}{required}{suffix}'.")
      w_ih, w_hh = weights['weight_ih'], weights['weight_hh']
      four_h = w_ih.shape[0]
      if w_ih.ndim != 2 or four_h % 4 or w_hh.ndim != 2 or w_hh.shape[0] != four_h:
        raise ValueError(
            f'{prefix}weight_ih{suffix} {w_ih.shape} and {prefix}weight_hh{suffix} '
            f'{w_hh.shape} must be [4H, in] and [4H, P] with the same 4H.'
        )
      has_bias = [k in weights for k in ('bias_ih', 'bias_hh')]
      if any(has_bias) and not all(has_bias):
        missing = 'bias_hh' if has_bias[0] else 'bias_ih'
        raise ValueError(f"state_dict is missing '{prefix}{missing}{suffix}'.")
      bias = np.zeros((four_h,), w_ih.dtype)
      if all(has_bias):
        for name in ('bias_ih', 'bias_hh'):
          if weights[name].shape != (four_h,):
            raise ValueError(
                f'{prefix}{name}{suffix} must have shape ({four_h},); got '
                f'{weights[name].shape}.'
            )
        bias = weights['bias_ih'] + weights['bias_hh']
      layer_params = {
          kernel.INPUT_KERNEL: _gate_axis(w_ih.T),
          kernel.RECURRENT_KERNEL: _gate_axis(w_hh.T),
          kernel.BIAS: _gate_axis(bias),
      }
      if 'weight_hr' in weights:
        layer_params[kernel.PROJECTION_KERNEL] = weights['weight_hr'].T.copy()
      try:
        kernel.check_params(layer_params, f'state_dict layer {layer}{" reverse" if reverse else ""}')
      except ValueError as e:
        raise ValueError(f'{e} (converted from {prefix}*{suffix})') from None
      params[layer_name(layer, reverse)] = layer_params
  _check_layer_sizes(params)
  return params


def _gate_axis(w: np.ndarray) -> np.ndarray:
  """``[..., 4H]`` (torch's gate blocks ``i f g o``) -> ``[..., 4, H]``, a copy."""
  w = np.asarray(w)
  return w.reshape(w.shape[:-1] + (kernel.NUM_GATES, w.shape[-1] // kernel.NUM_GATES)).copy()


def _fused(w: Any) -> np.ndarray:
  """``[..., 4, H]`` -> ``[..., 4H]`` (the inverse of ``_gate_axis``)."""
  w = np.asarray(w)
  return w.reshape(w.shape[:-2] + (-1,))


def _check_layer_sizes(params: Mapping[str, Mapping[str, np.ndarray]]) -> None:
  """All layers of a stack share H and P."""
  sizes = {
      name: (kernel.hidden_size(p), kernel.output_size(p)) for name, p in params.items()
  }
  if len(set(sizes.values())) > 1:
    raise ValueError(f'layers have different (hidden, proj) sizes: {sizes}.')


def to_torch_state_dict(
    params: Mapping[str, Mapping[str, Any]], prefix: str = ''
) -> dict[str, np.ndarray]:
  """Converts ``LSTM`` parameters to a PyTorch ``nn.LSTM`` state_dict (numpy arrays).

  ``bias_ih`` receives the whole bias and ``bias_hh`` zeros, which computes the
  same function. Load with ``lstm.load_state_dict({k: torch.from_numpy(v) ...})``.
  """
  params = params.get('params', params)
  state_dict = {}
  for name, layer_params in params.items():
    match = re.fullmatch(r'layer_(\d+)(_reverse)?', name)
    if match is None:
      raise ValueError(f'unexpected LSTM parameter entry {name!r}; expected layer_<k>[_reverse].')
    kernel.check_params(layer_params, name)
    suffix = f'_l{match.group(1)}' + (match.group(2) or '')
    bias = _fused(layer_params[kernel.BIAS])
    state_dict[f'{prefix}weight_ih{suffix}'] = _fused(layer_params[kernel.INPUT_KERNEL]).T.copy()
    state_dict[f'{prefix}weight_hh{suffix}'] = _fused(layer_params[kernel.RECURRENT_KERNEL]).T.copy()
    state_dict[f'{prefix}bias_ih{suffix}'] = bias.copy()
    state_dict[f'{prefix}bias_hh{suffix}'] = np.zeros_like(bias)
    if kernel.PROJECTION_KERNEL in layer_params:
      state_dict[f'{prefix}weight_hr{suffix}'] = np.asarray(
          layer_params[kernel.PROJECTION_KERNEL]
      ).T.copy()
  return state_dict


def from_flax_lstm_cell(cell_params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Converts ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell`` parameters to one layer's.

  Args:
    cell_params: the cell's parameter dict ``{'ii': {'kernel'}, ..., 'ho':
      {'kernel', 'bias'}}`` (e.g. ``variables['params']['cell']`` of an
      ``nn.RNN``).

  Returns:
    ``{'input_kernel': [in, 4, H], 'recurrent_kernel': [H, 4, H], 'bias': [4, H]}``.
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
    input_kernel = np.stack([_to_numpy(cell_params[f'i{g}']['kernel']) for g in _GATES], -2)
    recurrent_kernel = np.stack([_to_numpy(cell_params[f'h{g}']['kernel']) for g in _GATES], -2)
    bias = np.stack([_to_numpy(cell_params[f'h{g}']['bias']) for g in _GATES], -2)
  except (KeyError, ValueError) as e:
    raise ValueError(f'Flax LSTMCell params have a missing or mismatched entry: {e}') from None
  params = {
      kernel.INPUT_KERNEL: input_kernel,
      kernel.RECURRENT_KERNEL: recurrent_kernel,
      kernel.BIAS: bias,
  }
  kernel.check_params(params, 'Flax LSTMCell params')
  return params


def to_flax_lstm_cell(layer_params: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
  """Converts one layer's parameters to ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell`` ones."""
  kernel.check_params(layer_params, 'layer params')
  if kernel.PROJECTION_KERNEL in layer_params:
    raise ValueError('Flax LSTM cells have no projection; this layer has a projection_kernel.')
  h = kernel.hidden_size(layer_params)
  split = lambda a: [np.asarray(a)[..., k, :] for k in range(kernel.NUM_GATES)]  # noqa: E731
  out = {}
  for g, w_i, w_h, b in zip(
      _GATES,
      split(layer_params[kernel.INPUT_KERNEL]),
      split(layer_params[kernel.RECURRENT_KERNEL]),
      split(layer_params[kernel.BIAS]),
  ):
    assert w_h.shape[-1] == h
    out[f'i{g}'] = {'kernel': w_i}
    out[f'h{g}'] = {'kernel': w_h, 'bias': b}
  return out
