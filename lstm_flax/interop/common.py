"""What the converters of ``lstm_flax.interop`` share: arrays as numpy, and
one layer's parameters from (and to) fused-gate matrices ``[..., 4H]``, checked.

Our layout: ``input_kernel [in, 4, H]``, ``recurrent_kernel [P, 4, H]``,
``bias [4, H]`` and optionally ``projection_kernel [H, P]`` per layer
direction, named ``layer_<k>[_reverse]`` in a stack (``lstm_flax.LSTM``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import numpy as np

from lstm_flax import kernel
from lstm_flax.spec import layer_name

_LAYER_KEY = re.compile(r'layer_(\d+)(_reverse)?')


def to_numpy(value: Any) -> np.ndarray:
  """A numpy array of a numpy/JAX array, a torch tensor (without importing
  torch) or a Flax metadata box."""
  if hasattr(value, 'unbox'):  # a Flax metadata box (nn.LogicallyPartitioned)
    value = value.unbox()
  if hasattr(value, 'detach'):  # a torch tensor
    value = value.detach().cpu().numpy()
  return np.asarray(value)



def layer_params(
    input_kernel: np.ndarray,  # [in, 4H], gate blocks i f g o
    recurrent_kernel: np.ndarray,  # [P, 4H]
    bias: np.ndarray,  # [4H]
    projection_kernel: Optional[np.ndarray],  # [H, P] or None
    where: str,
    source: str,
) -> dict[str, np.ndarray]:
  """One layer direction's parameters (copies) from fused-gate matrices, checked.

  Errors name ``where`` (our layer) and ``source`` (the foreign arrays).
  """
  layer_params = {
      kernel.INPUT_KERNEL: gate_axis(input_kernel),
      kernel.RECURRENT_KERNEL: gate_axis(recurrent_kernel),
      kernel.BIAS: gate_axis(bias),
  }
  if projection_kernel is not None:
    layer_params[kernel.PROJECTION_KERNEL] = np.array(projection_kernel)
  try:
    kernel.check_params(layer_params, where)
  except ValueError as e:
    raise ValueError(f'{e} ({source})') from None
  return layer_params


def gate_axis(w: np.ndarray) -> np.ndarray:
  """``[..., 4H]`` (torch's gate blocks ``i f g o``) -> ``[..., 4, H]``, a copy."""
  w = np.asarray(w)
  return w.reshape(w.shape[:-1] + (kernel.NUM_GATES, w.shape[-1] // kernel.NUM_GATES)).copy()


def fused(w: Any) -> np.ndarray:
  """``[..., 4, H]`` -> ``[..., 4H]`` (the inverse of ``gate_axis``)."""
  w = np.asarray(w)
  return w.reshape(w.shape[:-2] + (-1,))


def check_stack(params: Mapping[str, Mapping[str, np.ndarray]]) -> None:
  """All layers of a stack share H and P, and layer ``k > 0`` reads ``D * P``
  features (the previous layer's directions, concatenated)."""
  sizes = {
      name: (kernel.hidden_size(p), kernel.output_size(p)) for name, p in params.items()
  }
  if len(set(sizes.values())) > 1:
    raise ValueError(f'layers have different (hidden, proj) sizes: {sizes}.')
  directions = 2 if any(name.endswith('_reverse') for name in params) else 1
  for name, p in params.items():
    in_features = p[kernel.INPUT_KERNEL].shape[0]
    if not name.startswith('layer_0') and in_features != directions * kernel.output_size(p):
      raise ValueError(
          f'{name} input_kernel reads {in_features} features, but the layer below gives '
          f'{directions} direction(s) x {kernel.output_size(p)} = '
          f'{directions * kernel.output_size(p)}; the layers do not stack.')


def layers(params: Mapping[str, Any]) -> list[tuple[int, bool, dict[str, np.ndarray]]]:
  """``[(layer, reverse, numpy layer params)]`` of ``LSTM`` parameters
  (``{'params': ...}`` or the tree itself), sorted by layer then direction;
  checks the names (``layer_<k>[_reverse]``), that no layer or direction is
  missing, and each layer's shapes."""
  params = params.get('params', params)
  entries = []
  for name, layer_params in params.items():
    match = _LAYER_KEY.fullmatch(name)
    if match is None:
      raise ValueError(f'unexpected LSTM parameter entry {name!r}; expected layer_<k>[_reverse].')
    layer_params = {k: to_numpy(v) for k, v in layer_params.items()}
    kernel.check_params(layer_params, name)
    entries.append((int(match.group(1)), bool(match.group(2)), layer_params))
  entries.sort(key=lambda e: e[:2])
  if not entries:
    raise ValueError('LSTM params are empty; expected layer_0, layer_1, ... entries.')
  bidirectional = any(reverse for _, reverse, _ in entries)
  expected = [(l, r) for l in range(entries[-1][0] + 1)
              for r in ((False, True) if bidirectional else (False,))]
  missing = [layer_name(l, r) for l, r in expected if (l, r) not in {e[:2] for e in entries}]
  if missing:
    raise ValueError(f'LSTM params are missing {missing}; got {sorted(params)}.')
  return entries

