"""The functional kernel: custom VJP, padding semantics, layouts, dtypes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lstm_flax import kernel, kernel_products

BATCH, TIME, IN, HIDDEN = 3, 7, 5, 6


def make_params(key, in_features=IN, hidden=HIDDEN, proj=None, dtype=jnp.float32, scale=0.5):
  k = jax.random.split(key, 4)
  p = proj or hidden
  params = {
      'input_kernel': scale * jax.random.normal(k[0], (in_features, 4, hidden), dtype),
      'recurrent_kernel': scale * jax.random.normal(k[1], (p, 4, hidden), dtype),
      'bias': 0.2 * jax.random.normal(k[2], (4, hidden), dtype),
  }
  if proj:
    params['projection_kernel'] = scale * jax.random.normal(k[3], (hidden, proj), dtype)
  return params


def make_inputs(key, dtype=jnp.float32, proj=None):
  k = jax.random.split(key, 3)
  x = jax.random.normal(k[0], (BATCH, TIME, IN), dtype)
  carry = kernel.LSTMState(
      h=jax.random.normal(k[1], (BATCH, proj or HIDDEN), dtype),
      c=jax.random.normal(k[2], (BATCH, HIDDEN), dtype),
  )
  return x, carry


def loss_fn(params, x, carry, *, lengths=None, mask=None, reverse=False, custom=True,
            dtype=jnp.float32):
  """A loss touching outputs and both parts of the final carry, nonlinearly."""
  y, final = kernel.lstm(params, x, carry, lengths=lengths, mask=mask, reverse=reverse,
                         use_custom_vjp=custom, compute_dtype=dtype)
  return jnp.sum(jnp.sin(y)) + jnp.sum(final.h**2) + jnp.sum(jnp.cos(final.c))


LENGTHS = jnp.array([7, 4, 1])
CASES = [
    dict(proj=None, reverse=False, lengths=None),
    dict(proj=None, reverse=True, lengths=LENGTHS),
    dict(proj=4, reverse=False, lengths=LENGTHS),
    dict(proj=4, reverse=True, lengths=None),
]


@pytest.mark.parametrize('case', CASES, ids=lambda c: f"proj{c['proj']}-rev{c['reverse']}-len{c['lengths'] is not None}")
def test_custom_vjp_matches_autodiff_float32(case):
  params = make_params(jax.random.key(0), proj=case['proj'])
  x, carry = make_inputs(jax.random.key(1), proj=case['proj'])
  kw = dict(lengths=case['lengths'], reverse=case['reverse'])
  grad = lambda custom: jax.jit(jax.value_and_grad(
      lambda *a: loss_fn(*a, custom=custom, **kw), argnums=(0, 1, 2)))(params, x, carry)
  (v1, g1), (v2, g2) = grad(True), grad(False)
  np.testing.assert_allclose(v1, v2, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_custom_vjp_against_float64_finite_differences():
  with jax.enable_x64(True):
    params = make_params(jax.random.key(2), proj=4, dtype=jnp.float64)
    x, carry = make_inputs(jax.random.key(3), jnp.float64, proj=4)
    for reverse in (False, True):
      f = lambda p, x, c: loss_fn(p, x, c, lengths=LENGTHS, reverse=reverse, dtype=jnp.float64)
      check_grads(f, (params, x, carry), order=1, modes=['rev'], atol=1e-7, rtol=1e-7, eps=1e-6)


def test_custom_vjp_equals_autodiff_float64():
  with jax.enable_x64(True):
    params = make_params(jax.random.key(4), proj=4, dtype=jnp.float64)
    x, carry = make_inputs(jax.random.key(5), jnp.float64, proj=4)
    mask = jnp.array(np.random.default_rng(0).random((BATCH, TIME)) < 0.7)  # holes anywhere
    grads = [
        jax.grad(lambda *a: loss_fn(*a, mask=mask, custom=c, dtype=jnp.float64),
                 argnums=(0, 1, 2))(params, x, carry)
        for c in (True, False)
    ]
    for a, b in zip(*map(jax.tree_util.tree_leaves, grads)):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_product_forms_agree(monkeypatch):
  """The products' forms (NN or NT per CPU, ``nn_products``; flat ``4H`` on
  one CPU device, ``flat_gates``; ``lstm_flax.kernel_products``) give the same values and custom-VJP
  gradients, with a projection and padding."""
  with jax.enable_x64(True):
    params = make_params(jax.random.key(6), proj=4, dtype=jnp.float64)
    x, carry = make_inputs(jax.random.key(7), jnp.float64, proj=4)
    results = []
    for nn_form, flat, flat_min_hidden in (
        (True, True, 0), (True, True, 10**6), (True, False, 0), (False, False, 0)):
      monkeypatch.setattr(kernel_products, 'nn_products', lambda nn_form=nn_form: nn_form)
      monkeypatch.setattr(kernel_products, 'flat_gates', lambda flat=flat: flat)
      monkeypatch.setattr(kernel_products, 'FLAT_BACKWARD_MIN_HIDDEN', flat_min_hidden)
      results.append(jax.value_and_grad(
          lambda *a: loss_fn(*a, lengths=LENGTHS, dtype=jnp.float64), argnums=(0, 1, 2))(
              params, x, carry))
    for other in results[1:]:
      for a, b in zip(*map(jax.tree_util.tree_leaves, (results[0], other))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize('reverse', [False, True])
def test_padding_equals_running_each_sequence_unpadded(reverse):
  params = make_params(jax.random.key(6))
  x, carry = make_inputs(jax.random.key(7))
  run = jax.jit(lambda p, x, c, lengths=None: kernel.lstm(p, x, c, lengths=lengths, reverse=reverse))
  y, final = run(params, x, carry, LENGTHS)
  for b, n in enumerate(np.asarray(LENGTHS)):
    one = kernel.LSTMState(carry.h[b : b + 1], carry.c[b : b + 1])
    y_b, final_b = kernel.lstm(params, x[b : b + 1, :n], one, reverse=reverse)
    np.testing.assert_allclose(y[b, :n], y_b[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y[b, n:], 0.0)
    np.testing.assert_allclose(final.h[b], final_b.h[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final.c[b], final_b.c[0], rtol=1e-5, atol=1e-6)


def test_masked_step_keeps_carry_and_outputs_zero():
  params = make_params(jax.random.key(8))
  x, carry = make_inputs(jax.random.key(9))
  mask = jnp.ones((BATCH, TIME), bool).at[1, 2].set(False)  # a hole in sequence 1
  y, final = kernel.lstm(params, x, carry, mask=mask)
  np.testing.assert_array_equal(y[1, 2], 0.0)
  keep = [t for t in range(TIME) if t != 2]
  one = kernel.LSTMState(carry.h[1:2], carry.c[1:2])
  y_ref, final_ref = kernel.lstm(params, x[1:2, keep], one)
  np.testing.assert_allclose(y[1, keep], y_ref[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(final.c[1], final_ref.c[0], rtol=1e-5, atol=1e-6)


def test_lengths_mask_layouts_and_unroll_agree():
  params = make_params(jax.random.key(10), proj=4)
  x, carry = make_inputs(jax.random.key(11), proj=4)
  mask = kernel.lengths_to_mask(LENGTHS, TIME).T  # [batch, time]
  y, final = kernel.lstm(params, x, carry, lengths=LENGTHS)
  variants = [
      kernel.lstm(params, x, carry, mask=mask),
      kernel.lstm(params, x, carry, lengths=LENGTHS, unroll=3),
  ]
  y_tm, final_tm = kernel.lstm(params, jnp.swapaxes(x, 0, 1), carry, mask=mask.T, time_major=True)
  variants.append((jnp.swapaxes(y_tm, 0, 1), final_tm))
  for y_v, final_v in variants:
    np.testing.assert_allclose(y_v, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(final_v.h, final.h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(final_v.c, final.c, rtol=1e-6, atol=1e-6)


def test_cell_step_matches_sequence_kernel():
  params = make_params(jax.random.key(12), proj=4)
  x, carry = make_inputs(jax.random.key(13), proj=4)
  y, final = kernel.lstm(params, x, carry)
  state = carry
  for t in range(TIME):
    state, y_t = kernel.lstm_cell(params, state, x[:, t])
    np.testing.assert_allclose(y_t, y[:, t], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state.c, final.c, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_state():
  params = make_params(jax.random.key(14))
  x, carry = make_inputs(jax.random.key(15))
  y32, f32 = kernel.lstm(params, x, carry, lengths=LENGTHS)
  y16, f16 = kernel.lstm(params, x, carry, lengths=LENGTHS, compute_dtype=jnp.bfloat16)
  assert y16.dtype == jnp.bfloat16
  assert f16.c.dtype == jnp.float32 and f16.h.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=5e-2)
  np.testing.assert_allclose(f16.c, f32.c, atol=1e-1)
  g = jax.grad(lambda p: loss_fn(p, x, carry, dtype=jnp.bfloat16))(params)
  assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(g))
  g32 = jax.grad(lambda p: loss_fn(p, x, carry))(params)
  np.testing.assert_allclose(g['recurrent_kernel'], g32['recurrent_kernel'], rtol=0.1, atol=0.1)


def test_final_carry_is_not_stored_per_step():
  """The forward pass (no VJP) keeps no [time, ...] cell-state sequence."""
  params = make_params(jax.random.key(16))
  x, carry = make_inputs(jax.random.key(17))
  hlo = jax.jit(lambda p, x, c: kernel.lstm(p, x, c, lengths=LENGTHS)).lower(params, x, carry)
  text = hlo.as_text()
  # Outputs [time, batch, H] appear (the h sequence); no second such array for c.
  assert text.count(f'tensor<{TIME}x{BATCH}x{HIDDEN}xf32>') > 0
  compiled = hlo.compile().as_text()
  scan_outputs = [l for l in compiled.splitlines() if 'dynamic-update-slice(' in l]
  assert len(scan_outputs) == 1, scan_outputs


# --- errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    'mutate, message',
    [
        (lambda p, x, c: (p, x[0], c, {}), 'rank 2'),
        (lambda p, x, c: (p, x[..., :3], c, {}), '3 features but'),
        (lambda p, x, c: (p, x, c, {'mask': jnp.ones((TIME, BATCH), bool)}), 'mask must be [batch, time]'),
        (lambda p, x, c: (p, x, c, {'lengths': jnp.ones((BATCH, 1), int)}), 'lengths must be [batch]'),
        (lambda p, x, c: (p, x, c, {'lengths': LENGTHS, 'mask': jnp.ones((BATCH, TIME))}), 'not both'),
        (lambda p, x, c: (p, x, kernel.LSTMState(c.h[:, :2], c.c), {}), 'initial_carry must be'),
        (lambda p, x, c: ({k: v for k, v in p.items() if k != 'bias'}, x, c, {}), "missing ['bias']"),
        (lambda p, x, c: ({**p, 'bias': p['bias'][:3]}, x, c, {}), "must have shape (4, 6)"),
        (lambda p, x, c: ({**p, 'input_kernel': p['input_kernel'].reshape(IN, -1)}, x, c, {}), 'must be [in, 4, 6]'),
        (lambda p, x, c: ({**p, 'recurrent_kernel': p['recurrent_kernel'][:4]}, x, c, {}), 'no \'projection_kernel\''),
    ],
)
def test_errors_name_argument_and_shapes(mutate, message):
  params = make_params(jax.random.key(18))
  x, carry = make_inputs(jax.random.key(19))
  p, x, c, kw = mutate(params, x, carry)
  with pytest.raises(ValueError) as err:
    jax.jit(lambda p, x, c: kernel.lstm(p, x, c, **kw))(p, x, c)
  assert message in str(err.value)


def test_unroll_default_depends_on_backend():
  assert kernel.resolve_unroll(None) == (1 if jax.default_backend() == 'cpu' else kernel.UNROLL_ON_ACCELERATORS)
  assert kernel.resolve_unroll(4) == 4
  with pytest.raises(ValueError, match='unroll must be >= 1'):
    kernel.resolve_unroll(0)
