"""benchmarks/tf_ptb_reference.py (a TensorFlow port of the TF PTB tutorial)
computes the same cost, state and gradients as ``LanguageModel`` given the
same parameters, so comparing training runs of the two compares recipes,
not models."""

import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks'))

import tf_ptb_reference  # noqa: E402

from lstm_flax import kernel  # noqa: E402
from lstm_flax.models import LanguageModel  # noqa: E402

VOCAB, HIDDEN, LAYERS, BATCH, TIME = 23, 6, 2, 3, 5
# Ours: i f g o (PyTorch's); the tutorial's BasicLSTMCell: i j(=g) f o.
TF_GATE_ORDER = (0, 2, 1, 3)


def swap_gates(w: np.ndarray) -> np.ndarray:
  """[..., 4, H] (ours) -> [..., 4H] in the tutorial's gate order ``i g f o``."""
  w = np.asarray(w)[..., TF_GATE_ORDER, :]
  return w.reshape(w.shape[:-2] + (-1,))


def unswap_gates(w: np.ndarray) -> np.ndarray:
  """[..., 4H] in the tutorial's order -> [..., 4, H] (ours)."""
  w = np.asarray(w)
  return w.reshape(w.shape[:-1] + (4, -1))[..., TF_GATE_ORDER, :]


@pytest.fixture(scope='module')
def setup():
  model = LanguageModel(vocab_size=VOCAB, embedding_size=HIDDEN, hidden_size=HIDDEN,
                        num_layers=LAYERS, init_scale=0.3)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32)))['params']
  rng = np.random.default_rng(0)
  # Repeated tokens, so the embedding gradient sums several rows.
  tokens = rng.integers(0, 6, (BATCH, TIME + 1)).astype(np.int32)
  h0 = rng.normal(size=(LAYERS, BATCH, HIDDEN)).astype(np.float32) * 0.5
  c0 = rng.normal(size=(LAYERS, BATCH, HIDDEN)).astype(np.float32) * 0.5

  reference = tf_ptb_reference.ReferenceLM(VOCAB, HIDDEN, LAYERS, 0.1, False)
  reference.embedding.assign(np.asarray(params['embed']['embedding']))
  for layer in range(LAYERS):
    p = params['lstm'][f'layer_{layer}']
    reference.kernels[layer].assign(swap_gates(np.concatenate(
        [p[kernel.INPUT_KERNEL], p[kernel.RECURRENT_KERNEL]], axis=0)))
    reference.biases[layer].assign(swap_gates(p[kernel.BIAS]))
  reference.softmax_w.assign(np.asarray(params['output']['kernel']))
  reference.softmax_b.assign(np.asarray(params['output']['bias']))
  return model, params, tokens, (h0, c0), reference


def ours(model, params, tokens, carry):
  def cost(params):
    loss_sum, new_carry = model.apply(
        {'params': params}, tokens[:, :-1], kernel.LSTMState(*carry),
        targets=tokens[:, 1:])
    return loss_sum / BATCH, new_carry  # Summed over time, batch mean.
  (value, new_carry), grads = jax.value_and_grad(cost, has_aux=True)(params)
  return value, new_carry, grads


def theirs(reference, tokens, carry):
  h0, c0 = carry
  state = tf.constant(np.stack([np.stack([c, h]) for c, h in zip(c0, h0)]))
  with tf.GradientTape() as tape:
    value, new_state = reference.cost(tokens[:, :-1], tokens[:, 1:], state, keep_prob=1.0)
  grads = tape.gradient(value, reference.trainable_variables)
  named = dict(zip([v.name.split(':')[0] for v in reference.trainable_variables], grads))
  return float(value), new_state.numpy(), named


def test_cost_and_final_state_match(setup):
  model, params, tokens, carry, reference = setup
  value, new_carry, _ = ours(model, params, tokens, carry)
  ref_value, ref_state, _ = theirs(reference, tokens, carry)
  assert abs(ref_value - float(value)) <= 1e-5 * abs(ref_value)
  np.testing.assert_allclose(ref_state[:, 0], new_carry.c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ref_state[:, 1], new_carry.h, rtol=1e-5, atol=1e-6)


def test_gradients_match(setup):
  model, params, tokens, carry, reference = setup
  _, _, grads = ours(model, params, tokens, carry)
  _, _, ref = theirs(reference, tokens, carry)
  assert isinstance(ref['embedding'], tf.IndexedSlices)  # As in the tutorial.
  close = dict(rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(tf.convert_to_tensor(ref['embedding']),
                             grads['embed']['embedding'], **close)
  np.testing.assert_allclose(ref['softmax_w'], grads['output']['kernel'], **close)
  np.testing.assert_allclose(ref['softmax_b'], grads['output']['bias'], **close)
  for layer in range(LAYERS):
    g = grads['lstm'][f'layer_{layer}']
    ref_kernel = unswap_gates(ref[f'kernel_{layer}'])
    np.testing.assert_allclose(ref_kernel[:HIDDEN], g[kernel.INPUT_KERNEL], **close)
    np.testing.assert_allclose(ref_kernel[HIDDEN:], g[kernel.RECURRENT_KERNEL], **close)
    np.testing.assert_allclose(unswap_gates(ref[f'bias_{layer}']), g[kernel.BIAS], **close)


def test_reader_matches_the_tutorial(tmp_path):
  path = tmp_path / 'ptb.train.txt'
  path.write_text(' a b a \n c a \n')
  words = tf_ptb_reference.read_words(str(path))
  assert words == ['a', 'b', 'a', '<eos>', 'c', 'a', '<eos>']
  vocab = tf_ptb_reference.build_vocab(words)
  assert vocab == {'a': 0, '<eos>': 1, 'b': 2, 'c': 3}
  ids = np.array([vocab[w] for w in words], np.int32)
  np.testing.assert_array_equal(tf_ptb_reference.streams(ids, 2), [[0, 2, 0], [1, 3, 0]])
