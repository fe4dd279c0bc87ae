"""Multi-layer, bidirectional LSTM with dropout, as a pure function.

The Linen and NNX modules are thin wrappers around ``lstm_stack``: they declare
the parameters and pass them here, so both share one implementation and one
parameter layout::

  {'layer_0': {...}, 'layer_0_reverse': {...}, 'layer_1': {...}, ...}

where each entry is one layer direction's kernel parameters (see
``lstm_flax.kernel``). The carry is stacked like PyTorch's ``(h_n, c_n)``:
``h [num_layers * num_directions, batch, P]`` and ``c [..., batch, H]``, index
``layer * num_directions + direction``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

import jax
import jax.numpy as jnp

from lstm_flax import kernel

Array = jax.Array


def layer_name(layer: int, reverse: bool) -> str:
  """Parameter-tree key of one layer direction: ``layer_0``, ``layer_0_reverse``."""
  return f'layer_{layer}_reverse' if reverse else f'layer_{layer}'


@dataclasses.dataclass(frozen=True)
class DropoutConfig:
  """Dropout rates of an LSTM stack.

  Attributes:
    input_rate: dropout on the stack's inputs.
    hidden_rate: dropout on the outputs of every layer but the last (PyTorch's
      ``dropout``).
    output_rate: dropout on the stack's outputs.
    weight_rate: DropConnect on the recurrent kernels, one mask per call
      (AWD-LSTM's weight drop).
    variational: one mask per sequence, shared over time, for the input,
      hidden and output dropout (Gal & Ghahramani; AWD-LSTM's locked dropout).
  """

  input_rate: float = 0.0
  hidden_rate: float = 0.0
  output_rate: float = 0.0
  weight_rate: float = 0.0
  variational: bool = False

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name != 'variational' and not 0.0 <= value < 1.0:
        raise ValueError(f'dropout {field.name} must be in [0, 1); got {value}.')

  @property
  def active(self) -> bool:
    return any((self.input_rate, self.hidden_rate, self.output_rate, self.weight_rate))


def _dropout(rng: Array, x: Array, rate: float, broadcast_time: bool) -> Array:
  """Inverted dropout; with ``broadcast_time`` one mask for all timesteps of ``x [T, B, F]``."""
  if rate == 0.0:
    return x
  shape = (1,) + x.shape[1:] if broadcast_time else x.shape
  keep = jax.random.bernoulli(rng, 1.0 - rate, shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def num_directions(bidirectional: bool) -> int:
  return 2 if bidirectional else 1


def zero_carry(
    params: Mapping[str, Mapping[str, Array]],
    batch_size: int,
    num_layers: int,
    bidirectional: bool,
) -> kernel.LSTMState:
  """Zero stacked carry: ``h [L*D, batch, P]``, ``c [L*D, batch, H]``."""
  first = params[layer_name(0, False)]
  n = num_layers * num_directions(bidirectional)
  return kernel.LSTMState(
      h=jnp.zeros((n, batch_size, kernel.output_size(first)), jnp.float32),
      c=jnp.zeros((n, batch_size, kernel.hidden_size(first)), jnp.float32),
  )


def _check_stack(params, num_layers, bidirectional, initial_carry, batch):
  names = [
      layer_name(l, r)
      for l in range(num_layers)
      for r in ((False, True) if bidirectional else (False,))
  ]
  missing = [n for n in names if n not in params]
  if missing:
    raise ValueError(
        f'LSTM params are missing layers {missing} for num_layers={num_layers}, '
        f'bidirectional={bidirectional}; got {sorted(params)}.'
    )
  if initial_carry is not None:
    first = params[names[0]]
    n = len(names)
    h_shape = (n, batch, kernel.output_size(first))
    c_shape = (n, batch, kernel.hidden_size(first))
    if (jnp.shape(initial_carry.h), jnp.shape(initial_carry.c)) != (h_shape, c_shape):
      raise ValueError(
          'initial_carry must be LSTMState(h=[layers*directions, batch, P], '
          f'c=[layers*directions, batch, H]) = (h={h_shape}, c={c_shape}); got '
          f'(h={jnp.shape(initial_carry.h)}, c={jnp.shape(initial_carry.c)}).'
      )


def lstm_stack(
    params: Mapping[str, Mapping[str, Array]],
    inputs: Array,  # [batch, time, in] (or [time, batch, in] if time_major)
    initial_carry: Optional[kernel.LSTMState] = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    lengths: Optional[Array] = None,  # [batch]
    mask: Optional[Array] = None,  # [batch, time] (or [time, batch])
    dropout: DropoutConfig = DropoutConfig(),
    dropout_rng: Optional[Array] = None,
    deterministic: bool = True,
    time_major: bool = False,
    unroll: Optional[int] = None,
    compute_dtype=jnp.float32,
    use_custom_vjp: bool = True,
) -> tuple[Array, kernel.LSTMState]:
  """Runs a stack of LSTM layers.

  Args:
    params: ``{'layer_{l}[_reverse]': layer params}`` (see module docstring).
    inputs: ``[batch, time, in]``, or ``[time, batch, in]`` with time_major.
    initial_carry: stacked ``LSTMState(h [L*D, batch, P], c [L*D, batch, H])``;
      zeros if None.
    num_layers: number of stacked layers.
    bidirectional: run a reverse direction too and concatenate the features.
    lengths: ``[batch]`` valid lengths of right-padded sequences.
    mask: valid steps, ``[batch, time]`` (``[time, batch]`` if time_major).
    dropout: rates; applied only when ``deterministic`` is False.
    dropout_rng: PRNG key, required when dropout is active.
    deterministic: disables dropout.
    time_major, unroll, compute_dtype, use_custom_vjp: see ``kernel.lstm``.

  Returns:
    ``(outputs, final carry)``: outputs ``[batch, time, D*P]`` (or time-major),
    zero at padded steps; the final carry stacked as ``initial_carry``.
  """
  if inputs.ndim != 3:
    layout = '[time, batch, features]' if time_major else '[batch, time, features]'
    raise ValueError(
        f'inputs must be {layout}; got shape {inputs.shape} (rank {inputs.ndim}).'
    )
  batch = inputs.shape[1] if time_major else inputs.shape[0]
  _check_stack(params, num_layers, bidirectional, initial_carry, batch)
  mask_tb = kernel.time_major_mask(inputs.shape, lengths, mask, time_major)
  x = inputs if time_major else jnp.swapaxes(inputs, 0, 1)  # [T, B, in]
  train = not deterministic and dropout.active
  if train and dropout_rng is None:
    raise ValueError('lstm_stack needs a dropout_rng when deterministic=False.')
  rngs = iter(jax.random.split(dropout_rng, 4 * num_layers + 2) if train else ())
  locked = dropout.variational

  if train:
    x = _dropout(next(rngs), x, dropout.input_rate, locked)
  h_final, c_final = [], []
  directions = (False, True) if bidirectional else (False,)
  for layer in range(num_layers):
    outputs = []
    for reverse in directions:
      index = layer * len(directions) + int(reverse)
      layer_params = dict(params[layer_name(layer, reverse)])
      if train and dropout.weight_rate:
        w_h = layer_params[kernel.RECURRENT_KERNEL]
        keep = jax.random.bernoulli(next(rngs), 1.0 - dropout.weight_rate, w_h.shape)
        layer_params[kernel.RECURRENT_KERNEL] = jnp.where(
            keep, w_h / (1.0 - dropout.weight_rate), 0.0
        ).astype(w_h.dtype)
      carry = None
      if initial_carry is not None:
        carry = kernel.LSTMState(initial_carry.h[index], initial_carry.c[index])
      y, carry = kernel.lstm_time_major(
          layer_params,
          x,
          carry,
          mask_tb,
          reverse=reverse,
          unroll=unroll,
          compute_dtype=compute_dtype,
          use_custom_vjp=use_custom_vjp,
      )
      outputs.append(y)
      h_final.append(carry.h)
      c_final.append(carry.c)
    x = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
    if train and layer < num_layers - 1:
      x = _dropout(next(rngs), x, dropout.hidden_rate, locked)
  if train:
    x = _dropout(next(rngs), x, dropout.output_rate, locked)
  outputs = x if time_major else jnp.swapaxes(x, 0, 1)
  return outputs, kernel.LSTMState(h=jnp.stack(h_final), c=jnp.stack(c_final))
