"""The speed benchmarks still run (tiny shapes, one round; no timing asserted)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks'))

import lstm_speed  # noqa: E402


def test_lstm_speed_runs_every_jax_implementation():
  shape = lstm_speed.Shape('tiny', vocab=31, hidden=8, batch=2, time=3)
  impls = ['lstm_flax', 'minimal_scan', 'flax_rnn', 'lstm_flax_autodiff', 'lstm_flax_lm',
           'jax_cudnn']
  results = lstm_speed.benchmark(shape, impls, with_softmax=True, on_gpu=False,
                                 rounds=1, steps=1, warmup=1)
  for impl in impls[:-1]:
    assert isinstance(results[impl], float) and results[impl] > 0, (impl, results[impl])
  assert results['jax_cudnn'].startswith('skipped')
  lstm_only = lstm_speed.benchmark(shape, ['lstm_flax_lm'], with_softmax=False,
                                   on_gpu=False, rounds=1, steps=1, warmup=1)
  assert lstm_only['lstm_flax_lm'].startswith('skipped')


def test_minimal_scan_gradient_matches_autodiff():
  """The floor's hand-written backward pass is exact (float32 rounding)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  keys = jax.random.split(jax.random.key(0), 3)
  gates_x = jax.random.normal(keys[0], (4, 2, 12))  # [T, B, 4H]
  w_h = 0.5 * jax.random.normal(keys[1], (3, 12))  # [H, 4H]
  cotangent = jax.random.normal(keys[2], (4, 2, 3))  # [T, B, H]
  custom = jax.grad(lambda g, w: jnp.sum(lstm_speed._minimal_recurrence(g, w) * cotangent),
                    (0, 1))(gates_x, w_h)
  plain = jax.grad(lambda g, w: jnp.sum(lstm_speed._minimal_forward(g, w)[0] * cotangent),
                   (0, 1))(gates_x, w_h)
  for a, b in zip(custom, plain):
    assert jnp.allclose(a, b, atol=1e-5), float(jnp.max(jnp.abs(a - b)))
