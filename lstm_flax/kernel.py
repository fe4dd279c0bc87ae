"""Functional LSTM kernel: parameters + inputs -> outputs, final carry.

Independent of Linen and NNX. Gate order is PyTorch's and cuDNN's, ``i f g o``::

  [i f g o] = x W_x + h W_h + b
  c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
  m' = sigmoid(o) * tanh(c')
  h' = m'                    (or m' W_p with a projection, PyTorch's ``proj_size``)

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
  * Per step, the forward scan does one recurrent product (``[B, P] x [P, 4,
    H]``, or one ``[B, P] x [H, P]^T`` per gate: the form that the CPU runs
    faster, ``_nn_products``), one elementwise pass that turns the
    ``[B, 4, H]`` pre-activations into the activations (sigmoid as a scaled
    tanh, so the four gates need no slicing and re-stacking), the cell update,
    and stores the activations ``[B, 4, H]`` for the backward pass. Storing
    them costs one copy per step and saves the backward scan the
    transcendentals (recomputing them from stored pre-activations was not
    faster). Without a mask there is no ``where`` (it is skipped at trace
    time). The backward scan does the gate gradients (elementwise), the
    product for ``dh`` and stores ``d_gates``; nothing else. On a single CPU
    device, where nothing splits ``H``, the backward product (from ``H =
    256``), ``dW_h`` and the input projection view ``[4, H]`` as one ``4H``
    axis, which XLA's CPU products run faster (``_flat_gates``); with several
    devices they keep the per-gate / 3-D forms above. The library is then on par with or
    faster than a minimal 60-line ``lax.scan`` LSTM
    (``benchmarks/lstm_speed.py``, ``minimal_scan``).
  * The input projection ``x W_x + b`` of every timestep is one matrix product
    before the recurrence, so ``lax.scan`` only carries ``h W_h`` and the gate
    arithmetic.
  * The recurrence has a ``jax.custom_vjp``. Its backward scan computes only
    the per-step gate gradients and the carry gradients; ``dW_h`` (and the
    projection's gradient) are whole-sequence matrix products after the scan.
    ``dW_x``, ``db`` and ``dx`` follow by autodiff of the hoisted input
    projection, which are whole-sequence matrix products too (cuDNN's
    approach).
  * Padding: a mask ``[time, batch]`` (or lengths) marks valid steps. A padded
    step leaves the carry unchanged and outputs zeros, so the final carry is each
    sequence's last valid carry, in either direction, with no per-step carry
    stored to find it.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
DType = Any

NUM_GATES = 4  # i, f, g, o
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


def _gates(x: Array) -> tuple[Array, Array, Array, Array]:
  """``[..., 4, H]`` -> the four ``[..., H]`` gate slices ``i, f, g, o``."""
  return tuple(x[..., k, :] for k in range(NUM_GATES))  # type: ignore[return-value]


def _accumulation_dtype(compute_dtype: DType) -> DType:
  """float32, or float64 when computing in float64 (reference runs)."""
  return jnp.promote_types(jnp.float32, compute_dtype)


def _dot(a: Array, w: Array, dtype: DType) -> Array:
  """``a [..., in] x w [in, ...]`` in ``dtype`` with float32 (or float64)
  accumulation and result: ``[..., in] x [in, 4, H] -> [..., 4, H]``."""
  return lax.dot_general(
      a.astype(dtype),
      w.astype(dtype),
      (((a.ndim - 1,), (0,)), ((), ())),
      preferred_element_type=_accumulation_dtype(dtype),
  )


def _dot_nt(a: Array, b_t: Array, dtype: DType) -> Array:
  """``a @ b_t.T`` (``a [M, K]``, ``b_t [N, K]``) with float32 accumulation.

  Some CPUs run the small per-step products of the recurrence faster in this
  "NT" form than as ``a @ b`` (PyTorch's weight layout; ``_nn_products``).
  """
  return lax.dot_general(
      a.astype(dtype),
      b_t.astype(dtype),
      (((a.ndim - 1,), (1,)), ((), ())),
      preferred_element_type=_accumulation_dtype(dtype),
  )


def _gate_blocks(w: Array, perm: tuple[int, int, int], dtype: DType) -> tuple[Array, ...]:
  """The four gates' 2-D blocks of a 3-D kernel, transposed by ``perm`` so the
  gate axis leads, in ``dtype``; computed once per call, outside the scan."""
  w = jnp.transpose(w, perm).astype(dtype)
  return tuple(w[k] for k in range(NUM_GATES))


@functools.cache
def _cpu_has_avx512() -> bool:
  """Whether this host's CPU has AVX-512 (read from Linux's ``/proc/cpuinfo``)."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('flags'):
          return ' avx512f' in line
  except OSError:
    pass
  return False


def _nn_products() -> bool:
  """Whether the per-step recurrent products run in the "NN" form ``a @ b``.

  Chosen per backend and CPU from measurements (benchmarks/README.md), at
  trace time. On an Intel Xeon with AVX-512 XLA's CPU dot runs these small
  products about 1.4x faster in the "NT" form ``a @ b_t.T`` (PyTorch's
  weight layout). On an AMD EPYC with AVX2 it is the other way round: in
  the NN form the forward scan's product runs 1.5-1.8x faster and the
  backward scan's 1.03-1.2x (PTB-small to wide). GPUs and TPUs keep the NT
  form they were measured with.
  """
  return jax.default_backend() == 'cpu' and not _cpu_has_avx512()


def _recurrent_weights(w_h: Array, dtype: DType) -> Array | tuple[Array, ...]:
  """``w_h [P, 4, H]`` prepared once per call, outside the scan, for
  ``_recurrent_product``: itself (NN form) or four ``[H, P]`` blocks (NT)."""
  if _nn_products():
    return w_h.astype(dtype)  # [P, 4, H]
  return _gate_blocks(w_h, (1, 2, 0), dtype)


def _recurrent_product(h: Array, w_h: Array | tuple[Array, ...], dtype: DType) -> Array:
  """``h [B, P] . W_h`` -> ``[B, 4, H]``.

  NN form: one ``[B, P] x [P, 4, H]`` contraction. NT form: one ``[B, P] x
  [H, P]^T`` product per gate (XLA would canonicalise a single contraction
  into the NN form). Neither reshapes the weight across its hidden axis,
  which model parallelism splits: a device holding a slice of ``H``
  computes all four gates of its units from the whole ``h``.
  """
  if isinstance(w_h, tuple):
    return jnp.stack([_dot_nt(h, w, dtype) for w in w_h], axis=-2)
  return _dot(h, w_h, dtype)


def _flat_gates() -> bool:
  """Whether products may view the gate and hidden axes as one ``4H`` axis.

  Only on a single CPU device, where nothing splits ``H``: there the
  backward scan's ``[B, 4H] x [P, 4H]^T`` product, ``dW_h`` and the input
  projection (with its gradients) over ``[in, 4H]`` run faster than their
  per-gate or 3-D forms (PTB-medium, one layer's forward and backward: 1.2x;
  the per-step backward product alone 1.2-1.9x from H = 400, but slower at
  H = 200: ``FLAT_BACKWARD_MIN_HIDDEN``). With several devices the 3-D forms
  keep the sharding of ``H``.
  """
  return jax.default_backend() == 'cpu' and jax.device_count() == 1


# The backward step's flat [B, 4H] x [P, 4H]^T product against the per-gate
# sum (AMD EPYC, B = 20, isolated 35-step scans): 0.75x at H = 200 (the
# library's PTB-small step 1.12x faster per-gate), 1.2x at H = 400, 1.7x at
# H = 650, 1.2x at H = 1024 (B = 64).
FLAT_BACKWARD_MIN_HIDDEN = 256


def _recurrent_weights_t(w_h: Array, dtype: DType) -> Array | tuple[Array, ...]:
  """``w_h [P, 4, H]`` prepared once per call for ``_recurrent_product_t``:
  ``[P, 4H]`` (``_flat_gates``, from ``FLAT_BACKWARD_MIN_HIDDEN``) or four
  blocks, ``[H, P]`` (NN form) or ``[P, H]`` (NT form)."""
  if _flat_gates() and w_h.shape[-1] >= FLAT_BACKWARD_MIN_HIDDEN:
    return w_h.reshape(w_h.shape[0], -1).astype(dtype)  # [P, 4H]
  return _gate_blocks(w_h, (1, 2, 0) if _nn_products() else (1, 0, 2), dtype)


def _recurrent_product_t(d_gates: Array, w_h_t: Array | tuple[Array, ...], dtype: DType) -> Array:
  """``d_gates [B, 4, H] . W_h^T`` -> ``[B, P]``: one ``[B, 4H] x [P, 4H]^T``
  product (``_flat_gates``), else the sum of the four gates' products, which
  keeps the hidden axis whole for sharding: a single 3-D contraction over
  the gate and hidden axes compiles to a 1.3-1.8x slower product on the
  CPU (measured in both forms)."""
  if not isinstance(w_h_t, tuple):
    return _dot_nt(d_gates.reshape(d_gates.shape[:-2] + (-1,)), w_h_t, dtype)
  dot = _dot if _nn_products() else _dot_nt
  out = dot(d_gates[..., 0, :], w_h_t[0], dtype)
  for k in range(1, NUM_GATES):
    out = out + dot(d_gates[..., k, :], w_h_t[k], dtype)
  return out


# sigmoid(x) = (1 + tanh(x / 2)) / 2, so with the per-gate scale s below,
# s * tanh(s * x) + 1 - s is sigmoid(x) for i, f, o and tanh(x) for g.
_GATE_SCALES = (0.5, 0.5, 1.0, 0.5)


def _activations(gates: Array) -> Array:
  """``[..., 4, H]`` pre-activations -> ``[sigmoid(i), sigmoid(f), tanh(g),
  sigmoid(o)]`` as ``[..., 4, H]``, in one elementwise pass over the gate
  array: no per-gate slices to stack again for the backward pass (forward
  scan 1.3x faster at PTB-small)."""
  s = jnp.asarray(_GATE_SCALES, gates.dtype)[:, None]  # [4, 1]
  return s * jnp.tanh(s * gates) + (1.0 - s)


def _cell(
    gates_x: Array,  # [batch, 4, H] input projection (+ bias) of this step
    h: Array,  # [batch, P]
    c: Array,  # [batch, H] float32
    w_h_t: Array | tuple[Array, ...],  # _recurrent_weights(w_h)
    w_p_t: Optional[Array],  # [P, H] (transposed projection) or None
    compute_dtype: DType,
) -> tuple[Array, Array, Array]:
  """One LSTM step on a precomputed input projection.

  Returns (h' [batch, P] float32, c' [batch, H] float32, activations
  [batch, 4, H] = [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)] float32).
  """
  gates = gates_x.astype(h.dtype) + _recurrent_product(h, w_h_t, compute_dtype)  # [B, 4, H]
  acts = _activations(gates)  # [B, 4, H]
  i, f, g, o = _gates(acts)
  c_new = f * c + i * g
  m = o * jnp.tanh(c_new)  # [B, H]
  h_new = m if w_p_t is None else _dot_nt(m, w_p_t, compute_dtype)
  return h_new, c_new, acts


def _scan_xs(gates_x: Array, mask: Optional[Array]) -> tuple[Array, Optional[Array]]:
  return gates_x, (None if mask is None else mask[:, :, None])


def _recurrence_forward(
    gates_x: Array,  # [T, B, 4, H]
    mask: Optional[Array],  # [T, B] bool or None
    h0: Array,  # [B, P]
    c0: Array,  # [B, H]
    w_h: Array,  # [P, 4, H]
    w_p: Optional[Array],  # [H, P]
    reverse: bool,
    unroll: int,
    compute_dtype: DType,
    keep_activations: bool,
):
  """Scans the cell; returns (hs [T,B,P], cs [T,B,H] | None, acts | None, hT, cT).

  ``hs[t]``/``cs[t]`` are the carry after step ``t`` (unchanged at a padded
  step); ``acts`` is ``[T, B, 4, H]``.
  """

  w_h_t = _recurrent_weights(w_h, compute_dtype)  # once per call
  w_p_t = None if w_p is None else w_p.T.astype(compute_dtype)  # [P, H]

  def step(carry, xs):
    h, c = carry
    gx, m = xs
    h_new, c_new, acts = _cell(gx, h, c, w_h_t, w_p_t, compute_dtype)
    if m is not None:
      h_new = jnp.where(m, h_new, h)
      c_new = jnp.where(m, c_new, c)
    ys = (h_new, c_new, acts) if keep_activations else (h_new, None, None)
    return (h_new, c_new), ys

  (h_t, c_t), (hs, cs, acts) = lax.scan(
      step, (h0, c0), _scan_xs(gates_x, mask), reverse=reverse, unroll=unroll
  )
  return hs, cs, acts, h_t, c_t


def _previous(seq: Array, first: Array, reverse: bool) -> Array:
  """The carry before each step: ``seq`` shifted by one in processing order."""
  if reverse:
    return jnp.concatenate([seq[1:], first[None]], axis=0)
  return jnp.concatenate([first[None], seq[:-1]], axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def _recurrence(gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype):
  hs, _, _, h_t, c_t = _recurrence_forward(
      gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype, False
  )
  return hs, h_t, c_t


def _recurrence_fwd(gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype):
  hs, cs, acts, h_t, c_t = _recurrence_forward(
      gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype, True
  )
  residuals = (mask, h0, c0, w_h, w_p, hs, cs, acts)
  return (hs, h_t, c_t), residuals


def _recurrence_bwd(reverse, unroll, compute_dtype, residuals, cotangents):
  mask, h0, c0, w_h, w_p, hs, cs, acts = residuals
  acc = _accumulation_dtype(compute_dtype)
  d_hs, d_h_t, d_c_t = cotangents  # [T,B,P], [B,P], [B,H]
  c_prev = _previous(cs, c0, reverse)  # [T, B, H]
  w_h_g = _recurrent_weights_t(w_h, compute_dtype)  # once per call
  w_p_c = None if w_p is None else w_p.astype(compute_dtype)  # [H, P]

  def step(carry, xs):
    dh, dc = carry  # [B, P], [B, H]
    d_out, act, c, c_p, m = xs
    dh = dh + d_out
    i, f, g, o = _gates(act)
    dm = dh if w_p_c is None else _dot_nt(dh, w_p_c, compute_dtype)  # [B, H]
    tanh_c = jnp.tanh(c)
    dc_total = dc + dm * o * (1.0 - tanh_c * tanh_c)
    d_gates = jnp.stack(
        [
            dc_total * g * i * (1.0 - i),
            dc_total * c_p * f * (1.0 - f),
            dc_total * i * (1.0 - g * g),
            dm * tanh_c * o * (1.0 - o),
        ],
        axis=-2,
    )  # [B, 4, H] gradient of the pre-activation gates
    dh_prev = _recurrent_product_t(d_gates, w_h_g, compute_dtype)  # [B, P]
    dc_prev = dc_total * f
    d_h_step = dh  # gradient reaching this step's h (for the projection)
    if m is not None:
      d_gates = jnp.where(m[..., None], d_gates, 0.0)
      dh_prev = jnp.where(m, dh_prev, dh)
      dc_prev = jnp.where(m, dc_prev, dc)
      d_h_step = jnp.where(m, dh, 0.0)
    ys = (d_gates, None if w_p is None else d_h_step)
    return (dh_prev, dc_prev), ys

  m_seq = None if mask is None else mask[:, :, None]
  xs = (d_hs.astype(acc), acts, cs, c_prev, m_seq)
  (dh0, dc0), (d_gates_seq, d_h_seq) = lax.scan(
      step,
      (d_h_t.astype(acc), d_c_t.astype(acc)),
      xs,
      reverse=not reverse,
      unroll=unroll,
  )
  # Whole-sequence weight gradients, one matrix product each.
  h_prev = _previous(hs, h0, reverse)  # [T, B, P]
  if _flat_gates():
    d_w_h = jnp.einsum(
        'tbp,tbg->pg', h_prev, d_gates_seq.reshape(d_gates_seq.shape[:2] + (-1,)),
        preferred_element_type=acc,
    ).reshape(w_h.shape).astype(w_h.dtype)
  else:
    d_w_h = jnp.einsum(
        'tbp,tbgh->pgh', h_prev, d_gates_seq, preferred_element_type=acc
    ).astype(w_h.dtype)
  d_w_p = None
  if w_p is not None:
    o = acts[..., 3, :]
    m_seq_out = o * jnp.tanh(cs)  # [T, B, H] pre-projection outputs
    d_w_p = jnp.einsum(
        'tbh,tbp->hp', m_seq_out, d_h_seq, preferred_element_type=acc
    ).astype(w_p.dtype)
  return (
      d_gates_seq.astype(compute_dtype),
      None,
      dh0.astype(h0.dtype),
      dc0.astype(c0.dtype),
      d_w_h,
      d_w_p,
  )


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


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
  acc = _accumulation_dtype(compute_dtype)
  if _flat_gates():  # [T, B, 4H], viewed as [T, B, 4, H]
    gates_x = (_dot(inputs, w_x.reshape(w_x.shape[0], -1), compute_dtype)
               + b.reshape(-1).astype(acc)).astype(compute_dtype)
    gates_x = gates_x.reshape(gates_x.shape[:-1] + w_x.shape[1:])
  else:
    gates_x = (_dot(inputs, w_x, compute_dtype) + b.astype(acc)).astype(
        compute_dtype
    )  # [T, B, 4, H]
  h0 = initial_carry.h.astype(acc)
  c0 = initial_carry.c.astype(acc)
  if use_custom_vjp:
    hs, h_t, c_t = _recurrence(
        gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype
    )
  else:
    hs, _, _, h_t, c_t = _recurrence_forward(
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
  acc = _accumulation_dtype(compute_dtype)
  gates_x = _dot(inputs, w_x, compute_dtype) + b.astype(acc)  # [batch, 4, H]
  w_p = params.get(PROJECTION_KERNEL)
  h, c, _ = _cell(
      gates_x,
      carry.h.astype(acc),
      carry.c.astype(acc),
      _recurrent_weights(w_h, compute_dtype),
      None if w_p is None else w_p.T,
      compute_dtype,
  )
  return LSTMState(h=h, c=c), h.astype(compute_dtype)
