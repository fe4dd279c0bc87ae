"""PyTorch ``nn.LSTM`` state dicts <-> ``lstm_flax.LSTM`` parameters.

PyTorch's ``nn.LSTM`` stores, per layer ``k`` and direction (suffix
``_reverse``), ``weight_ih_l{k}`` ``[4H, in]``, ``weight_hh_l{k}`` ``[4H, P]``,
``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``[4H]`` and, with ``proj_size``,
``weight_hr_l{k}`` ``[P, H]``, gate order ``i f g o`` (the same as ours). Our
layout transposes the matrices, splits ``4H`` into a gate axis (``[in, 4, H]``,
``[P, 4, H]``, ``[4, H]``) and keeps one bias (``b_ih + b_hh``). Torch is
never imported: state dicts may hold torch tensors or numpy arrays, and
``to_torch_state_dict`` returns numpy arrays (``torch.from_numpy`` them).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from lstm_flax import kernel
from lstm_flax.interop import common
from lstm_flax.spec import layer_name

_TORCH_KEY = re.compile(r'^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$')


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
    entries.setdefault((layer, reverse), {})[name] = common.to_numpy(value)
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
      w_hr = weights.get('weight_hr')
      params[layer_name(layer, reverse)] = common.layer_params(
          w_ih.T, w_hh.T, bias, None if w_hr is None else w_hr.T,
          f'state_dict layer {layer}{" reverse" if reverse else ""}',
          f'converted from {prefix}*{suffix}',
      )
  common.check_stack(params)
  return params



def to_torch_state_dict(
    params: Mapping[str, Mapping[str, Any]], prefix: str = ''
) -> dict[str, np.ndarray]:
  """Converts ``LSTM`` parameters to a PyTorch ``nn.LSTM`` state_dict (numpy arrays).

  ``bias_ih`` receives the whole bias and ``bias_hh`` zeros, which computes the
  same function. Load with ``lstm.load_state_dict({k: torch.from_numpy(v) ...})``.
  """
  state_dict = {}
  for layer, reverse, layer_params in common.layers(params):
    suffix = f'_l{layer}' + ('_reverse' if reverse else '')
    bias = common.fused(layer_params[kernel.BIAS])
    state_dict[f'{prefix}weight_ih{suffix}'] = common.fused(layer_params[kernel.INPUT_KERNEL]).T.copy()
    state_dict[f'{prefix}weight_hh{suffix}'] = common.fused(layer_params[kernel.RECURRENT_KERNEL]).T.copy()
    state_dict[f'{prefix}bias_ih{suffix}'] = bias.copy()
    state_dict[f'{prefix}bias_hh{suffix}'] = np.zeros_like(bias)
    if kernel.PROJECTION_KERNEL in layer_params:
      state_dict[f'{prefix}weight_hr{suffix}'] = np.asarray(
          layer_params[kernel.PROJECTION_KERNEL]
      ).T.copy()
  return state_dict

