"""Export through the trainer: ``export.py`` on the tiny language model,
translation and classification runs (the shared ones of the other trainer
tests), reloaded with ``lstm_flax.export.load`` in a fresh process (no trainer,
input_pipeline, TensorFlow or Orbax imported) that gives the trainer's own
outputs; the model card; the PyTorch state dict; and the refusals."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer import errors, inference, metrics, tasks

import tiny_runs as testing
from lstm_flax import export as export_lib
from trainer import export as trainer_export

PROMPT = 'The for statement'
LM_TEXT = 'the result of the function is'
SOURCES = ['ein hund läuft', '', 'zwei katzen schlafen und der mann liest']
SENTENCES = ['the film was great', '', 'a boring story', 'superb and lovely']

# Runs in a fresh process from a temporary directory: the export alone.
FRESH = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from lstm_flax import export

root, prompt, lm_text = sys.argv[1], sys.argv[2], sys.argv[3]
sources, sentences = json.loads(sys.argv[4]), json.loads(sys.argv[5])
out = {}
lm = export.load(root + '/lm')
out['generated'] = lm.generate(prompt, num_tokens=12, seed=3, num_samples=2)
# The jax.export generation function, with jax alone.
from jax import export as jax_export
with open(root + '/lm/generate.jax_exported', 'rb') as f:
  served = jax_export.deserialize(bytearray(f.read()))
ids = np.asarray([[lm.tokenizer.eos_id] + lm.tokenizer.encode(prompt)] * 2, np.int32)
out['served'] = [lm.tokenizer.decode(row) for row in np.asarray(
    served.call(ids, jax.random.key_data(jax.random.PRNGKey(3)))).tolist()]
tokens = jnp.asarray([[lm.tokenizer.eos_id] + lm.tokenizer.encode(lm_text)], jnp.int32)
out['log_probs'] = np.asarray(jax.nn.log_softmax(
    lm.module.apply(lm.variables, tokens)[0])).tolist()
translator = export.load(root + '/translation')
out['translations'] = translator.translate(sources)[0]
classifier = export.load(root + '/classifier')
out['predictions'] = [p and [p.label, p.probabilities]
                      for p in classifier.classify(sentences)]
out['imported'] = sorted(
    m for m in ('trainer', 'input_pipeline', 'tensorflow', 'orbax')
    if any(k == m or k.startswith(m + '.') for k in sys.modules))
print(json.dumps(out))
'''


def _export_command(*flags):
  return [sys.executable, str(testing.REPO_ROOT / 'export.py'), *flags]


@pytest.fixture(scope='module')
def runs(tmp_path_factory, request):
  """The workdirs of the shared tiny runs (read only)."""
  _, translation_workdir, _ = testing.shared_translation_run(tmp_path_factory, request)
  return {
      'lm': testing.shared_tiny_run(tmp_path_factory, request)[0],
      'translation': translation_workdir,
      'classifier': testing.shared_classification_run(tmp_path_factory, request)[0],
  }


@pytest.fixture(scope='module')
def exported(runs, tmp_path_factory):
  """The three exports: the language model through export.py (with
  --torch), the others through trainer.export."""
  root = tmp_path_factory.mktemp('exports')
  proc = testing.run(_export_command(f'--workdir={runs["lm"]}', '--checkpoint=best',
                                     f'--out={root / "lm"}', '--torch',
                                     '--serving_tokens=12', '--serving_batch_size=2'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'wrote {root / "lm"}' in proc.stdout
  trainer_export.export(runs['translation'], root / 'translation', 'best')
  trainer_export.export(runs['classifier'], root / 'classifier', 'latest')
  return root


@pytest.fixture(scope='module')
def fresh(exported, tmp_path_factory):
  """The outputs of the exports, loaded in a fresh process (cwd: elsewhere)."""
  proc = subprocess.run(
      [sys.executable, '-c', FRESH, str(exported), PROMPT, LM_TEXT, json.dumps(SOURCES),
       json.dumps(SENTENCES)],
      env=testing.python_env(), cwd=tmp_path_factory.mktemp('elsewhere'),
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_fresh_process_needs_only_the_export(fresh):
  assert fresh['imported'] == []


def test_language_model_gives_the_trainers_log_probs_and_text(runs, fresh):
  generator = tasks.load(runs['lm'], 'best', 'lm')
  assert fresh['generated'] == generator.generate(PROMPT, num_tokens=12, seed=3,
                                                  num_samples=2)
  assert fresh['served'] == fresh['generated']  # generate.jax_exported
  tokenizer = generator.tokenizer
  tokens = jnp.asarray([[tokenizer.eos_id] + tokenizer.encode(LM_TEXT)], jnp.int32)
  logits, _ = generator.model.apply({'params': generator.params}, tokens)
  np.testing.assert_array_equal(np.asarray(fresh['log_probs'], np.float32),
                                np.asarray(jax.nn.log_softmax(logits)))


def test_translation_gives_the_trainers_translations(runs, fresh):
  expected, _ = tasks.load(runs['translation'], 'best', 'translation').translate(SOURCES)
  assert fresh['translations'] == expected
  assert fresh['translations'][1] == '' and fresh['translations'][0]


def test_classifier_gives_the_trainers_predictions(runs, fresh):
  expected = tasks.load(runs['classifier'], 'latest', 'classification').classify(SENTENCES)
  assert fresh['predictions'] == [p and [p.label, p.probabilities] for p in expected]
  assert fresh['predictions'][1] is None


@pytest.mark.parametrize('kind,checkpoint', [('lm', 'best'), ('translation', 'best'),
                                              ('classifier', 'latest')])
def test_visualize_shows_the_same_gates_from_a_workdir_and_its_export(runs, exported, kind,
                                                                       checkpoint):
  import visualize  # pylint: disable=g-import-not-at-top
  from trainer import gate_report  # pylint: disable=g-import-not-at-top
  reports = []
  for where in ({'workdir': runs[kind], 'checkpoint': checkpoint},
                {'export_dir': str(exported / kind)}):
    found, module, variables, tokenizer, settings, _ = visualize.load(**where)
    sections = visualize.sections_for(found, module, variables, tokenizer, SENTENCES[0],
                                      settings=settings, max_output_tokens=5)
    assert sections and all(s.gates['c'].shape[2] == len(s.tokens) for s in sections)
    reports.append(gate_report.render(sections))
  assert reports[0] == reports[1]  # Same kind, tokens, predictions and gate values.


def test_export_directory_and_model_card(runs, exported):
  lm = exported / 'lm'
  assert sorted(p.name for p in lm.iterdir()) == [
      'MODEL_CARD.md', 'config.json', 'generate.jax_exported', 'model.json',
      'params.safetensors', 'tokenizer', 'torch_state_dict.safetensors']
  info = json.loads((lm / 'model.json').read_text())
  restored = inference.restore(runs['lm'], 'best', lookup=tasks.task_class, task_name='lm')
  assert info['source']['step'] == restored.step and info['kind'] == 'language_model'
  assert json.loads((lm / 'config.json').read_text()) == restored.meta['config']
  card = (lm / 'MODEL_CARD.md').read_text()
  assert f'{info["num_params"]:,} parameters' in card
  assert info['metrics']['exported']['step'] == restored.step
  evaluated = [row for row in metrics.read_metrics(runs['lm']) if 'valid_perplexity' in row]
  assert len(evaluated) > 1
  assert info['metrics']['best']['valid_perplexity'] == min(
      row['valid_perplexity'] for row in evaluated)
  assert info['metrics']['latest']['step'] == max(row['step'] for row in evaluated)
  perplexity = info['metrics']['exported']['valid_perplexity']
  assert f'{perplexity:.4g}' in card and 'Best by `valid_perplexity` (min)' in card
  for heading in ('## Training', '## Data', '## Metrics', '## How to load it'):
    assert heading in card
  classifier = json.loads((exported / 'classifier' / 'model.json').read_text())
  assert classifier['inference']['label_names'] == ['0', '1']
  assert (exported / 'classifier' / 'tokenizer' / 'labels.json').is_file()
  translation = json.loads((exported / 'translation' / 'model.json').read_text())
  decode = json.loads((exported / 'translation' / 'config.json').read_text())['decode']
  assert translation['inference']['decode'] == {
      k: decode[k] for k in ('method', 'beam_size', 'alpha', 'max_length', 'length_ratio',
                             'length_offset')}


def test_torch_rnn_model_gives_the_exported_log_probs(exported, fresh):
  """The trained language model in a live torch RNNModel (skipped without torch)."""
  torch = pytest.importorskip('torch')
  from safetensors.torch import load_file  # pylint: disable=g-import-not-at-top
  import make_torch_lm_fixture  # pylint: disable=g-import-not-at-top
  lm = export_lib.load(exported / 'lm')
  m = lm.module
  model = make_torch_lm_fixture.RNNModel(m.vocab_size, m.embedding_size, m.hidden_size,
                                         m.num_layers, tie_weights=m.tie_weights).eval()
  model.load_state_dict(load_file(str(exported / 'lm' / export_lib.TORCH_FILE)))
  ids = [lm.tokenizer.eos_id] + lm.tokenizer.encode(LM_TEXT)
  with torch.no_grad():
    log_probs, _ = model(torch.tensor(ids)[:, None])  # [time, 1, V]
  np.testing.assert_allclose(log_probs[:, 0].numpy(), np.asarray(fresh['log_probs'])[0],
                             atol=1e-5, rtol=1e-5)


def test_export_refuses_a_non_empty_out_and_a_missing_workdir(runs, tmp_path):
  out = tmp_path / 'taken'
  out.mkdir()
  (out / 'notes.txt').write_text('mine')
  proc = testing.run(_export_command(f'--workdir={runs["lm"]}', f'--out={out}'))
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      f'export.py: error: --out={out} already exists and is not an empty directory; '
      'export never overwrites: choose a new directory or remove it first.')
  assert [p.name for p in out.iterdir()] == ['notes.txt']
  missing = tmp_path / 'no_run'  # The same one-line error as the CLI's (in-process: faster).
  with pytest.raises(errors.CheckpointNotFoundError, match=f'No checkpoints in {missing}'):
    trainer_export.export(missing, tmp_path / 'new')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['taken']


def test_torch_and_serving_exports_of_a_translation_model_are_refused(runs, tmp_path):
  with pytest.raises(errors.ConfigError, match='--torch exports language models only'):
    trainer_export.export(runs['translation'], tmp_path / 'out', torch=True)
  with pytest.raises(errors.ConfigError, match='--serving_tokens exports language models'):
    trainer_export.export(runs['translation'], tmp_path / 'out',
                          serving=export_lib.ServingOptions(num_tokens=3))
  assert not os.path.exists(tmp_path / 'out')
