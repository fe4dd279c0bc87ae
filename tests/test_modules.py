"""Linen and NNX modules: Flax nn.RNN agreement, carry, dropout, transforms, sharding."""

import os
import subprocess
import sys
import textwrap

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lstm_flax
from lstm_flax import interop
from lstm_flax import nnx as lstm_nnx

BATCH, TIME, IN, HIDDEN = 4, 6, 5, 8
LENGTHS = jnp.array([6, 3, 1, 5])


@pytest.fixture(scope='module')
def x():
  return jax.random.normal(jax.random.key(0), (BATCH, TIME, IN))


@pytest.mark.parametrize('cell_type', [nn.OptimizedLSTMCell, nn.LSTMCell])
def test_matches_flax_rnn_after_conversion(x, cell_type):
  class FlaxStack(nn.Module):
    @nn.compact
    def __call__(self, x, seq_lengths):
      for i in range(2):
        x = nn.RNN(cell_type(HIDDEN, name=f'cell_{i}'))(x, seq_lengths=seq_lengths)
      return x

  flax_stack = FlaxStack()
  flax_params = flax_stack.init(jax.random.key(1), x, LENGTHS)['params']
  y_ref = flax_stack.apply({'params': flax_params}, x, LENGTHS)
  params = {
      f'layer_{i}': interop.from_flax_lstm_cell(flax_params[f'cell_{i}'])
      for i in range(2)
  }
  y, carry = lstm_flax.LSTM(HIDDEN, num_layers=2).apply({'params': params}, x, lengths=LENGTHS)
  valid = np.asarray(jnp.arange(TIME)[None, :] < LENGTHS[:, None])
  np.testing.assert_allclose(y[valid], y_ref[valid], rtol=1e-5, atol=1e-6)
  # Round trip back to the Flax layout.
  back = interop.to_flax_lstm_cell(params['layer_0'])
  for name, entry in back.items():
    for k, v in entry.items():
      np.testing.assert_array_equal(v, flax_params['cell_0'][name][k])


def test_lstm_cell_in_nn_rnn_equals_layer(x):
  rnn = nn.RNN(lstm_flax.LSTMCell(HIDDEN, proj_size=3))
  variables = rnn.init(jax.random.key(2), x)
  y_rnn = rnn.apply(variables, x, seq_lengths=LENGTHS)
  layer = lstm_flax.LSTM(HIDDEN, proj_size=3)
  y, _ = layer.apply({'params': {'layer_0': variables['params']['cell']}}, x, lengths=LENGTHS)
  valid = np.asarray(jnp.arange(TIME)[None, :] < LENGTHS[:, None])
  np.testing.assert_allclose(y[valid], y_rnn[valid], rtol=1e-5, atol=1e-6)


def test_carry_in_and_out_for_truncated_bptt(x):
  model = lstm_flax.LSTM(HIDDEN, num_layers=2, bidirectional=False, proj_size=5)
  variables = model.init(jax.random.key(3), x)
  y_full, carry_full = model.apply(variables, x)
  y1, carry = model.apply(variables, x[:, :2])
  y2, carry = model.apply(variables, x[:, 2:], carry)
  assert carry.h.shape == (2, BATCH, 5) and carry.c.shape == (2, BATCH, HIDDEN)
  np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y_full, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(carry.c, carry_full.c, rtol=1e-5, atol=1e-6)
  zero = model.initialize_carry(BATCH)
  np.testing.assert_allclose(model.apply(variables, x, zero)[0], y_full, rtol=1e-6)


def test_bidirectional_halves(x):
  bi = lstm_flax.LSTM(HIDDEN, bidirectional=True)
  variables = bi.init(jax.random.key(4), x)
  y, carry = bi.apply(variables, x, lengths=LENGTHS)
  assert y.shape == (BATCH, TIME, 2 * HIDDEN) and carry.h.shape == (2, BATCH, HIDDEN)
  uni = lstm_flax.LSTM(HIDDEN)
  fwd, _ = uni.apply({'params': {'layer_0': variables['params']['layer_0']}}, x, lengths=LENGTHS)
  np.testing.assert_allclose(y[..., :HIDDEN], fwd, rtol=1e-6, atol=1e-6)
  rev_params = {'params': {'layer_0': variables['params']['layer_0_reverse']}}
  for b, n in enumerate(np.asarray(LENGTHS)):  # reverse = forward over the flipped valid part
    flipped, _ = uni.apply(rev_params, x[b : b + 1, :n][:, ::-1])
    np.testing.assert_allclose(y[b, :n, HIDDEN:], flipped[0, ::-1], rtol=1e-5, atol=1e-6)


def test_dropout_variants():
  x = jnp.ones((BATCH, 20, 16))
  make = lambda **kw: lstm_flax.LSTM(HIDDEN, num_layers=2, **kw)
  base = make()
  variables = base.init(jax.random.key(5), x)
  y_ref, _ = base.apply(variables, x)

  def input_grad(model, seed):
    f = lambda x: jnp.sum(model.apply(variables, x, deterministic=False,
                                      rngs={'dropout': jax.random.key(seed)})[0])
    return jax.grad(f)(x)

  # Deterministic: dropout is off.
  model = make(input_dropout_rate=0.5, dropout_rate=0.5, weight_dropout_rate=0.5,
               variational_dropout=True)
  np.testing.assert_array_equal(model.apply(variables, x, deterministic=True)[0], y_ref)
  with pytest.raises(ValueError, match='deterministic'):
    model.apply(variables, x)
  # Variational input dropout: a dropped feature is dropped at every step.
  g = np.asarray(input_grad(make(input_dropout_rate=0.5, variational_dropout=True), 0))
  dropped = g == 0.0
  assert 0.3 < dropped.mean() < 0.7
  assert (dropped == dropped[:, :1]).all()
  # Standard input dropout: masks differ over time.
  g = np.asarray(input_grad(make(input_dropout_rate=0.5), 0))
  assert 0.3 < (g == 0.0).mean() < 0.7 and not ((g == 0.0) == (g[:, :1] == 0.0)).all()
  # Weight drop: dropped recurrent weights get exactly zero gradient.
  model = make(weight_dropout_rate=0.4)
  grads = jax.grad(lambda p: jnp.sum(model.apply(
      {'params': p}, x, deterministic=False, rngs={'dropout': jax.random.key(1)})[0] ** 2))(
          variables['params'])
  grads = nn.meta.unbox(grads)
  zero_fraction = float(jnp.mean(grads['layer_1']['recurrent_kernel'] == 0.0))
  assert 0.3 < zero_fraction < 0.5
  assert float(jnp.mean(grads['layer_1']['input_kernel'] == 0.0)) < 0.05


def test_jit_grad_vmap_remat(x):
  model = lstm_flax.LSTM(HIDDEN, num_layers=2, proj_size=4)
  variables = model.init(jax.random.key(6), x)
  loss = lambda m, p, x: jnp.sum(m.apply({'params': p}, x, lengths=LENGTHS)[0] ** 2)
  g = jax.jit(jax.grad(lambda p: loss(model, p, x)))(variables['params'])
  remat_model = nn.remat(lstm_flax.LSTM)(HIDDEN, num_layers=2, proj_size=4)
  g_remat = jax.jit(jax.grad(lambda p: loss(remat_model, p, x)))(variables['params'])
  for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_remat)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  xs = jnp.stack([x, 2 * x, -x])  # vmap over an extra leading axis
  ys = jax.vmap(lambda x: model.apply(variables, x, lengths=LENGTHS)[0])(xs)
  for i in range(3):
    np.testing.assert_allclose(ys[i], model.apply(variables, xs[i], lengths=LENGTHS)[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('proj_size, bidirectional', [(None, False), (3, True)])
def test_nnx_module_shares_layout_and_outputs(x, proj_size, bidirectional):
  linen = lstm_flax.LSTM(HIDDEN, num_layers=2, bidirectional=bidirectional, proj_size=proj_size)
  variables = nn.meta.unbox(linen.init(jax.random.key(7), x))
  model = lstm_nnx.LSTM(IN, HIDDEN, num_layers=2, bidirectional=bidirectional,
                        proj_size=proj_size, rngs=nnx.Rngs(0))
  state = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  shapes = lambda t: jax.tree_util.tree_map(jnp.shape, t)
  assert shapes(state) == shapes(variables['params'])
  nnx.update(model, variables['params'])
  y_ref, carry_ref = linen.apply(variables, x, lengths=LENGTHS)
  y, carry = model(x, lengths=LENGTHS)
  np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(carry.c, carry_ref.c, rtol=1e-6, atol=1e-6)

  @nnx.jit
  def grad_step(model, x):
    return nnx.grad(lambda m: jnp.sum(m(x, lengths=LENGTHS)[0] ** 2))(model)

  grads = nnx.to_pure_dict(grad_step(model, x))
  ref = jax.grad(lambda p: jnp.sum(linen.apply({'params': p}, x, lengths=LENGTHS)[0] ** 2))(
      variables['params'])
  for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nnx_dropout_train_and_eval(x):
  model = lstm_nnx.LSTM(IN, HIDDEN, num_layers=2, dropout_rate=0.5, rngs=nnx.Rngs(0, dropout=1))
  y1, _ = model(x)
  y2, _ = model(x)
  assert not np.allclose(y1, y2)  # fresh dropout keys each call
  model.eval()
  np.testing.assert_array_equal(model(x)[0], model(x)[0])


def test_module_errors(x):
  with pytest.raises(ValueError, match=r'LSTM.proj_size must be None or in \(0, hidden_size=8\)'):
    lstm_flax.LSTM(HIDDEN, proj_size=HIDDEN)
  with pytest.raises(ValueError, match='LSTM.hidden_size must be a positive int; got 0'):
    lstm_flax.LSTM(0)
  model = lstm_flax.LSTM(HIDDEN, num_layers=2)
  variables = model.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r'initial_carry must be .*\(h=\(2, 4, 8\)'):
    model.apply(variables, x, lstm_flax.LSTMState(jnp.zeros((1, 4, 8)), jnp.zeros((1, 4, 8))))
  with pytest.raises(ValueError, match='LSTM inputs must be'):
    model.apply(variables, x[0])
  with pytest.raises(flax.errors.ScopeParamShapeError, match=r'"input_kernel" in "/layer_0".*\(7, 4, 8\).*\(5, 4, 8\)'):
    model.apply(variables, jnp.zeros((BATCH, TIME, 7)))  # Flax names the parameter and shapes


def test_sharded_inputs_over_virtual_devices():
  """Data-parallel inputs over 8 CPU devices give the unsharded results."""
  script = textwrap.dedent("""
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      import lstm_flax
      assert jax.device_count() == 8, jax.devices()
      model = lstm_flax.LSTM(16, num_layers=2, bidirectional=True)
      x = jax.random.normal(jax.random.key(0), (16, 5, 4))
      lengths = jnp.arange(16) % 5 + 1
      variables = model.init(jax.random.key(1), x)
      loss = lambda p, x, l: jnp.sum(model.apply({'params': p}, x, lengths=l)[0] ** 2)
      step = jax.jit(jax.value_and_grad(loss))
      ref = step(variables['params'], x, lengths)
      mesh = Mesh(np.array(jax.devices()), ('data',))
      xs = jax.device_put(x, NamedSharding(mesh, P('data')))
      ls = jax.device_put(lengths, NamedSharding(mesh, P('data')))
      out = step(variables['params'], xs, ls)
      assert len(xs.sharding.device_set) == 8
      for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
      print('sharded ok')
  """)
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'sharded ok' in result.stdout


def test_import_does_not_load_tensorflow():
  script = ('import sys, lstm_flax, lstm_flax.nnx, lstm_flax.interop; '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets", "torch")]; '
            'print(bad); sys.exit(1 if bad else 0)')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_bfloat16_params_initialise_and_train_with_float32_state(x):
  """``param_dtype='bfloat16'`` (the orthogonal initialiser draws in float32,
  LAPACK's QR has no bfloat16): parameters and gradients are bfloat16, the
  carry float32, the output the compute dtype, and it matches float32
  parameters rounded to bfloat16."""
  for dtype in ('float32', 'bfloat16'):
    layer = lstm_flax.LSTM(HIDDEN, num_layers=2, param_dtype='bfloat16', dtype=dtype)
    params = layer.init(jax.random.key(0), x)['params']
    assert {p.dtype for p in jax.tree_util.tree_leaves(params)} == {jnp.dtype('bfloat16')}
    y, carry = layer.apply({'params': params}, x, lengths=LENGTHS)
    assert y.dtype == jnp.dtype(dtype) and carry.c.dtype == jnp.float32
    grads = jax.grad(lambda p: jnp.sum(
        layer.apply({'params': p}, x)[0].astype(jnp.float32) ** 2))(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert {g.dtype for g in leaves} == {jnp.dtype('bfloat16')}
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  reference = lstm_flax.LSTM(HIDDEN, num_layers=2)
  rounded = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
  y_ref, _ = reference.apply({'params': rounded}, x, lengths=LENGTHS)
  np.testing.assert_allclose(np.asarray(y, np.float32), y_ref, atol=0.05)


def test_bias_init_plus_forget_bias_in_linen_and_nnx(x):
  """``bias_init`` draws every bias; ``forget_bias`` is added on the forget
  gate (row 1 of the [4, H] i, f, g, o bias), in Linen and NNX alike."""
  uniform = nn.initializers.uniform(scale=0.2)  # [0, 0.2)
  layer = lstm_flax.LSTM(HIDDEN, num_layers=2, bias_init=uniform, forget_bias=1.0)
  params = nn.meta.unbox(layer.init(jax.random.PRNGKey(0), x))['params']
  model = lstm_nnx.LSTM(IN, HIDDEN, num_layers=2, bias_init=uniform,
                        forget_bias=1.0, rngs=nnx.Rngs(0))
  biases = [params[f'layer_{i}']['bias'] for i in range(2)]
  biases += [getattr(model, f'layer_{i}').bias[...] for i in range(2)]
  for bias in biases:
    assert bias.shape == (4, HIDDEN)
    drawn = np.asarray(bias)[[0, 2, 3]]
    assert np.all((drawn >= 0.0) & (drawn < 0.2)) and np.ptp(drawn) > 0.05
    forget = bias[1]
    assert np.all((forget >= 1.0) & (forget < 1.2)) and np.ptp(forget) > 0.02
  # Without bias_init: zeros plus forget_bias, as before.
  default = lstm_flax.LSTM(HIDDEN, forget_bias=1.0).init(jax.random.PRNGKey(0), x)
  bias = default['params']['layer_0']['bias']  # plain: logical_axes is off by default
  np.testing.assert_array_equal(bias, np.repeat([[0.0], [1.0], [0.0], [0.0]], HIDDEN, 1))
