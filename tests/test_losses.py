"""The fused output layer + softmax cross-entropy against autodiff of the
unfused form (float64), and LanguageModel's ``targets=`` path."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lstm_flax import LSTM
from lstm_flax.losses import dense_softmax_cross_entropy
from lstm_flax.models import LanguageModel

N, F, V = 12, 5, 17


def _inputs(dtype=jnp.float32):
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  features = jax.random.normal(keys[0], (N, F), dtype)
  kernel = jax.random.normal(keys[1], (F, V), dtype)
  bias = jax.random.normal(keys[2], (V,), dtype)
  targets = jax.random.randint(keys[3], (N,), 0, V)
  weights = jnp.asarray(np.r_[np.ones(N - 3), 0.0, 0.5, 2.0], jnp.float32)
  return features, kernel, bias, targets, weights


def _reference(features, kernel, bias, targets, weights):
  logits = features @ kernel + bias
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(losses * weights)


def test_value_and_gradients_match_float64_autodiff():
  with jax.enable_x64():
    f, k, b, t, w = _inputs(jnp.float64)
    w = w.astype(jnp.float64)
    want, want_grads = jax.value_and_grad(_reference, argnums=(0, 1, 2, 4))(f, k, b, t, w)
  f32 = [np.asarray(a, np.float32) for a in (f, k, b)]
  got, got_grads = jax.value_and_grad(dense_softmax_cross_entropy, argnums=(0, 1, 2, 4))(
      *f32, jnp.asarray(t), jnp.asarray(w, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, wg in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, wg, rtol=1e-4, atol=1e-5)
  # Padding (weight 0) contributes nothing.
  zero = got_grads[0][N - 3]
  np.testing.assert_array_equal(zero, np.zeros_like(zero))


def test_second_use_of_the_cotangent_scales_gradients():
  f, k, b, t, w = _inputs()
  g1 = jax.grad(lambda f: 3.0 * dense_softmax_cross_entropy(f, k, b, t, w))(f)
  g2 = jax.grad(lambda f: 3.0 * _reference(f, k, b, t, w))(f)
  np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-6)


def test_float64_runs_in_float64_and_default_weights_are_ones():
  with jax.enable_x64():
    f, k, b, t, _ = _inputs(jnp.float64)
    got, grads = jax.value_and_grad(dense_softmax_cross_entropy, argnums=(0, 1, 2))(f, k, b, t)
    want, want_grads = jax.value_and_grad(_reference, argnums=(0, 1, 2))(
        f, k, b, t, jnp.ones(N, jnp.float64))
    assert got.dtype == jnp.float64 and all(g.dtype == jnp.float64 for g in grads)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for g, wg in zip(grads, want_grads):
      np.testing.assert_allclose(g, wg, rtol=1e-10, atol=1e-12)


def test_bfloat16_features_keep_their_dtypes_and_stay_close():
  f, k, b, t, w = _inputs()
  grads = jax.jit(jax.grad(dense_softmax_cross_entropy, argnums=(0, 1, 2)))(
      f.astype(jnp.bfloat16), k, b, t, w)
  assert [g.dtype for g in grads] == [jnp.bfloat16, jnp.float32, jnp.float32]
  want = jax.grad(_reference, argnums=(0, 1, 2))(f, k, b, t, w)
  for g, wg in zip(grads, want):
    np.testing.assert_allclose(np.asarray(g, np.float32), wg, rtol=0.05, atol=0.05)


def test_shape_errors_name_the_argument():
  f, k, b, t, w = _inputs()
  with pytest.raises(ValueError, match='weights'):
    dense_softmax_cross_entropy(f, k, b, t, w[:, None])
  with pytest.raises(ValueError, match='integer'):
    dense_softmax_cross_entropy(f, k, b, t.astype(jnp.float32), w)
  with pytest.raises(ValueError, match='kernel'):
    dense_softmax_cross_entropy(f, k.T, b, t, w)
  with pytest.raises(ValueError, match='bias'):
    dense_softmax_cross_entropy(f, k, b[:-1], t, w)
  with pytest.raises(ValueError, match='targets'):
    dense_softmax_cross_entropy(f, k, b, t[:-1], w)


@pytest.mark.parametrize('tie_weights', [False, True])
def test_language_model_targets_path_equals_logits_path(tie_weights):
  model = LanguageModel(vocab_size=V, embedding_size=6, hidden_size=6,
                        num_layers=2, tie_weights=tie_weights)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 4), 0, V)
  targets = jax.random.randint(jax.random.PRNGKey(2), (3, 4), 0, V)
  mask = jnp.asarray([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], jnp.float32)
  params = model.init(jax.random.PRNGKey(3), tokens)['params']

  def via_logits(params):
    logits, carry = model.apply({'params': params}, tokens, mask=mask)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(losses * mask), carry

  def fused(params):
    return model.apply({'params': params}, tokens, mask=mask, targets=targets)

  (want, want_carry), want_grads = jax.value_and_grad(via_logits, has_aux=True)(params)
  (got, got_carry), got_grads = jax.value_and_grad(fused, has_aux=True)(params)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               (got_grads, got_carry), (want_grads, want_carry))
  # lengths= gives the same weights as the equivalent mask.
  by_lengths, _ = model.apply({'params': params}, tokens, lengths=jnp.asarray([4, 2, 1]),
                              targets=targets)
  np.testing.assert_allclose(by_lengths, want, rtol=1e-5)


def test_output_layer_params_are_nn_dense_params():
  """Checkpoints from the nn.Dense output layer load unchanged."""
  model = LanguageModel(vocab_size=V, embedding_size=6, hidden_size=6, num_layers=1)
  tokens = jnp.zeros((2, 3), jnp.int32)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(4), tokens))['params']
  dense = nn.Dense(V).init(jax.random.PRNGKey(0), jnp.zeros((1, 6)))['params']
  assert jax.tree.map(jnp.shape, params['output']) == jax.tree.map(jnp.shape, dense)
  x = params['embed']['embedding'][tokens]
  h, _ = LSTM(6).apply({'params': params['lstm']}, x)
  np.testing.assert_allclose(
      model.apply({'params': params}, tokens)[0],
      nn.Dense(V).apply({'params': params['output']}, h), rtol=1e-6, atol=1e-6)
