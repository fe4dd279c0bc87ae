"""Functional LSTM kernel: parameters + inputs -> outputs, final carry.

Independent of Linen and NNX. Gate order is PyTorch's and cuDNN's, ``i f g o``::

  [i f g o] = x W_x + h W_h + b
  c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
  m' = sigmoid(o) * tanh(c')
  h' = m'                    (or m' W_p with a projection, PyTorch's ``proj_size``)

Modules: this one (the API, validation, the hoisted input projection),
``kernel_forward`` (the scan), ``kernel_backward`` (its VJP) and
``kernel_products`` (the per-backend product forms).

Design:
  * The four gates have their own axis: ``input_kernel`` is ``[in, 4, H]``,
    ``recurrent_kernel`` ``[P, 4, H]`` and ``bias`` ``[4, H]`` (``P = H``
    without a projection). No weight is reshaped across its ``H`` axis: the
    hoisted input projection contracts against the 3-D ``input_kernel``
    (``lax.dot_general``), the recurrent products contract ``h`` against
    the 3-D ``recurrent_kernel`` (or its per-gate blocks), and the gate
    arithmetic runs on ``[..., 4, H]``. So with ``H`` split over devices
    (model parallelism, ``lstm_flax.axes``) each device holds all four gates
    of its hidden units: a forward step needs only the whole ``h`` (one
    all-gather), a backward step one all-reduce of ``dh``
    (``tests/test_sharding.py``).
  * The input projection ``x W_x + b`` of every timestep is one matrix product
    before the recurrence (here), so ``lax.scan`` only carries ``h W_h`` and
    the gate arithmetic.
  * The recurrence (``lstm_flax.kernel_forward``) stores the gate
    activations and has a ``jax.custom_vjp``: the hand-written backward scan
    (``lstm_flax.kernel_backward``) computes only the per-step gate and carry
    gradients; ``dW_h`` is one whole-sequence product after it, and ``dW_x``,
    ``db``, ``dx`` follow by autodiff of the hoisted input projection.
  * The products' form (NN or NT per CPU, a flat ``4H`` axis on one CPU
    device) is chosen at trace time by ``lstm_flax.kernel_products``. The
    library is then on par with or faster than a minimal 60-line
    ``lax.scan`` LSTM (``benchmarks/lstm_speed.py``, ``minimal_scan``).
  * Padding: a mask ``[time, batch]`` (or lengths) marks valid steps. A padded
    step leaves the carry unchanged and outputs zeros, so the final carry is each
    sequence's last valid carry, in either direction, with no per-step carry
    stored to find it.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstm_flax import kernel_forward, kernel_products as products
from lstm_flax.kernel_products import NUM_GATES

Array = jax.Array
DType = Any

INPUT_KERNEL = 'input_kernel'  # [in, 4, hidden]
RECURRENT_KERNEL = 'recurrent_kernel'  # [proj or hidden, 4, hidden]
BIAS = 'bias'  # [4, hidden]
PROJECTION_KERNEL = 'projection_kernel'  # [hidden, proj], optional


class LSTMState(NamedTuple):
  """Carry of one LSTM layer (one direction).

  Attributes:
    h: hidden state, ``[batch, P]`` (``P`` is the projection size, else ``H``).
    c: cell state, ``[batch, H]``, always float32.
  """

  h: Array
  c: Array


def hidden_size(params: Mapping[str, Array]) -> int:
  """Returns ``H`` for a parameter dict of one layer direction."""
  return params[RECURRENT_KERNEL].shape[-1]


def output_size(params: Mapping[str, Array]) -> int:
  """Returns ``P``: the size of ``h`` (the projection size, else ``H``)."""
  return params[RECURRENT_KERNEL].shape[0]


def zero_state(
    batch_shape: int | tuple[int, ...],
    hidden_size: int,
    output_size: int,
    dtype: DType = jnp.float32,
) -> LSTMState:
  """An all-zero carry ``(h [*batch_shape, P], c [*batch_shape, H])``.

  The one zero-carry function of the PyTorch-style carries:
  ``LSTMSpec.zero_carry`` (stacked carries, ``batch_shape = (layers *
  directions, batch)``) calls it. (``LSTMCell`` carries Flax's ``(c, h)``.)
  """
  shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
  return LSTMState(
      h=jnp.zeros(shape + (output_size,), dtype),
      c=jnp.zeros(shape + (hidden_size,), dtype),
  )


def lengths_to_mask(lengths: Array, max_length: int) -> Array:
  """``[batch]`` lengths -> ``[time, batch]`` bool mask of valid steps."""
  return jnp.arange(max_length)[:, None] < lengths[None, :]


# ---------------------------------------------------------------------------
# Validation (trace time: shapes are static).
# ---------------------------------------------------------------------------


def check_params(params: Mapping[str, Array], name: str = 'params') -> None:
  """Raises ValueError when a layer's parameter dict is incomplete or inconsistent."""
  missing = [k for k in (INPUT_KERNEL, RECURRENT_KERNEL, BIAS) if k not in params]
  if missing:
    raise ValueError(
        f'{name} is missing {missing}; an LSTM layer needs {INPUT_KERNEL!r} '
        f'[in, 4, H], {RECURRENT_KERNEL!r} [P, 4, H] and {BIAS!r} [4, H] (got '
        f'keys {sorted(params)}).'
    )
  w_x, w_h, b = params[INPUT_KERNEL], params[RECURRENT_KERNEL], params[BIAS]
  if w_h.ndim != 3 or w_h.shape[1] != NUM_GATES:
    raise ValueError(
        f'{name}[{RECURRENT_KERNEL!r}] must be [P, 4, H]; got shape {w_h.shape}.'
    )
  h = w_h.shape[2]
  if w_x.ndim != 3 or w_x.shape[1:] != (NUM_GATES, h):
    raise ValueError(
        f'{name}[{INPUT_KERNEL!r}] must be [in, 4, {h}] to match '
        f'{RECURRENT_KERNEL!r} {w_h.shape}; got shape {w_x.shape}.'
    )
  if b.shape != (NUM_GATES, h):
    raise ValueError(f'{name}[{BIAS!r}] must have shape (4, {h}); got {b.shape}.')
  w_p = params.get(PROJECTION_KERNEL)
  expected_p = (h, w_h.shape[0])
  if w_p is None and w_h.shape[0] != h:
    raise ValueError(
        f'{name}[{RECURRENT_KERNEL!r}] has {w_h.shape[0]} rows but there is no '
        f'{PROJECTION_KERNEL!r}; without a projection it must be [H, 4, H] = '
        f'[{h}, 4, {h}].'
    )
  if w_p is not None and w_p.shape != expected_p:
    raise ValueError(
        f'{name}[{PROJECTION_KERNEL!r}] must be [H, P] = {expected_p}; got '
        f'{w_p.shape}.'
    )


def _check_carry(carry: LSTMState, batch: int, h_size: int, p_size: int) -> None:
  h, c = carry
  if jnp.shape(h) != (batch, p_size) or jnp.shape(c) != (batch, h_size):
    raise ValueError(
        f'initial_carry must be LSTMState(h=[batch, P], c=[batch, H]) = '
        f'(h={(batch, p_size)}, c={(batch, h_size)}); got '
        f'(h={jnp.shape(h)}, c={jnp.shape(c)}).'
    )


def check_mask(mask: Array, time: int, batch: int, time_major: bool) -> None:
  """Raises ValueError when a padding mask does not match the inputs."""
  expected = (time, batch) if time_major else (batch, time)
  layout = '[time, batch]' if time_major else '[batch, time]'
  if jnp.shape(mask) != expected:
    raise ValueError(
        f'mask must be {layout} = {expected} to match the inputs; got shape '
        f'{jnp.shape(mask)}.'
    )


def check_lengths(lengths: Array, batch: int) -> None:
  """Raises ValueError when ``lengths`` is not ``[batch]``."""
  if jnp.shape(lengths) != (batch,):
    raise ValueError(
        f'lengths must be [batch] = ({batch},) to match the inputs; got shape '
        f'{jnp.shape(lengths)}.'
    )


# ---------------------------------------------------------------------------
# Recurrence.
# ---------------------------------------------------------------------------


UNROLL_ON_ACCELERATORS = 8


def resolve_unroll(unroll: Optional[int]) -> int:
  """``unroll`` or, if None, the default for the backend.

  On GPU and TPU every scan step pays fixed launch costs, and unrolling 8 steps
  makes the training step 1.1-1.6x faster (benchmarks/README.md); on the CPU it
  gains nothing and costs compile time, so the default there is 1.
  """
  if unroll is None:
    return 1 if jax.default_backend() == 'cpu' else UNROLL_ON_ACCELERATORS
  if unroll < 1:
    raise ValueError(f'unroll must be >= 1 (or None for the backend default); got {unroll}.')
  return unroll


def lstm_time_major(
    params: Mapping[str, Array],
    inputs: Array,  # [time, batch, in]
    initial_carry: Optional[LSTMState] = None,
    mask: Optional[Array] = None,  # [time, batch] bool
    *,
    reverse: bool = False,
    unroll: Optional[int] = None,
    compute_dtype: DType = jnp.float32,
    use_custom_vjp: bool = True,
) -> tuple[Array, LSTMState]:
  """Runs one LSTM layer (one direction) over time-major inputs.

  Args:
    params: ``{'input_kernel': [in, 4, H], 'recurrent_kernel': [P, 4, H],
      'bias': [4, H]}`` and optionally ``'projection_kernel': [H, P]``.
    inputs: ``[time, batch, in]``.
    initial_carry: ``LSTMState(h=[batch, P], c=[batch, H])``; zeros if None.
    mask: ``[time, batch]``, true at valid steps. A padded step leaves the
      carry unchanged and outputs zeros.
    reverse: process time from last to first (the backward direction of a
      bidirectional layer). With right padding this starts at each sequence's
      last valid step.
    unroll: ``lax.scan`` unroll factor; None: 1 on CPU, 8 on GPU/TPU
      (``resolve_unroll``).
    compute_dtype: dtype of the matrix products (e.g. ``jnp.bfloat16``);
      accumulation, gate arithmetic and the cell state stay float32.
    use_custom_vjp: use the hand-written backward pass (else autodiff of the
      plain scan; the two agree to float rounding).

  Returns:
    ``(outputs [time, batch, P] in compute_dtype, final LSTMState)``; the final
    carry is each sequence's last valid one.
  """
  if inputs.ndim != 3:
    raise ValueError(
        f'inputs must be [time, batch, features]; got shape {inputs.shape} '
        f'(rank {inputs.ndim}).'
    )
  check_params(params)
  time, batch, features = inputs.shape
  w_x, w_h, b = params[INPUT_KERNEL], params[RECURRENT_KERNEL], params[BIAS]
  w_p = params.get(PROJECTION_KERNEL)
  if features != w_x.shape[0]:
    raise ValueError(
        f'inputs have {features} features but {INPUT_KERNEL!r} expects '
        f'{w_x.shape[0]} (its shape is {w_x.shape}); inputs shape {inputs.shape}.'
    )
  h_size, p_size = hidden_size(params), output_size(params)
  if initial_carry is None:
    initial_carry = zero_state(batch, h_size, p_size)
  _check_carry(initial_carry, batch, h_size, p_size)
  if mask is not None:
    check_mask(mask, time, batch, time_major=True)
    mask = mask.astype(bool)
  unroll = resolve_unroll(unroll)

  # Hoisted input projection: one [T*B, in] x [in, 4, H] product.
  acc = products.accumulation_dtype(compute_dtype)
  if products.flat_gates():  # [T, B, 4H], viewed as [T, B, 4, H]
    gates_x = (products.dot(inputs, w_x.reshape(w_x.shape[0], -1), compute_dtype)
               + b.reshape(-1).astype(acc)).astype(compute_dtype)
    gates_x = gates_x.reshape(gates_x.shape[:-1] + w_x.shape[1:])
  else:
    gates_x = (products.dot(inputs, w_x, compute_dtype) + b.astype(acc)).astype(
        compute_dtype
    )  # [T, B, 4, H]
  h0 = initial_carry.h.astype(acc)
  c0 = initial_carry.c.astype(acc)
  if use_custom_vjp:
    hs, h_t, c_t = kernel_forward.recurrence(
        gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype
    )
  else:
    hs, _, _, h_t, c_t = kernel_forward.recurrence_forward(
        gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype, False
    )
  outputs = hs if mask is None else jnp.where(mask[:, :, None], hs, 0.0)
  return outputs.astype(compute_dtype), LSTMState(h=h_t, c=c_t)


def lstm(
    params: Mapping[str, Array],
    inputs: Array,  # [batch, time, in] (or [time, batch, in] if time_major)
    initial_carry: Optional[LSTMState] = None,
    *,
    lengths: Optional[Array] = None,  # [batch] int
    mask: Optional[Array] = None,  # [batch, time] (or [time, batch]) bool
    time_major: bool = False,
    reverse: bool = False,
    unroll: Optional[int] = None,
    compute_dtype: DType = jnp.float32,
    use_custom_vjp: bool = True,
) -> tuple[Array, LSTMState]:
  """One LSTM layer (one direction); see ``lstm_time_major``.

  Args:
    params: one layer direction's parameters (see ``lstm_time_major``).
    inputs: ``[batch, time, in]``, or ``[time, batch, in]`` with ``time_major``.
    initial_carry: ``LSTMState(h=[batch, P], c=[batch, H])``; zeros if None.
    lengths: ``[batch]`` valid lengths of right-padded sequences.
    mask: valid steps, ``[batch, time]`` (``[time, batch]`` if time_major).
      Give ``lengths`` or ``mask``, not both.
    time_major, reverse, unroll, compute_dtype, use_custom_vjp: as in
      ``lstm_time_major``.

  Returns:
    ``(outputs, final LSTMState)``; outputs in the layout of ``inputs`` with
    ``P`` features, zero at padded steps.
  """
  if inputs.ndim != 3:
    layout = '[time, batch, features]' if time_major else '[batch, time, features]'
    raise ValueError(
        f'inputs must be {layout}; got shape {inputs.shape} (rank {inputs.ndim}).'
    )
  mask_tb = time_major_mask(inputs.shape, lengths, mask, time_major)
  x_tb = inputs if time_major else jnp.swapaxes(inputs, 0, 1)  # [T, B, in]
  outputs, carry = lstm_time_major(
      params,
      x_tb,
      initial_carry,
      mask_tb,
      reverse=reverse,
      unroll=unroll,
      compute_dtype=compute_dtype,
      use_custom_vjp=use_custom_vjp,
  )
  return (outputs if time_major else jnp.swapaxes(outputs, 0, 1)), carry


def time_major_mask(
    input_shape: tuple[int, ...],
    lengths: Optional[Array],
    mask: Optional[Array],
    time_major: bool,
) -> Optional[Array]:
  """Validates ``lengths``/``mask`` and returns a ``[time, batch]`` bool mask (or None)."""
  if lengths is not None and mask is not None:
    raise ValueError('Give either lengths or mask, not both.')
  time, batch = input_shape[:2] if time_major else input_shape[1::-1]
  if lengths is not None:
    check_lengths(lengths, batch)
    return lengths_to_mask(jnp.asarray(lengths), time)
  if mask is not None:
    check_mask(mask, time, batch, time_major)
    mask = jnp.asarray(mask, bool)
    return mask if time_major else mask.T
  return None


def lstm_cell(
    params: Mapping[str, Array],
    carry: LSTMState,
    inputs: Array,  # [batch, in]
    compute_dtype: DType = jnp.float32,
) -> tuple[LSTMState, Array]:
  """One LSTM step: ``(carry, x [batch, in]) -> (carry', h' [batch, P])``."""
  w_x, w_h, b = params[INPUT_KERNEL], params[RECURRENT_KERNEL], params[BIAS]
  acc = products.accumulation_dtype(compute_dtype)
  gates_x = products.dot(inputs, w_x, compute_dtype) + b.astype(acc)  # [batch, 4, H]
  w_p = params.get(PROJECTION_KERNEL)
  h, c, _ = kernel_forward.cell(
      gates_x,
      carry.h.astype(acc),
      carry.c.astype(acc),
      products.recurrent_weights(w_h, compute_dtype),
      None if w_p is None else w_p.T,
      compute_dtype,
  )
  return LSTMState(h=h, c=c), h.astype(compute_dtype)
