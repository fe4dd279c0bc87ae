"""Logit filtering for sampling: temperature, top-k, nucleus (top-p)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_flax.sampling import filter_logits

LOGITS = jnp.log(jnp.array([[0.5, 0.25, 0.15, 0.1], [0.1, 0.2, 0.3, 0.4]]))


def _kept(logits):
  return np.asarray(logits > jnp.finfo(jnp.float32).min / 2)


def test_top_k_keeps_the_k_largest():
  np.testing.assert_array_equal(_kept(filter_logits(LOGITS, top_k=2)),
                                [[1, 1, 0, 0], [0, 0, 1, 1]])


def test_top_p_keeps_the_smallest_nucleus_reaching_p():
  # Row 0: 0.5 < 0.7 -> add 0.25 (0.75 >= 0.7). Row 1: 0.4, 0.3 reach 0.7 exactly.
  np.testing.assert_array_equal(_kept(filter_logits(LOGITS, top_p=0.7)),
                                [[1, 1, 0, 0], [0, 0, 1, 1]])
  np.testing.assert_array_equal(_kept(filter_logits(LOGITS, top_p=0.4)), [[1, 0, 0, 0], [0, 0, 0, 1]])
  assert _kept(filter_logits(LOGITS, top_p=1.0)).all()


def test_temperature_scales_and_sampling_respects_the_filter():
  np.testing.assert_allclose(filter_logits(LOGITS, temperature=2.0), LOGITS / 2.0)
  keys = jax.random.split(jax.random.key(0), 200)
  draws = jax.vmap(lambda k: jax.random.categorical(k, filter_logits(LOGITS, top_k=2)))(keys)
  assert set(np.unique(draws[:, 0])) == {0, 1} and set(np.unique(draws[:, 1])) == {2, 3}


@pytest.mark.parametrize('kw, message', [({'temperature': 0.0}, 'temperature'),
                                         ({'top_k': 0}, 'top_k'), ({'top_p': 1.5}, 'top_p')])
def test_invalid_settings(kw, message):
  with pytest.raises(ValueError, match=message):
    filter_logits(LOGITS, **kw)
