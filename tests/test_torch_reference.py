"""lstm_flax against torch.nn.LSTM: outputs, final carries and gradients.

The reference comes from tests/fixtures/torch_lstm.npz, written in float64 by
tests/make_torch_fixture.py, so this test does not need torch.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_flax import interop, kernel, stack
from lstm_flax.spec import LSTMSpec

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'torch_lstm.npz'
CONFIGS = (
    'one_layer',
    'three_layers',
    'bidirectional',
    'projection',
    'padded',
    'padded_bidirectional_projection',
)


def _load(name):
  with np.load(FIXTURE) as data:
    return {k[len(name) + 1 :]: data[k] for k in data.files if k.startswith(name + '/')}


def _run(ref, dtype, use_custom_vjp):
  """Our outputs, final carry and gradients (mapped onto torch's names)."""
  num_layers, bidirectional, proj_size, _ = (int(v) for v in ref['config'])
  state_dict = {k[3:]: v for k, v in ref.items() if k.startswith('sd.')}
  params = jax.tree_util.tree_map(
      lambda a: jnp.asarray(a, dtype), interop.from_torch_state_dict(state_dict)
  )
  x, h0, c0 = (jnp.asarray(ref[k], dtype) for k in ('x', 'h0', 'c0'))
  lengths = jnp.asarray(ref['lengths'])
  cts = [jnp.asarray(ref[k], dtype) for k in ('dy', 'dh_n', 'dc_n')]

  def forward(params, x, h0, c0):
    spec = LSTMSpec(hidden_size=c0.shape[-1], num_layers=num_layers,
                    bidirectional=bool(bidirectional), proj_size=proj_size or None,
                    compute_dtype=dtype, use_custom_vjp=use_custom_vjp)
    y, carry = stack.lstm_stack(spec, params, x, kernel.LSTMState(h0, c0), lengths=lengths)
    return y, carry.h, carry.c

  def loss(params, x, h0, c0):
    outs = forward(params, x, h0, c0)
    return sum(jnp.sum(o * ct) for o, ct in zip(outs, cts))

  y, h_n, c_n = jax.jit(forward)(params, x, h0, c0)
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(params, x, h0, c0)
  ours = {'y': y, 'h_n': h_n, 'c_n': c_n, 'grad.x': grads[1], 'grad.h0': grads[2], 'grad.c0': grads[3]}
  # d/d bias_ih = d/d bias_hh = d/d bias (ours is their sum).
  for key, value in interop.to_torch_state_dict(grads[0]).items():
    if key.startswith('bias_hh'):
      value = interop.to_torch_state_dict(grads[0])[key.replace('bias_hh', 'bias_ih')]
    ours['grad.' + key] = value
  return ours


@pytest.mark.parametrize('name', CONFIGS)
@pytest.mark.parametrize('use_custom_vjp', [True, False], ids=['custom_vjp', 'autodiff'])
def test_matches_torch_float32(name, use_custom_vjp):
  ref = _load(name)
  ours = _run(ref, jnp.float32, use_custom_vjp)
  for key, value in ours.items():
    np.testing.assert_allclose(
        np.asarray(value), ref[key], rtol=1e-5, atol=2e-6, err_msg=f'{name}: {key}'
    )


@pytest.mark.parametrize('name', ['padded_bidirectional_projection', 'three_layers'])
def test_matches_torch_float64(name):
  ref = _load(name)
  with jax.enable_x64(True):
    ours = _run(ref, jnp.float64, True)
    for key, value in ours.items():
      assert np.asarray(value).dtype == np.float64, key
      np.testing.assert_allclose(
          np.asarray(value), ref[key], rtol=1e-10, atol=1e-12, err_msg=f'{name}: {key}'
      )


def test_fixture_covers_every_gradient():
  """Guards the comparison above: every torch parameter has a gradient entry."""
  for name in CONFIGS:
    ref = _load(name)
    weights = {k[3:] for k in ref if k.startswith('sd.')}
    assert weights and weights == {k[5:] for k in ref if k.startswith('grad.')} - {'x', 'h0', 'c0'}
    padded = (ref['lengths'] < ref['x'].shape[1]).any()
    assert padded == name.startswith('padded')
