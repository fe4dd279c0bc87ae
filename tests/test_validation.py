"""Modules check their own fields on construction (they are built from config dicts)."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from lstm_flax import LSTM, LSTMCell, LSTMSpec
from lstm_flax import nnx as lstm_nnx
from lstm_flax.models import LanguageModel, SequenceClassifier
from lstm_flax.seq2seq import Seq2Seq

LM = dict(vocab_size=11, embedding_size=6, hidden_size=8)
S2S = dict(source_vocab_size=11, target_vocab_size=11, embedding_size=8, hidden_size=8)
CLS = dict(vocab_size=11, num_classes=3, embedding_size=6, hidden_size=8)

CASES = [
    (LanguageModel, dict(LM, vocab_size=0), 'LanguageModel.vocab_size must be a positive int; got 0'),
    (LanguageModel, dict(LM, num_layers=1.5), 'LanguageModel.num_layers must be a positive int; got 1.5'),
    (LanguageModel, dict(LM, dropout_rate=1.0), 'LanguageModel.dropout_rate must be a dropout rate in [0, 1); got 1.0'),
    (LanguageModel, dict(LM, weight_dropout_rate=-0.1), 'LanguageModel.weight_dropout_rate must be'),
    (LanguageModel, dict(LM, proj_size=0), 'LanguageModel.proj_size must be None (default) or a positive int; got 0'),
    (LanguageModel, dict(LM, proj_size=8), 'LanguageModel.proj_size must be None or in (0, hidden_size=8)'),
    (LanguageModel, dict(LM, last_layer_size=-1), 'LanguageModel.last_layer_size must be None'),
    (LanguageModel, dict(LM, tie_weights=True), 'LanguageModel.tie_weights needs the LSTM output size'),
    (LanguageModel, dict(LM, init_scale=0.0), 'LanguageModel.init_scale must be None (default) or a positive number'),
    (LanguageModel, dict(LM, dtype='float8'), "LanguageModel.dtype must be one of ('float32', 'bfloat16', 'float16', 'float64')"),
    (LanguageModel, dict(LM, dtype=jnp.int32), 'LanguageModel.dtype must be one of'),
    (LanguageModel, dict(LM, unroll=0), 'LanguageModel.unroll must be None (default) or a positive int; got 0'),
    (LanguageModel, dict(LM, tie_weights='yes'), "LanguageModel.tie_weights must be True or False; got 'yes'"),
    (Seq2Seq, dict(S2S, attention='cosine'), "Seq2Seq.attention must be one of ('dot', 'general', 'additive'); got 'cosine'"),
    (Seq2Seq, dict(S2S, encoder_hidden_size=0), 'Seq2Seq.encoder_hidden_size must be None'),
    (Seq2Seq, dict(S2S, decoder_layers=0), 'Seq2Seq.decoder_layers must be a positive int'),
    (Seq2Seq, dict(S2S, dropout_rate=1.5), 'Seq2Seq.dropout_rate must be a dropout rate'),
    (Seq2Seq, dict(S2S, share_embeddings=True, target_vocab_size=12), 'Seq2Seq.share_embeddings needs one joint vocabulary'),
    (Seq2Seq, dict(S2S, tie_output=True, hidden_size=10), 'Seq2Seq.tie_output needs embedding_size'),
    (Seq2Seq, dict(S2S, attention='dot'), "Seq2Seq.attention='dot' needs the encoder output size"),
    (SequenceClassifier, dict(CLS, pooling='sum'), "SequenceClassifier.pooling must be one of ('max', 'mean', 'last'); got 'sum'"),
    (SequenceClassifier, dict(CLS, num_classes=0), 'SequenceClassifier.num_classes must be a positive int'),
    (SequenceClassifier, dict(CLS, output_dropout_rate=1), 'SequenceClassifier.output_dropout_rate must be a dropout rate'),
    (SequenceClassifier, dict(CLS, proj_size=9), 'SequenceClassifier.proj_size must be None or in (0, hidden_size=8)'),
    (LSTM, dict(hidden_size=8, input_dropout_rate=1.0), 'LSTM.input_dropout_rate must be a dropout rate'),
    (LSTM, dict(hidden_size=8, num_layers=0), 'LSTM.num_layers must be a positive int; got 0'),
    (LSTM, dict(hidden_size=8, dtype='int8'), 'LSTM.dtype must be one of'),
    (LSTMCell, dict(features=8, proj_size=8), 'LSTMCell.proj_size must be None or in (0, hidden_size=8)'),
    (LSTMSpec, dict(hidden_size=8, proj_size=0), 'LSTMSpec.proj_size must be None (default)'),
]


@pytest.mark.parametrize('cls, kwargs, message', CASES,
                         ids=[f'{c.__name__}-{m.split()[0]}' for c, _, m in CASES])
def test_invalid_field_names_class_field_value(cls, kwargs, message):
  with pytest.raises(ValueError) as err:
    cls(**kwargs)
  assert message in str(err.value)


def test_nnx_lstm_checks_its_arguments():
  with pytest.raises(ValueError, match=r'nnx.LSTM.proj_size must be None or in \(0, hidden_size=8\)'):
    lstm_nnx.LSTM(4, 8, proj_size=8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='nnx.LSTM.dropout_rate must be a dropout rate'):
    lstm_nnx.LSTM(4, 8, dropout_rate=2.0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='nnx.LSTM.in_features must be a positive int'):
    lstm_nnx.LSTM(0, 8, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('cls, kwargs', [(LanguageModel, LM), (Seq2Seq, S2S),
                                         (SequenceClassifier, CLS), (LSTM, dict(hidden_size=8))])
def test_hyperparameter_fields_are_json(cls, kwargs):
  module = cls(**kwargs)
  fields = {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
            if f.name not in ('parent', 'name') and not f.name.endswith('_init')}
  assert json.loads(json.dumps(fields)) == fields


def test_built_from_a_json_config_with_dtype_names():
  config = json.loads(json.dumps({'embedding_size': 6, 'hidden_size': 6, 'num_layers': 1,
                                  'proj_size': None, 'init_scale': 0.1, 'dtype': 'bfloat16',
                                  'unroll': None, 'tie_weights': True}))
  model = LanguageModel(vocab_size=11, **config)
  tokens = jnp.zeros((2, 3), jnp.int32)
  variables = model.init(jax.random.key(0), tokens)
  logits, carry = model.apply(variables, tokens)
  assert logits.dtype == jnp.float32 and logits.shape == (2, 3, 11)
  assert jax.tree.map(jnp.shape, carry) == jax.tree.map(jnp.shape, model.initialize_carry(2))
  # A jnp dtype works as well as its name.
  same = LanguageModel(vocab_size=11, **{**config, 'dtype': jnp.bfloat16})
  assert jnp.allclose(same.apply(variables, tokens)[0], logits)
  assert isinstance(nn.meta.unbox(variables)['params']['embed']['embedding'], jax.Array)
