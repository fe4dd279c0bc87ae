"""The speed benchmarks still run (tiny shapes, one round; no timing asserted)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks'))

import lstm_speed  # noqa: E402


def test_lstm_speed_runs_every_jax_implementation():
  shape = lstm_speed.Shape('tiny', vocab=31, hidden=8, batch=2, time=3)
  impls = ['lstm_flax', 'flax_rnn', 'lstm_flax_autodiff', 'lstm_flax_lm', 'jax_cudnn']
  results = lstm_speed.benchmark(shape, impls, with_softmax=True, on_gpu=False,
                                 rounds=1, steps=1, warmup=1)
  for impl in impls[:-1]:
    assert isinstance(results[impl], float) and results[impl] > 0, (impl, results[impl])
  assert results['jax_cudnn'].startswith('skipped')
  lstm_only = lstm_speed.benchmark(shape, ['lstm_flax_lm'], with_softmax=False,
                                   on_gpu=False, rounds=1, steps=1, warmup=1)
  assert lstm_only['lstm_flax_lm'].startswith('skipped')
