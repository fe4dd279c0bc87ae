"""Multi-layer, bidirectional LSTM with dropout, as a pure function.

The Linen and NNX modules are thin wrappers: they declare the parameters that
their ``LSTMSpec`` describes and pass them here with the spec, so both share
one implementation and one parameter layout (see ``lstm_flax.spec``).
"""

from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp

from lstm_flax import kernel
from lstm_flax.spec import DropoutConfig, LSTMSpec, layer_name  # noqa: F401  (re-exported)

Array = jax.Array


def _dropout(rng: Array, x: Array, rate: float, broadcast_time: bool) -> Array:
  """Inverted dropout; with ``broadcast_time`` one mask for all timesteps of ``x [T, B, F]``."""
  if rate == 0.0:
    return x
  shape = (1,) + x.shape[1:] if broadcast_time else x.shape
  keep = jax.random.bernoulli(rng, 1.0 - rate, shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def lstm_stack(
    spec: LSTMSpec,
    params: Mapping[str, Mapping[str, Array]],
    inputs: Array,  # [batch, time, in] (or [time, batch, in] if spec.time_major)
    initial_carry: Optional[kernel.LSTMState] = None,
    *,
    lengths: Optional[Array] = None,  # [batch]
    mask: Optional[Array] = None,  # [batch, time] (or [time, batch])
    dropout_rng: Optional[Array] = None,
    deterministic: bool = True,
) -> tuple[Array, kernel.LSTMState]:
  """Runs the stack of LSTM layers that ``spec`` describes.

  Args:
    spec: sizes, dropout rates and run options (``time_major``, ``unroll``,
      ``compute_dtype``, ``use_custom_vjp``; see ``kernel.lstm``).
    params: ``{'layer_{l}[_reverse]': layer params}`` (see ``lstm_flax.spec``).
    inputs: ``[batch, time, in]``, or ``[time, batch, in]`` if time-major.
    initial_carry: stacked ``LSTMState(h [L*D, batch, P], c [L*D, batch, H])``;
      zeros if None.
    lengths: ``[batch]`` valid lengths of right-padded sequences.
    mask: valid steps, ``[batch, time]`` (``[time, batch]`` if time-major).
    dropout_rng: PRNG key, required when dropout is active.
    deterministic: disables dropout.

  Returns:
    ``(outputs, final carry)``: outputs ``[batch, time, D*P]`` (or time-major),
    zero at padded steps; the final carry stacked as ``initial_carry``.
  """
  time_major = spec.time_major
  if inputs.ndim != 3:
    layout = '[time, batch, features]' if time_major else '[batch, time, features]'
    raise ValueError(
        f'inputs must be {layout}; got shape {inputs.shape} (rank {inputs.ndim}).'
    )
  batch = inputs.shape[1] if time_major else inputs.shape[0]
  spec.check_params(params)
  spec.check_carry(initial_carry, batch)
  mask_tb = kernel.time_major_mask(inputs.shape, lengths, mask, time_major)
  x = inputs if time_major else jnp.swapaxes(inputs, 0, 1)  # [T, B, in]
  dropout = spec.dropout
  train = not deterministic and dropout.active
  if train and dropout_rng is None:
    raise ValueError('lstm_stack needs a dropout_rng when deterministic=False.')
  rngs = iter(jax.random.split(dropout_rng, 4 * spec.num_layers + 2) if train else ())
  locked = dropout.variational

  if train:
    x = _dropout(next(rngs), x, dropout.input_rate, locked)
  h_final, c_final, outputs = [], [], []
  for index, (layer, reverse, name) in enumerate(spec.layers()):
    layer_params = dict(params[name])
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
        unroll=spec.unroll,
        compute_dtype=spec.compute_dtype,
        use_custom_vjp=spec.use_custom_vjp,
    )
    outputs.append(y)
    h_final.append(carry.h)
    c_final.append(carry.c)
    if len(outputs) == spec.num_directions:  # The layer's last direction.
      x = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
      outputs = []
      if train and layer < spec.num_layers - 1:
        x = _dropout(next(rngs), x, dropout.hidden_rate, locked)
  if train:
    x = _dropout(next(rngs), x, dropout.output_rate, locked)
  outputs = x if time_major else jnp.swapaxes(x, 0, 1)
  return outputs, kernel.LSTMState(h=jnp.stack(h_final), c=jnp.stack(c_final))
