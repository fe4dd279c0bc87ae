"""The matrix products of the LSTM recurrence, in the form this backend runs fastest.

``lstm_flax.kernel`` keeps each weight's gate axis (``[in, 4, H]``, ``[P, 4,
H]``) so that model parallelism can split ``H``. How the per-step products
contract against those weights is chosen here, at trace time, per backend
and CPU (measured in ``benchmarks/README.md``):

  * NN (``a @ b``) or NT (``a @ b_t.T``, PyTorch's weight layout) per-step
    recurrent products (``nn_products``);
  * on a single CPU device, where nothing splits ``H``, the backward product
    (from ``FLAT_BACKWARD_MIN_HIDDEN``), ``dW_h`` and the input projection
    view ``[4, H]`` as one ``4H`` axis (``flat_gates``); with several devices
    they keep the per-gate / 3-D forms.

Every form computes the same values (``tests/test_kernel.py``
``test_product_forms_agree`` patches ``nn_products`` / ``flat_gates`` here).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
DType = Any

NUM_GATES = 4  # i, f, g, o


def split_gates(x: Array) -> tuple[Array, Array, Array, Array]:
  """``[..., 4, H]`` -> the four ``[..., H]`` gate slices ``i, f, g, o``."""
  return tuple(x[..., k, :] for k in range(NUM_GATES))  # type: ignore[return-value]


def accumulation_dtype(compute_dtype: DType) -> DType:
  """float32, or float64 when computing in float64 (reference runs)."""
  return jnp.promote_types(jnp.float32, compute_dtype)


def dot(a: Array, w: Array, dtype: DType) -> Array:
  """``a [..., in] x w [in, ...]`` in ``dtype`` with float32 (or float64)
  accumulation and result: ``[..., in] x [in, 4, H] -> [..., 4, H]``."""
  return lax.dot_general(
      a.astype(dtype),
      w.astype(dtype),
      (((a.ndim - 1,), (0,)), ((), ())),
      preferred_element_type=accumulation_dtype(dtype),
  )


def dot_nt(a: Array, b_t: Array, dtype: DType) -> Array:
  """``a @ b_t.T`` (``a [M, K]``, ``b_t [N, K]``) with float32 accumulation.

  Some CPUs run the small per-step products of the recurrence faster in this
  "NT" form than as ``a @ b`` (PyTorch's weight layout; ``nn_products``).
  """
  return lax.dot_general(
      a.astype(dtype),
      b_t.astype(dtype),
      (((a.ndim - 1,), (1,)), ((), ())),
      preferred_element_type=accumulation_dtype(dtype),
  )


def gate_blocks(w: Array, perm: tuple[int, int, int], dtype: DType) -> tuple[Array, ...]:
  """The four gates' 2-D blocks of a 3-D kernel, transposed by ``perm`` so the
  gate axis leads, in ``dtype``; computed once per call, outside the scan."""
  w = jnp.transpose(w, perm).astype(dtype)
  return tuple(w[k] for k in range(NUM_GATES))


@functools.cache
def cpu_has_avx512() -> bool:
  """Whether this host's CPU has AVX-512 (read from Linux's ``/proc/cpuinfo``)."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('flags'):
          return ' avx512f' in line
  except OSError:
    pass
  return False


def nn_products() -> bool:
  """Whether the per-step recurrent products run in the "NN" form ``a @ b``.

  Chosen per backend and CPU from measurements (benchmarks/README.md), at
  trace time. On an Intel Xeon with AVX-512 XLA's CPU dot runs these small
  products about 1.4x faster in the "NT" form ``a @ b_t.T`` (PyTorch's
  weight layout). On an AMD EPYC with AVX2 it is the other way round: in
  the NN form the forward scan's product runs 1.5-1.8x faster and the
  backward scan's 1.03-1.2x (PTB-small to wide). GPUs and TPUs keep the NT
  form they were measured with.
  """
  return jax.default_backend() == 'cpu' and not cpu_has_avx512()


def recurrent_weights(w_h: Array, dtype: DType) -> Array | tuple[Array, ...]:
  """``w_h [P, 4, H]`` prepared once per call, outside the scan, for
  ``recurrent_product``: itself (NN form) or four ``[H, P]`` blocks (NT)."""
  if nn_products():
    return w_h.astype(dtype)  # [P, 4, H]
  return gate_blocks(w_h, (1, 2, 0), dtype)


def recurrent_product(h: Array, w_h: Array | tuple[Array, ...], dtype: DType) -> Array:
  """``h [B, P] . W_h`` -> ``[B, 4, H]``.

  NN form: one ``[B, P] x [P, 4, H]`` contraction. NT form: one ``[B, P] x
  [H, P]^T`` product per gate (XLA would canonicalise a single contraction
  into the NN form). Neither reshapes the weight across its hidden axis,
  which model parallelism splits: a device holding a slice of ``H``
  computes all four gates of its units from the whole ``h``.
  """
  if isinstance(w_h, tuple):
    return jnp.stack([dot_nt(h, w, dtype) for w in w_h], axis=-2)
  return dot(h, w_h, dtype)


def flat_gates() -> bool:
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


def recurrent_weights_t(w_h: Array, dtype: DType) -> Array | tuple[Array, ...]:
  """``w_h [P, 4, H]`` prepared once per call for ``recurrent_product_t``:
  ``[P, 4H]`` (``flat_gates``, from ``FLAT_BACKWARD_MIN_HIDDEN``) or four
  blocks, ``[H, P]`` (NN form) or ``[P, H]`` (NT form)."""
  if flat_gates() and w_h.shape[-1] >= FLAT_BACKWARD_MIN_HIDDEN:
    return w_h.reshape(w_h.shape[0], -1).astype(dtype)  # [P, 4H]
  return gate_blocks(w_h, (1, 2, 0) if nn_products() else (1, 0, 2), dtype)


def recurrent_product_t(d_gates: Array, w_h_t: Array | tuple[Array, ...], dtype: DType) -> Array:
  """``d_gates [B, 4, H] . W_h^T`` -> ``[B, P]``: one ``[B, 4H] x [P, 4H]^T``
  product (``flat_gates``), else the sum of the four gates' products, which
  keeps the hidden axis whole for sharding: a single 3-D contraction over
  the gate and hidden axes compiles to a 1.3-1.8x slower product on the
  CPU (measured in both forms)."""
  if not isinstance(w_h_t, tuple):
    return dot_nt(d_gates.reshape(d_gates.shape[:-2] + (-1,)), w_h_t, dtype)
  product = dot if nn_products() else dot_nt
  out = product(d_gates[..., 0, :], w_h_t[0], dtype)
  for k in range(1, NUM_GATES):
    out = out + product(d_gates[..., k, :], w_h_t[k], dtype)
  return out

