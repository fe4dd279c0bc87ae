"""Sentence classification through the trainer: training with validation
accuracy, the best checkpoint by accuracy, evaluate mode on another split,
the classify command, and transfer from a trained language model."""

import shutil
import subprocess
import sys

import flax
import jax
import numpy as np
import pytest

import input_pipeline

from trainer import (checkpoints, config_lib, errors, evaluation,
                     loop, metrics, tasks, workdir_lock)

import tiny_runs as testing

NUM_STEPS = 40


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  return testing.write_toy_labelled_corpus(tmp_path_factory.mktemp('toy_sst'))


@pytest.fixture(scope='module')
def trained(corpus, tmp_path_factory, request):
  """One tiny classification run, shared by the pytest-xdist workers."""
  return testing.shared_classification_run(tmp_path_factory, request)


def test_trains_with_validation_accuracy(trained):
  workdir, result = trained
  rows = metrics.read_metrics(workdir)
  train = [r for r in rows if 'train_accuracy' in r]
  assert [r['step'] for r in train] == list(range(1, NUM_STEPS + 1))
  assert all(0.0 <= r['train_accuracy'] <= 1.0 for r in train)
  evals = {r['step']: r['valid_accuracy'] for r in rows
           if 'valid_accuracy' in r}
  assert sorted(evals) == [20, 40]
  # The cue word decides the label: a tiny BiLSTM learns it in 40 steps.
  assert result['valid_accuracy'] == evals[40] >= 0.9
  assert result['valid_loss'] < 0.5
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  best = max(evals, key=lambda s: (evals[s], s == ckpt.best_step()))
  assert evals[ckpt.best_step()] == evals[best]
  inputs = ckpt.read_meta(NUM_STEPS)['model_inputs']
  assert inputs['num_classes'] == 2 and inputs['vocab_size'] > 18
  ckpt.close()


def test_evaluate_mode_scores_another_split(trained, corpus, tmp_path):
  workdir, _ = trained
  config = testing.tiny_classification_config(corpus, mode='evaluate',
                                              eval_split='test',
                                              checkpoint='latest')
  result = evaluation.evaluate(tasks.build(config), workdir, tasks.task_class)
  assert set(result) == {'test_loss', 'test_accuracy'}
  assert result['test_accuracy'] >= 0.9
  with pytest.raises(errors.CheckpointMismatchError, match='sentence classifier'):
    evaluation.evaluate(tasks.build(testing.tiny_config(mode='evaluate')), workdir, tasks.task_class)
  # The data location keys given apply (the data moved); a model key that
  # differs is refused by name.
  moved = tmp_path / 'moved'
  shutil.copytree(corpus, moved)
  (moved / 'test.txt').write_text('1 a lovely film\n0 it was dull\n')
  config.data.data_dir = str(moved)
  assert evaluation.evaluate(tasks.build(config), workdir, tasks.task_class)['test_accuracy'] in (0.0, 0.5, 1.0)
  config.data.data_dir = str(tmp_path / 'gone')
  with pytest.raises(input_pipeline.errors.DataFileNotFoundError,
                     match=str(tmp_path / 'gone')):
    evaluation.evaluate(tasks.build(config), workdir, tasks.task_class)
  with pytest.raises(errors.CheckpointMismatchError,
                     match='model.hidden_size: checkpoint has 16, config gives 32'):
    evaluation.evaluate(tasks.build(testing.tiny_classification_config(
        corpus, mode='evaluate', eval_split='test', model__hidden_size=32)),
        workdir, tasks.task_class)


def test_classifier_labels_new_sentences(trained):
  workdir, _ = trained
  classifier = tasks.load(workdir, 'latest', 'classification')
  predictions = classifier.classify(
      ['the film was great', '', 'a boring story', 'superb and lovely'])
  assert predictions[1] is None
  assert [p.label for p in predictions if p] == ['1', '0', '1']
  for p in (predictions[0], predictions[2]):
    assert set(p.probabilities) == {'0', '1'}
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_classify_cli(trained, tmp_path):
  workdir, _ = trained
  source = tmp_path / 'in.txt'
  source.write_text('the film was awful\n\nit was good\n', encoding='utf-8')
  proc = testing.run([sys.executable, str(testing.REPO_ROOT / 'classify.py'),
                      f'--workdir={workdir}', f'--input={source}',
                      '--checkpoint=latest'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.split('\n')
  assert lines[0].startswith('0\t0=') and lines[1] == ''
  assert lines[2].startswith('1\t')
  assert 'classified 2 of 3 lines' in proc.stderr


def test_transfer_from_a_language_model(tmp_path_factory, request, corpus,
                                        tmp_path):
  """init_from: the LM's tokenizer, embedding and forward LSTM layers."""
  lm_workdir, _ = testing.shared_tiny_run(tmp_path_factory, request)
  # With a learning rate of ~0 the parameters stay where they started.
  config = testing.tiny_classification_config(
      corpus, init_from=lm_workdir, init_from_checkpoint='latest',
      num_train_steps=1, eval_every_steps=1, checkpoint_every_steps=1,
      model__num_layers=2, model__bidirectional=False,
      optimizer__learning_rate=1e-30)
  frozen_dir = str(tmp_path / 'frozen')
  loop.train_and_evaluate(tasks.build(config), frozen_dir)
  # The language model's vocabulary.
  assert (input_pipeline.load_tokenizer(frozen_dir).fingerprint() ==
          input_pipeline.load_tokenizer(lm_workdir).fingerprint())
  from trainer import inference  # pylint: disable=g-import-not-at-top
  lm = inference.restore(lm_workdir, 'latest', lookup=tasks.task_class).params()
  cls = inference.restore(frozen_dir, 'latest', lookup=tasks.task_class).params()
  np.testing.assert_allclose(cls['embed']['embedding'],
                             lm['embed']['embedding'], rtol=1e-6)
  # init_from_vocabulary='data': the run's own vocabulary; a word the
  # language model knows gets its row, any other the mean row.
  task = tasks.build(testing.tiny_classification_config(
      corpus, init_from=lm_workdir, init_from_checkpoint='latest',
      init_from_vocabulary='data', model__num_layers=2,
      model__bidirectional=False))
  own = task.load_datasets(str(tmp_path / 'own'))
  lm_words = input_pipeline.load_tokenizer(lm_workdir).token_to_id
  assert own.tokenizer.vocab != input_pipeline.load_tokenizer(lm_workdir).vocab
  model = task.build_model(**own.model_inputs())
  params = flax.linen.meta.unbox(task.init_variables(model, jax.random.key(0)))
  rows = task.transfer_params(jax.device_get(params))['embed']['embedding']
  lm_rows = np.asarray(lm['embed']['embedding'])
  known = [w for w in own.tokenizer.vocab if w in lm_words]
  unknown = [w for w in own.tokenizer.vocab if w not in lm_words]
  assert known and unknown  # The toy corpus has words the LM never saw.
  for word in known:
    np.testing.assert_array_equal(rows[own.tokenizer.token_to_id[word]],
                                  lm_rows[lm_words[word]], err_msg=word)
  for word in unknown:
    np.testing.assert_allclose(rows[own.tokenizer.token_to_id[word]],
                               lm_rows.mean(0), rtol=1e-6, err_msg=word)
  np.testing.assert_array_equal(  # The LSTM as before.
      task.transfer_params(params)['lstm']['layer_1']['recurrent_kernel'],
      lm['lstm']['layer_1']['recurrent_kernel'])
  # A classifier of other sizes names the parameter that does not fit.
  with pytest.raises(errors.CheckpointMismatchError, match='embed'):
    loop.train_and_evaluate(
        tasks.build(testing.tiny_classification_config(
            corpus, init_from=lm_workdir, init_from_checkpoint='latest',
            model__embedding_size=8)), str(tmp_path / 'mismatch'))


def test_classification_config_keys():
  config = tasks.build(testing.load_config('sst2')).config
  assert config.model.pooling == 'max'
  with pytest.raises(errors.ConfigError, match='init_from must name'):
    tasks.build(testing.load_config('sst2', 'pretrained'))
  with pytest.raises(errors.ConfigError, match="init_from_vocabulary='words'"):
    tasks.build(testing.tiny_classification_config(
        '/tmp', init_from_vocabulary='words'))
  with pytest.raises(errors.ConfigError, match="key of task='lm'"):
    tasks.build(testing.tiny_classification_config(
        '/tmp', model__tie_weights=True))


def _chattr(flag, path):
  return subprocess.run(['chattr', '-R', flag, str(path)], capture_output=True,
                        check=False).returncode == 0


def test_evaluate_and_classify_on_a_read_only_workdir(trained, corpus, tmp_path):
  """An immutable copy of the workdir (chattr +i: even root cannot write):
  evaluation on a split never cached there, and classification, work and
  write nothing in it."""
  workdir = tmp_path / 'mounted'
  shutil.copytree(trained[0], workdir)
  shutil.rmtree(workdir / 'data_cache', ignore_errors=True)
  if not _chattr('+i', workdir):
    pytest.skip('chattr +i is not available here')
  try:
    assert not workdir_lock.writable(str(workdir))
    before = sorted(p.relative_to(workdir) for p in workdir.rglob('*'))
    result = evaluation.evaluate(tasks.build(testing.tiny_classification_config(
        corpus, mode='evaluate', eval_split='test', checkpoint='latest')),
        str(workdir), tasks.task_class)
    assert result['test_accuracy'] >= 0.9
    assert tasks.load(str(workdir), 'latest', 'classification').classify(['it was good'])[0]
    assert sorted(p.relative_to(workdir) for p in workdir.rglob('*')) == before
  finally:
    _chattr('-i', workdir)
