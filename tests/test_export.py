"""lstm_flax.export, lstm_flax.tokenizer and lstm_flax.torch_lm without the
trainer: save / load round trips of each kind, refusals, saved tokenizers'
ids, and PyTorch RNNModel weights (a fixture
made by tests/make_torch_lm_fixture.py; a live check when torch is installed)."""

import functools
import json
import pathlib
from typing import ClassVar

from flax.core import meta
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_flax import export, inference, models, seq2seq, torch_lm
from lstm_flax import tokenizer as tokenizer_lib
from lstm_flax.export import arguments as export_arguments

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'torch_lm.npz'
TOKENS = jnp.array([[1, 2, 3, 4], [5, 6, 7, 0]], jnp.int32)  # [batch, time]


def _lm(**fields):
  model = models.LanguageModel(vocab_size=11, embedding_size=6, hidden_size=6, num_layers=2,
                               **fields)
  return model, meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), TOKENS[:, :1]))


def _fixture(name):
  with np.load(FIXTURE) as data:
    prefix = f'{name}/'
    state_dict = {k[len(prefix) + 3:]: data[k] for k in data.files
                  if k.startswith(prefix + 'sd.')}
    return state_dict, data[prefix + 'tokens'], data[prefix + 'log_probs']


def _log_probs(model, variables, tokens):  # tokens [batch, time] -> [batch, time, V]
  return np.asarray(jax.nn.log_softmax(model.apply(variables, jnp.asarray(tokens))[0]))


# ------------------------------------------------------- save and load ----


def test_each_kind_round_trips_with_identical_outputs(tmp_path):
  lm, lm_vars = _lm(tie_weights=True, dtype='bfloat16')
  s2s = seq2seq.Seq2Seq(source_vocab_size=9, target_vocab_size=9, embedding_size=4,
                        hidden_size=4, encoder_layers=1, decoder_layers=1,
                        share_embeddings=True)
  mask = jnp.ones(TOKENS.shape, jnp.float32)
  s2s_vars = meta.unbox(jax.jit(s2s.init)(jax.random.PRNGKey(1), TOKENS, TOKENS, mask))
  clf = models.SequenceClassifier(vocab_size=9, num_classes=3, embedding_size=4,
                                  hidden_size=4, pooling='mean')
  lengths = jnp.array([4, 2])
  clf_vars = meta.unbox(jax.jit(functools.partial(clf.init, deterministic=True))(
      jax.random.PRNGKey(2), TOKENS, lengths))
  # bfloat16 parameters keep their dtype.
  lm_vars = jax.tree.map(lambda x: x.astype(jnp.bfloat16), lm_vars)
  cases = [
      ('language_model', lm, lm_vars, lambda m, v: m.apply(v, TOKENS)[0]),
      ('translation', s2s, s2s_vars, lambda m, v: m.apply(v, TOKENS, TOKENS, mask)),
      ('classifier', clf, clf_vars,
       lambda m, v: m.apply(v, TOKENS, lengths, deterministic=True)),
  ]
  for kind, module, variables, run in cases:
    loaded = export.load(export.save(tmp_path / kind, module, variables))
    assert loaded.kind == kind and loaded.module == module
    hash(loaded.module)  # A static jit argument.
    assert jax.tree.structure(loaded.variables) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(loaded.variables), jax.tree.leaves(variables)):
      assert a.dtype == b.dtype
      np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    run = jax.jit(run, static_argnums=0)  # Eager Flax is slow to run.
    np.testing.assert_array_equal(run(loaded.module, loaded.variables), run(module, variables))
  info = json.loads((tmp_path / 'language_model' / export.MODEL_FILE).read_text())
  assert info['params']['embed/embedding'] == {'dtype': 'bfloat16', 'shape': [11, 6]}
  assert info['arguments']['dtype'] == 'bfloat16'


def test_save_never_overwrites_and_leaves_no_temporary_files(tmp_path):
  lm, variables = _lm()
  target = tmp_path / 'out'
  target.mkdir()
  (target / 'keep.txt').write_text('mine')
  with pytest.raises(FileExistsError, match=f'{target} already exists'):
    export.save(target, lm, variables)
  assert [p.name for p in target.iterdir()] == ['keep.txt']
  empty = tmp_path / 'empty'
  empty.mkdir()
  export.save(empty, lm, variables)  # An empty directory is taken.
  with pytest.raises(ValueError, match=r"missing \['output/bias'\]"):
    bad = jax.tree.map(lambda x: x, variables)
    del bad['params']['output']['bias']
    export.save(tmp_path / 'bad', lm, bad)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['empty', 'out']


def test_load_names_the_file_and_key_of_a_bad_export(tmp_path):
  lm, variables = _lm()
  path = export.save(tmp_path / 'lm', lm, variables)
  info = json.loads((path / export.MODEL_FILE).read_text())
  (path / export.MODEL_FILE).write_text(json.dumps({**info, 'format_version': 99}))
  with pytest.raises(ValueError, match='"format_version" is 99'):
    export.load(path)
  (path / export.MODEL_FILE).write_text(json.dumps(
      {**info, 'arguments': {**info['arguments'], 'hidden_size': 5}}))
  with pytest.raises(ValueError, match=r'params.safetensors do not fit the module: wrong shapes'):
    export.load(path)
  (path / export.MODEL_FILE).unlink()
  with pytest.raises(FileNotFoundError, match='model.json is missing'):
    export.load(path)


def test_a_module_of_another_kind_is_refused(tmp_path):
  with pytest.raises(ValueError, match='Cannot export a Embed'):
    export.save(tmp_path / 'x', nn.Embed(3, 2), {'params': {}})


class FeatureScorer(nn.Module):
  """A model class lstm_flax.export knows nothing about: float features in."""

  num_classes: int
  export_kind: ClassVar[str] = 'feature_scorer'

  @nn.nowrap
  def dummy_inputs(self):
    return (jnp.zeros((1, 1, 3), jnp.float32),), {}

  @nn.compact
  def __call__(self, features):  # [batch, time, 3] -> [batch, num_classes]
    return nn.Dense(self.num_classes)(features.mean(1))


def test_a_new_model_class_exports_and_reloads_by_its_import_path(tmp_path):
  model = FeatureScorer(num_classes=4)
  features = jnp.arange(12, dtype=jnp.float32).reshape(2, 2, 3)
  variables = model.init(jax.random.PRNGKey(3), features)
  loaded = export.load(export.save(tmp_path / 'new', model, variables))
  assert loaded.kind == 'feature_scorer' and loaded.module == model
  assert (loaded.info['module'], loaded.info['class']) == (__name__, 'FeatureScorer')
  np.testing.assert_array_equal(loaded.module.apply(loaded.variables, features),
                                model.apply(variables, features))
  assert 'export.load' in (tmp_path / 'new' / export.CARD_FILE).read_text()
  info = json.loads((tmp_path / 'new' / export.MODEL_FILE).read_text())
  for key, value, message in (('kind', 'classifier', "is a 'feature_scorer'"),
                              ('class', 'Missing', 'cannot import'),
                              ('module', None, '"module" = None')):
    (tmp_path / 'new' / export.MODEL_FILE).write_text(json.dumps({**info, key: value}))
    with pytest.raises(ValueError, match=f'model.json: cannot build the module.*{message}'):
      export.load(tmp_path / 'new')


# ------------------------------------------------------------ tokenizers ----


def test_saved_tokenizers_load_with_the_ids_they_were_built_with(tmp_path):
  from input_pipeline import tokenizers, vocabulary  # pylint: disable=g-import-not-at-top
  lines = ['the cat sat on the mat', 'a dog ran , the end', 'héllo wörld']
  text = 'the cat ran on a hat  héllo ☃'
  built = {'word': vocabulary.build_word(lines), 'char': vocabulary.build_char(lines),
           'sentencepiece': vocabulary.train_sentencepiece(lines * 20, vocab_size=40)}
  loaded = {}
  for kind, tokenizer in built.items():
    tokenizers.save(tokenizer, tmp_path / kind)
    loaded[kind] = tokenizer_lib.load(tmp_path / kind)
    assert loaded[kind].kind == kind
    assert loaded[kind].fingerprint() == tokenizer.fingerprint()
  word, char, spm = loaded['word'], loaded['char'], loaded['sentencepiece']
  # Counted order (ties by word) after <eos> = 0 = pad = bos, <unk> = 1.
  assert word.vocab_size == 14 and word.encode(text) == [2, 5, 11, 10, 4, 1, 8, 1]
  assert (word.pad_id, word.unk_id, word.bos_id, word.eos_id) == (0, 1, 0, 0)
  assert word.decode([2, 5, 0, 4, 1]) == 'the cat\na <unk>'
  # <unk> = 0 = pad, then the sorted characters; '\n' (= 1) ends a line.
  assert char.vocab_size == 20 and char.encode('cat ☃') == [5, 4, 16, 2, 0]
  assert (char.pad_id, char.unk_id, char.bos_id, char.eos_id) == (0, 0, 1, 1)
  assert char.decode([5, 4, 16, 1, 0]) == 'cat\n\ufffd'
  assert (spm.pad_id, spm.unk_id, spm.bos_id, spm.eos_id) == (0, 1, 2, 3)
  ids = spm.encode('the cat sat')
  assert spm.unk_id not in ids and spm.decode([2, *ids, 3, 0]) == 'the cat sat\n'
  # The classifier's encoding: lower-cased, eos added, cut to 5, padded to a bucket.
  encoding = inference.TextEncoding(max_length=5, bucket_boundaries=(2, 4), lowercase=True,
                                    add_eos=True)
  tokens, lengths = encoding.encode(word, ['THE cat', 'a dog ran , the end', 'hat'])
  np.testing.assert_array_equal(tokens, [[2, 5, 0, 0, 0], [4, 6, 11, 3, 2], [1, 0, 0, 0, 0]])
  np.testing.assert_array_equal(lengths, [3, 5, 2])
  tokens, lengths = encoding.encode(char, ['A'])
  np.testing.assert_array_equal(tokens, [[4, 1]])


def test_tokenizer_reader_refuses_an_edited_vocabulary(tmp_path):
  (tmp_path / 'tokenizer.json').write_text(json.dumps(
      {'kind': 'word', 'vocab': ['<eos>', '<unk>', 'a'], 'fingerprint': 'f00'}))
  with pytest.raises(ValueError, match='"fingerprint" does not match'):
    tokenizer_lib.load(tmp_path)
  with pytest.raises(FileNotFoundError, match='tokenizer.json is missing'):
    tokenizer_lib.load(tmp_path / 'nothing')


# ----------------------------------------------------------------- torch ----


@pytest.mark.parametrize('name', ['untied', 'tied'])
def test_torch_rnn_model_imports_with_its_log_probs_and_exports_back_exactly(name):
  state_dict, tokens, expected = _fixture(name)  # tokens [time, batch]
  model, variables = torch_lm.from_torch_state_dict(state_dict)
  assert model.tie_weights == (name == 'tied')
  log_probs = _log_probs(model, variables, tokens.T)  # [batch, time, V]
  np.testing.assert_allclose(log_probs, expected.transpose(1, 0, 2), atol=1e-5, rtol=1e-5)
  back = torch_lm.to_torch_state_dict(model, variables)
  assert sorted(back) == sorted(state_dict)
  for key, value in back.items():
    assert value.dtype == np.float32, key
    if key.startswith('rnn.bias_ih'):  # The whole bias; bias_hh is zero.
      np.testing.assert_array_equal(value, state_dict[key] + state_dict[key.replace('ih', 'hh')])
    elif key.startswith('rnn.bias_hh'):
      np.testing.assert_array_equal(value, 0.0)
    else:
      np.testing.assert_array_equal(value, state_dict[key])
  again, again_vars = torch_lm.from_torch_state_dict(back)
  assert again == model
  for a, b in zip(jax.tree.leaves(again_vars), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)


def test_torch_export_refuses_what_rnn_model_cannot_express(tmp_path):
  model, variables = _lm(proj_size=3)
  with pytest.raises(ValueError, match='proj_size=3'):
    export.save(tmp_path / 'p', model, variables, torch=True)
  assert not (tmp_path / 'p').exists()
  with pytest.raises(ValueError, match='last_layer_size=4 with num_layers=2'):
    torch_lm.check_exportable(models.LanguageModel(11, 6, 6, last_layer_size=4))
  torch_lm.check_exportable(models.LanguageModel(11, 6, 6, num_layers=1, last_layer_size=4))


def test_torch_rnn_model_loads_the_exported_safetensors(tmp_path):
  """The exported file in a live torch RNNModel (skipped without torch)."""
  torch = pytest.importorskip('torch')
  from safetensors.torch import load_file  # pylint: disable=g-import-not-at-top
  import make_torch_lm_fixture  # pylint: disable=g-import-not-at-top
  for tie in (False, True):
    model, variables = _lm(tie_weights=tie)
    path = export.save(tmp_path / f'tie{tie}', model, variables, torch=True)
    torch_model = make_torch_lm_fixture.RNNModel(11, 6, 6, 2, tie_weights=tie).eval()
    torch_model.load_state_dict(load_file(str(path / export.TORCH_FILE)))
    with torch.no_grad():
      theirs, _ = torch_model(torch.from_numpy(np.asarray(TOKENS).T.copy()).long())
    np.testing.assert_allclose(theirs.numpy().transpose(1, 0, 2),
                               _log_probs(model, variables, TOKENS), atol=1e-5, rtol=1e-5)
    assert 'load_file' in (path / export.CARD_FILE).read_text()


def test_nested_dataclass_fields_round_trip_through_json():
  from lstm_flax import spec as spec_lib  # pylint: disable=g-import-not-at-top
  spec = spec_lib.LSTMSpec(4, num_layers=2, proj_size=3, compute_dtype='bfloat16',
                           dropout=spec_lib.DropoutConfig(hidden_rate=0.5, variational=True))
  # pylint: disable=protected-access
  as_json = json.loads(json.dumps(export_arguments._to_json(spec, 'spec')))
  assert as_json['fields']['dropout']['__dataclass__'] == 'DropoutConfig'
  assert export_arguments._from_json(as_json) == spec
  with pytest.raises(ValueError, match='Model.init = <function'):
    export_arguments._to_json(lambda: 0, 'Model.init')
