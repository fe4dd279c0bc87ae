"""Weight conversion: PyTorch ``nn.LSTM``, Flax LSTM cells and Keras ``LSTM`` <-> lstm_flax.

PyTorch's ``nn.LSTM`` stores, per layer ``k`` and direction (suffix
``_reverse``), ``weight_ih_l{k}`` ``[4H, in]``, ``weight_hh_l{k}`` ``[4H, P]``,
``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``[4H]`` and, with ``proj_size``,
``weight_hr_l{k}`` ``[P, H]``, gate order ``i f g o`` (the same as ours). Our
layout transposes the matrices, splits ``4H`` into a gate axis (``[in, 4, H]``,
``[P, 4, H]``, ``[4, H]``) and keeps one bias (``b_ih + b_hh``).

Flax's ``nn.LSTMCell`` and ``nn.OptimizedLSTMCell`` store one ``Dense`` per
gate: ``i{g}`` (input, no bias) and ``h{g}`` (hidden, with bias) for
``g in 'ifgo'``. ``from_flax_lstm_cells`` converts every such cell in a whole
model's parameter tree, for swapping in ``lstm_flax.LSTMCell``.

Keras' ``layers.LSTM`` stores ``kernel [in, 4u]``, ``recurrent_kernel [u,
4u]`` and ``bias [4u]`` (``layer.get_weights()``), gate order ``i f c o``
(``c`` is our ``g``), sigmoid gates and tanh activations: our layout with the
gate axis fused. ``from_keras_lstm`` / ``to_keras_lstm`` convert single,
``Bidirectional`` and stacked layers.

Nothing here imports torch or keras: state dicts may hold torch tensors or
numpy arrays, ``to_torch_state_dict`` returns numpy arrays (``torch.from_numpy``
them), and Keras layers are read through their public attributes.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from lstm_flax import kernel
from lstm_flax.spec import layer_name

_TORCH_KEY = re.compile(r'^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$')
_GATES = 'ifgo'
_LAYER_KEY = re.compile(r'layer_(\d+)(_reverse)?')


def to_numpy(value: Any) -> np.ndarray:
  """A numpy array of a numpy/JAX array, a torch tensor (without importing
  torch) or a Flax metadata box."""
  if hasattr(value, 'unbox'):  # a Flax metadata box (nn.LogicallyPartitioned)
    value = value.unbox()
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
    entries.setdefault((layer, reverse), {})[name] = to_numpy(value)
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
      params[layer_name(layer, reverse)] = _layer_params(
          w_ih.T, w_hh.T, bias, None if w_hr is None else w_hr.T,
          f'state_dict layer {layer}{" reverse" if reverse else ""}',
          f'converted from {prefix}*{suffix}',
      )
  _check_stack(params)
  return params


def _layer_params(
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
      kernel.INPUT_KERNEL: _gate_axis(input_kernel),
      kernel.RECURRENT_KERNEL: _gate_axis(recurrent_kernel),
      kernel.BIAS: _gate_axis(bias),
  }
  if projection_kernel is not None:
    layer_params[kernel.PROJECTION_KERNEL] = np.array(projection_kernel)
  try:
    kernel.check_params(layer_params, where)
  except ValueError as e:
    raise ValueError(f'{e} ({source})') from None
  return layer_params


def _gate_axis(w: np.ndarray) -> np.ndarray:
  """``[..., 4H]`` (torch's gate blocks ``i f g o``) -> ``[..., 4, H]``, a copy."""
  w = np.asarray(w)
  return w.reshape(w.shape[:-1] + (kernel.NUM_GATES, w.shape[-1] // kernel.NUM_GATES)).copy()


def _fused(w: Any) -> np.ndarray:
  """``[..., 4, H]`` -> ``[..., 4H]`` (the inverse of ``_gate_axis``)."""
  w = np.asarray(w)
  return w.reshape(w.shape[:-2] + (-1,))


def _check_stack(params: Mapping[str, Mapping[str, np.ndarray]]) -> None:
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


def _layers(params: Mapping[str, Any]) -> list[tuple[int, bool, dict[str, np.ndarray]]]:
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


def to_torch_state_dict(
    params: Mapping[str, Mapping[str, Any]], prefix: str = ''
) -> dict[str, np.ndarray]:
  """Converts ``LSTM`` parameters to a PyTorch ``nn.LSTM`` state_dict (numpy arrays).

  ``bias_ih`` receives the whole bias and ``bias_hh`` zeros, which computes the
  same function. Load with ``lstm.load_state_dict({k: torch.from_numpy(v) ...})``.
  """
  state_dict = {}
  for layer, reverse, layer_params in _layers(params):
    suffix = f'_l{layer}' + ('_reverse' if reverse else '')
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
    input_kernel = np.stack([to_numpy(cell_params[f'i{g}']['kernel']) for g in _GATES], -2)
    recurrent_kernel = np.stack([to_numpy(cell_params[f'h{g}']['kernel']) for g in _GATES], -2)
    bias = np.stack([to_numpy(cell_params[f'h{g}']['bias']) for g in _GATES], -2)
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
  layer_params = {k: to_numpy(v) for k, v in layer_params.items()}
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
      where = '/'.join(path + (str(key),))
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


# ---------------------------------------------------------------------------
# Keras (keras.layers.LSTM, Bidirectional, stacks of them).
# ---------------------------------------------------------------------------

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
  return [to_numpy(w) for w in layer.get_weights()]


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
  arrays = [to_numpy(w) for w in entry]
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
  return _layer_params(w_x, w_h, bias, None, where, 'converted from Keras')


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
  _check_stack(params)
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
  entries = _layers(params)
  weights: list[list[np.ndarray]] = [[] for _ in range(entries[-1][0] + 1)]
  for layer, reverse, layer_params in entries:
    name = layer_name(layer, reverse)
    if kernel.PROJECTION_KERNEL in layer_params:
      raise ValueError(f'{name} has a projection_kernel (proj_size); Keras\' LSTM has none.')
    bias = _fused(layer_params[kernel.BIAS]).copy()
    weights[layer] += [_fused(layer_params[kernel.INPUT_KERNEL]).copy(),
                       _fused(layer_params[kernel.RECURRENT_KERNEL]).copy()]
    if use_bias:
      weights[layer].append(bias)
    elif np.any(bias != 0):
      raise ValueError(f'{name} has a non-zero bias; it needs use_bias=True.')
  return weights
