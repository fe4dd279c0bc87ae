"""lstm_flax.LSTMCell as a drop-in for Flax's nn.OptimizedLSTMCell (issue 15 item 2).

A model written with Flax's cell is trained for a few steps; the same model
with ``lstm_flax.LSTMCell`` and the weights converted by
``interop.from_flax_lstm_cells`` gives the same outputs and final carries
``(c, h)`` inside ``nn.RNN``, ``nn.Bidirectional`` and ``nn.scan``.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lstm_flax
from lstm_flax import interop

BATCH, TIME, IN, HIDDEN = 3, 7, 5, 6
LENGTHS = jnp.array([7, 4, 1])
TOL = dict(rtol=1e-6, atol=1e-6)


class RNNModel(nn.Module):
  """nn.RNN with an explicit initial carry, seq_lengths and return_carry."""

  cell_type: Any

  @nn.compact
  def __call__(self, x, carry0):
    carry, y = nn.RNN(self.cell_type(HIDDEN), return_carry=True)(
        x, initial_carry=carry0, seq_lengths=LENGTHS)
    return nn.Dense(2)(y), carry


class BidirectionalModel(nn.Module):
  cell_type: Any

  @nn.compact
  def __call__(self, x, carry0):
    del carry0
    carries, y = nn.Bidirectional(nn.RNN(self.cell_type(HIDDEN)), nn.RNN(self.cell_type(HIDDEN)),
                                  return_carry=True)(x, seq_lengths=LENGTHS)
    return nn.Dense(2)(y), carries


class ScanModel(nn.Module):
  """The classic ``nn.scan`` over a cell, one set of weights for every step."""

  cell_type: Any

  @nn.compact
  def __call__(self, x, carry0):
    scan = nn.scan(self.cell_type, variable_broadcast='params', split_rngs={'params': False},
                   in_axes=1, out_axes=1)
    carry, y = scan(HIDDEN, name='scanned')(carry0, x)
    return nn.Dense(2)(y), carry


class PerStepScanModel(nn.Module):
  """``nn.scan`` with its own weights per step (``variable_axes``): [TIME, ...] params."""

  cell_type: Any

  @nn.compact
  def __call__(self, x, carry0):
    # Flax's usual stacking pattern, with no metadata_params: our cell's
    # parameters are plain arrays unless logical_axes=True.
    scan = nn.scan(self.cell_type, variable_axes={'params': 0}, split_rngs={'params': True},
                   in_axes=1, out_axes=1, length=TIME)
    carry, y = scan(HIDDEN, name='scanned')(carry0, x)
    return nn.Dense(2)(y), carry


@pytest.fixture(scope='module')
def data():
  rng = np.random.default_rng(0)  # numpy: no compilation per shape
  normal = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
  # A non-zero initial carry with c != h: swapping them changes everything.
  return normal(BATCH, TIME, IN), normal(BATCH, TIME, 2), (normal(BATCH, HIDDEN),
                                                          0.5 * normal(BATCH, HIDDEN))


def _flax_params(model_type, data, train):
  """Flax-cell model params after a perturbation (and three SGD steps)."""
  x, target, carry0 = data
  model = model_type(nn.OptimizedLSTMCell)
  params = model.init(jax.random.key(1), x, carry0)['params']
  rng = np.random.default_rng(2)  # biases away from their zero init
  params = jax.tree.map(
      lambda p: jnp.asarray(p + 0.3 * rng.standard_normal(p.shape), p.dtype), params)
  if not train:
    return model, params
  optimizer = optax.sgd(0.1)
  state = optimizer.init(params)

  @jax.jit
  def step(params, state):
    loss = lambda p: jnp.mean((model.apply({'params': p}, x, carry0)[0] - target) ** 2)
    grads = jax.grad(loss)(params)
    updates, state = optimizer.update(grads, state)
    return optax.apply_updates(params, updates), state

  for _ in range(3):
    params, state = step(params, state)
  return model, params


# Training costs a compilation of the backward pass: once is enough.
@pytest.mark.parametrize('model_type, train', [(RNNModel, True), (BidirectionalModel, False),
                                               (ScanModel, False), (PerStepScanModel, False)])
def test_swap_cell_and_convert_weights(model_type, train, data):
  x, _, carry0 = data
  flax_model, flax_params = _flax_params(model_type, data, train)
  y_ref, carry_ref = flax_model.apply({'params': flax_params}, x, carry0)

  params = interop.from_flax_lstm_cells(flax_params)
  ours = model_type(lstm_flax.LSTMCell)
  # The converted tree is exactly what the swapped model declares.
  shapes = jax.eval_shape(ours.init, jax.random.key(1), x, carry0)['params']
  assert jax.tree.map(jnp.shape, nn.meta.unbox(shapes)) == jax.tree.map(jnp.shape, params)
  y, carry = ours.apply({'params': params}, x, carry0)
  assert jax.tree.structure(carry) == jax.tree.structure(carry_ref)  # plain (c, h) tuples
  np.testing.assert_allclose(y, y_ref, **TOL)
  for ours_leaf, ref_leaf in zip(jax.tree.leaves(carry), jax.tree.leaves(carry_ref)):
    np.testing.assert_allclose(ours_leaf, ref_leaf, **TOL)
  # Converting back gives the Flax weights bit for bit.
  back = interop.to_flax_lstm_cells(params)
  jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, flax_params))


def _cell_steps(cell, params, carry, xs):
  """Applies ``cell`` step by step; ``params[t]`` (a leading axis) at step t."""
  ys = []
  for t in range(xs.shape[1]):
    step_params = jax.tree.map(lambda p, t=t: p[t], params)
    carry, y = cell.apply({'params': step_params}, carry, xs[:, t])
    ys.append(y)
  return carry, jnp.stack(ys, 1)


def test_scan_and_vmap_stack_plain_parameters(data):
  """Flax's stacking patterns over our cell with no extra arguments (no
  metadata_params): per-step weights under nn.scan and an ensemble under
  nn.vmap equal the unlifted cell applied with each slice of the weights."""
  x, _, carry0 = data
  cell = lstm_flax.LSTMCell(HIDDEN)
  scan = nn.scan(lstm_flax.LSTMCell, variable_axes={'params': 0}, split_rngs={'params': True},
                 in_axes=1, out_axes=1, length=TIME)(HIDDEN)
  params = scan.init(jax.random.key(8), carry0, x)['params']
  assert all(type(p) is not nn.LogicallyPartitioned and p.shape[0] == TIME
             for p in jax.tree.leaves(params, is_leaf=lambda p: hasattr(p, 'unbox')))
  assert not np.allclose(params['recurrent_kernel'][0], params['recurrent_kernel'][1])
  carry, y = scan.apply({'params': params}, carry0, x)
  carry_ref, y_ref = _cell_steps(cell, params, carry0, x)
  np.testing.assert_allclose(y, y_ref, **TOL)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), carry, carry_ref)

  members = 2  # an ensemble of cells, each on its own batch: [members, BATCH, ...]
  vmap = nn.vmap(lstm_flax.LSTMCell, variable_axes={'params': 0}, split_rngs={'params': True},
                 in_axes=0, out_axes=0)(HIDDEN)
  xs = jnp.stack([x[:, 0], x[:, 1]])
  carries = jax.tree.map(lambda a: jnp.stack([a, -a]), carry0)
  ens_params = vmap.init(jax.random.key(9), carries, xs)['params']
  ens_carry, ens_y = vmap.apply({'params': ens_params}, carries, xs)
  for m in range(members):
    member = jax.tree.map(lambda p, m=m: p[m], ens_params)
    c_m, y_m = cell.apply({'params': member}, jax.tree.map(lambda a, m=m: a[m], carries), xs[m])
    np.testing.assert_allclose(ens_y[m], y_m, **TOL)
    jax.tree.map(lambda a, b, m=m: np.testing.assert_allclose(a[m], b, **TOL), ens_carry, c_m)
  # Logical axis names are opt-in, for sharding (lstm_flax.axes).
  boxed = jax.eval_shape(lstm_flax.LSTMCell(HIDDEN, logical_axes=True).init, jax.random.key(0),
                         carry0, x[:, 0])['params']
  assert all(isinstance(p, nn.LogicallyPartitioned) for p in boxed.values())


def test_one_step_carry_is_c_then_h(data):
  x, _, (c0, h0) = data
  flax_cell = nn.OptimizedLSTMCell(HIDDEN)
  variables = flax_cell.init(jax.random.key(3), (c0, h0), x[:, 0])
  (c_ref, h_ref), y_ref = flax_cell.apply(variables, (c0, h0), x[:, 0])
  cell = lstm_flax.LSTMCell(HIDDEN)
  ours = {'params': interop.from_flax_lstm_cell(variables['params'])}
  carry, y = cell.apply(ours, (c0, h0), x[:, 0])
  c, h = carry  # the unpacking that mixed the states up with LSTMState(h, c)
  np.testing.assert_allclose(c, c_ref, **TOL)
  np.testing.assert_allclose(h, h_ref, **TOL)
  np.testing.assert_array_equal(y, h)
  assert not np.allclose(c, h, atol=1e-2)
  # The PyTorch-style LSTMState(h, c) is refused, not silently swapped.
  with pytest.raises(TypeError, match=r'carry \(c, h\).*LSTMState\(h, c\)'):
    cell.apply(ours, lstm_flax.LSTMState(h=h0, c=c0), x[:, 0])
  with pytest.raises(ValueError, match=r'\(c \[\*batch, H\], h \[\*batch, P\]\)'):
    cell.apply(ours, (c0[:, :4], h0), x[:, 0])


def test_initialize_carry_matches_flax():
  shape = (2, 3, IN)  # two batch axes
  for kwargs in ({}, {'param_dtype': jnp.bfloat16},
                 {'carry_init': nn.initializers.normal(1.0)}):
    ref = nn.OptimizedLSTMCell(HIDDEN, **kwargs).initialize_carry(jax.random.key(4), shape)
    ours = lstm_flax.LSTMCell(HIDDEN, **kwargs).initialize_carry(jax.random.key(4), shape)
    assert type(ours) is tuple and len(ours) == 2
    for a, b in zip(ours, ref):
      assert a.shape == b.shape == (2, 3, HIDDEN) and a.dtype == b.dtype
      np.testing.assert_array_equal(a, b)


def test_projection_carry_and_batch_axes():
  cell = lstm_flax.LSTMCell(HIDDEN, proj_size=2)
  x = jnp.ones((2, 3, TIME, IN))  # two batch axes under nn.RNN
  rnn = nn.RNN(cell, return_carry=True)
  variables = rnn.init(jax.random.key(5), x)
  (c, h), y = rnn.apply(variables, x)
  assert c.shape == (2, 3, HIDDEN) and h.shape == (2, 3, 2) and y.shape == (2, 3, TIME, 2)
  np.testing.assert_array_equal(y[:, :, -1], h)
  # The same as the whole-sequence layer on the flattened batch.
  layer = lstm_flax.LSTM(HIDDEN, proj_size=2)
  y_layer, state = layer.apply({'params': {'layer_0': variables['params']['cell']}},
                               x.reshape(6, TIME, IN))
  np.testing.assert_allclose(y.reshape(6, TIME, 2), y_layer, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(c.reshape(6, HIDDEN), state.c[0], rtol=1e-5, atol=1e-6)


def test_bfloat16_carry_keeps_its_dtype_through_the_scan():
  """The new carry has the dtypes of the carry passed in, as a scan needs."""
  x = jnp.ones((BATCH, TIME, IN))
  rnn = nn.RNN(lstm_flax.LSTMCell(HIDDEN, dtype='bfloat16'), return_carry=True)
  carry0 = (jnp.zeros((BATCH, HIDDEN), jnp.bfloat16), jnp.zeros((BATCH, HIDDEN), jnp.bfloat16))
  variables = rnn.init(jax.random.key(6), x, initial_carry=carry0)
  (c, h), y = rnn.apply(variables, x, initial_carry=carry0)
  assert c.dtype == h.dtype == jnp.bfloat16 and y.dtype == jnp.bfloat16
  assert np.isfinite(np.asarray(y, np.float32)).all()


def test_auto_names_are_renamed_and_clashes_refused():
  cell = {f'{s}{g}': ({'kernel': np.ones((2, 2))} if s == 'i' else
                      {'kernel': np.ones((2, 2)), 'bias': np.ones(2)})
          for s in 'ih' for g in 'ifgo'}
  tree = {'OptimizedLSTMCell_0': cell, 'ScanOptimizedLSTMCell_0': cell, 'named': cell,
          'Dense_0': {'kernel': np.ones(3)}}
  out = interop.from_flax_lstm_cells(tree)
  assert sorted(out) == ['Dense_0', 'LSTMCell_0', 'ScanLSTMCell_0', 'named']
  assert out['Dense_0']['kernel'] is tree['Dense_0']['kernel']
  assert sorted(interop.from_flax_lstm_cells(tree, rename_auto_names=False)) == sorted(tree)
  assert sorted(interop.to_flax_lstm_cells(out)) == sorted(tree)
  assert 'LSTMCell_0' in interop.to_flax_lstm_cells(out, auto_name_class=None)
  # nn.LSTMCell_0 and nn.OptimizedLSTMCell_0 would both become LSTMCell_0.
  with pytest.raises(ValueError, match="OptimizedLSTMCell_0: renaming it to 'LSTMCell_0'"):
    interop.from_flax_lstm_cells({'LSTMCell_0': cell, 'OptimizedLSTMCell_0': cell})
  with pytest.raises(ValueError, match='found no Flax LSTM cell'):
    interop.from_flax_lstm_cells({'Dense_0': {'kernel': np.ones(3)}})
  with pytest.raises(ValueError, match=r"a/OptimizedLSTMCell_0: .*missing or mismatched"):
    interop.from_flax_lstm_cells({'a': {'OptimizedLSTMCell_0': {**cell, 'hf': {'kernel': 1}}}})
