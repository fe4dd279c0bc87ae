"""Translation through the trainer: training with validation BLEU, exact
resume, evaluate mode, the translate command and its handling of bad input,
on configs/multi30k.py:tiny and a memorisable toy corpus."""

import math
import shutil
import sys

import numpy as np
import pytest

import input_pipeline
from trainer import checkpoints, config_lib, errors, metrics, tasks

import tiny_runs as testing
from trainer import evaluation, loop

NUM_STEPS = 40  # configs/multi30k.py:tiny


@pytest.fixture(scope='module')
def trained(tmp_path_factory, request):
  """(corpus dir, workdir, result) of one uninterrupted tiny run (shared,
  read-only)."""
  return testing.shared_translation_run(tmp_path_factory, request)


@pytest.fixture(scope='module')
def translator(trained):
  return tasks.load(trained[1], 'latest', 'translation')


def _translate_command(workdir, *extra):
  return [sys.executable, str(testing.REPO_ROOT / 'translate.py'),
          f'--workdir={workdir}', *extra]


def test_trains_with_validation_bleu(trained):
  _, workdir, result = trained
  losses = testing.train_losses(workdir)
  assert sorted(losses) == list(range(1, NUM_STEPS + 1))
  assert all(math.isfinite(v) for v in losses.values())
  first = np.mean([losses[s] for s in range(1, 6)])
  last = np.mean([losses[s] for s in range(NUM_STEPS - 4, NUM_STEPS + 1)])
  assert last < first - 1.5, (first, last)
  rows = metrics.read_metrics(workdir)
  evals = {r['step']: r for r in rows if 'valid_bleu' in r}
  assert sorted(evals) == [20, 40]
  for row in evals.values():
    assert {'valid_loss', 'valid_perplexity', 'valid_chrf'} <= set(row)
    assert 0.0 <= row['valid_bleu'] <= 100.0
  assert evals[40]['valid_bleu'] > 5.0  # Memorisable: it learns to translate.
  assert evals[40]['valid_loss'] < evals[20]['valid_loss']
  assert result['valid_bleu'] == evals[40]['valid_bleu']
  assert result['valid_perplexity'] == pytest.approx(
      math.exp(result['valid_loss']))
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  meta = ckpt.read_meta(ckpt.latest_step())
  ckpt.close()
  assert meta['step'] == NUM_STEPS and meta['task'] == 'translation'
  assert meta['model_inputs'] == {'vocab_size': meta['tokenizer']['vocab_size']}


def test_best_checkpoint_is_the_highest_bleu(tmp_path):
  """Translation keeps the best BLEU, not the best perplexity; a language
  model (no BLEU) the best perplexity."""
  state = {'w': np.zeros(3, np.float32)}
  for scores, best in (
      ([{'valid_perplexity': 9.0, 'valid_bleu': 31.0},
        {'valid_perplexity': 8.0, 'valid_bleu': 30.0}], 1),
      ([{'valid_perplexity': 9.0}, {'valid_perplexity': 8.0}], 2)):
    workdir = tmp_path / f'best{best}'
    ckpt = checkpoints.Checkpointer(workdir, keep=1, keep_best=1,
                                    async_save=False)
    for step, row in enumerate(scores, 1):
      ckpt.save(step, state, {'step': step},
                metrics=checkpoints.best_metrics(
                    {**row, 'valid_loss': 1.0}, *(
                        ('valid_bleu', 'max') if 'valid_bleu' in row else
                        ('valid_perplexity', 'min'))))
    ckpt.wait()
    assert ckpt.best_step() == best
    assert sorted(ckpt.all_steps()) == sorted({best, 2})
    ckpt.close()


def test_resume_after_a_crash_is_exact(trained, tmp_path, monkeypatch):
  """A crash at step 25 (checkpoints at 10, 20); the rerun resumes from 20
  and every loss equals the uninterrupted run's, bit for bit."""
  corpus, reference, _ = trained
  config = testing.tiny_translation_config(corpus, tmp_path / 'cache')
  workdir = str(tmp_path / 'crashed')
  original = input_pipeline.TranslationDatasets.train_batches

  def crashing(self, start_step=0):
    for step, batch in enumerate(original(self, start_step), start_step):
      if step == 25:
        raise RuntimeError('simulated crash')
      yield batch

  monkeypatch.setattr(input_pipeline.TranslationDatasets, 'train_batches',
                      crashing)
  with pytest.raises(RuntimeError, match='simulated crash'):
    loop.train_and_evaluate(tasks.build(config), workdir)
  monkeypatch.undo()
  assert max(testing.train_losses(workdir)) == 25
  result = loop.train_and_evaluate(tasks.build(config), workdir)
  expected = testing.train_losses(reference)
  resumed = testing.train_losses(workdir)
  assert {s: resumed[s] for s in range(21, NUM_STEPS + 1)} == {
      s: expected[s] for s in range(21, NUM_STEPS + 1)}
  assert result['valid_bleu'] == trained[2]['valid_bleu']


def test_evaluate_mode_scores_another_split(trained, tmp_path):
  corpus, reference, _ = trained
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  config = testing.tiny_translation_config(
      corpus, tmp_path / 'cache', mode='evaluate', eval_split='test',
      checkpoint='latest')
  result = evaluation.evaluate(tasks.build(config), workdir, tasks.task_class)
  assert set(result) == {'test_loss', 'test_perplexity', 'test_bleu',
                         'test_chrf'}
  assert 0.0 <= result['test_bleu'] <= 100.0
  rows = metrics.read_metrics(workdir)
  assert rows[-1]['step'] == NUM_STEPS and 'evaluate/test_bleu' in rows[-1]
  with pytest.raises(errors.CheckpointMismatchError, match='translation model'):
    evaluation.evaluate(tasks.build(testing.tiny_config(mode='evaluate')), workdir, tasks.task_class)


def test_translation_config_keys():
  with pytest.raises(errors.ConfigError, match="key of task='lm'"):
    tasks.build(testing.tiny_translation_config(
        '/nonexistent', model__num_layers=2))
  with pytest.raises(errors.ConfigError, match='decode.method'):
    tasks.build(testing.tiny_translation_config(
        '/nonexistent', decode__method='top_k'))
  for name, arg in (('multi30k', None), ('multi30k', 'tiny'), ('mt', None)):
    config = tasks.build(testing.load_config(name, arg)).config
    assert config.task == 'translation' and config.model.hidden_size > 0


@pytest.mark.parametrize('smoothing', [0.1, 0.35])
def test_label_smoothing_is_optax_smooth_labels_and_equals_the_old_formula(
    smoothing):
  """The training objective (cross-entropy against ``optax.smooth_labels``)
  equals the hand-written ``(1 - s) * nll - s * mean(log_softmax)`` it
  replaced, in value and gradient."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from trainer.tasks import translation  # pylint: disable=g-import-not-at-top

  def old(logits, labels):
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (1.0 - smoothing) * nll - smoothing * jnp.mean(
        jax.nn.log_softmax(logits), axis=-1)

  def new(logits, labels):
    return translation.label_smoothed_cross_entropy(logits, labels, smoothing)

  keys = jax.random.split(jax.random.key(0), 2)
  logits = 3.0 * jax.random.normal(keys[0], (2, 5, 11))
  labels = jax.random.randint(keys[1], (2, 5), 0, 11)
  np.testing.assert_allclose(new(logits, labels), old(logits, labels),
                             rtol=1e-6, atol=1e-6)
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x, labels)))(logits)  # noqa: E731
  np.testing.assert_allclose(grad(new), grad(old), rtol=1e-6, atol=1e-6)
  # Smoothing changes the loss (the comparison above is not vacuous).
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  assert float(jnp.max(jnp.abs(new(logits, labels) - nll))) > 1e-2


# ------------------------------------------------------------- bad input ----


def test_empty_lines_give_empty_translations(translator):
  outputs, report = translator.translate(['ein hund läuft', '', '   '])
  assert len(outputs) == 3 and outputs[0] and outputs[1:] == ['', '']
  assert report.empty == [2, 3]
  assert 'lines 2, 3' in report.messages()[0]


def test_overlong_lines_are_truncated_and_counted(translator):
  long = ' und '.join(testing.TOY_GERMAN * 3)
  outputs, report = translator.translate(['ein hund läuft', long],
                                         max_input_tokens=8)
  assert [n for n, _ in report.truncated] == [2]
  assert report.truncated[0][1] > 8
  assert outputs[1]  # Translated from its first 7 tokens.
  assert 'truncated' in report.messages()[0] and 'line 2' in report.messages()[0]


def test_characters_missing_from_the_vocabulary_become_unk(translator):
  outputs, report = translator.translate(['ein ☃ hund läuft', 'ein hund'])
  assert report.unknown == [(1, '☃')]
  assert len(outputs) == 2
  assert '☃' in report.messages()[0]


def test_translate_cli_end_to_end(trained, tmp_path):
  """Beam search from a file to stdout, with every kind of bad line, and
  BLEU against a reference file."""
  _, workdir, _ = trained
  source = tmp_path / 'in.de'
  long = ' und '.join(testing.TOY_GERMAN * 3)
  source.write_text(f'ein hund läuft\n\nzwei katzen schlafen\n{long}\n'
                    'ein ☃ hund\n', encoding='utf-8')
  reference = tmp_path / 'ref.en'
  reference.write_text('a dog runs\n\ntwo cats sleep\nx\na dog\n',
                       encoding='utf-8')
  proc = testing.run(_translate_command(
      workdir, f'--input={source}', '--beam_size=3', '--alpha=0.6',
      '--batch_size=8', '--max_input_tokens=12', f'--reference={reference}',
      '--checkpoint=best'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.split('\n')
  assert len(lines) == 6 and lines[5] == '' and lines[1] == '', lines
  assert all(lines[i] for i in (0, 2, 3, 4)), lines
  err = proc.stderr
  assert '1 line empty (line 2)' in err
  assert '1 line longer than max_input_tokens=12' in err
  assert "characters: '☃'" in err
  assert 'translated 4 of 5 lines' in err and 'BLEU = ' in err


def test_translate_without_a_checkpoint_is_a_clear_error(tmp_path):
  """Standard input, no checkpoint: one line on stderr, status 1."""
  proc = testing.run(_translate_command(str(tmp_path / 'empty')),
                     input='ein hund\n')
  assert proc.returncode == 1
  assert 'translate.py: error: No checkpoints in' in proc.stderr
  assert 'Traceback' not in proc.stderr
  with pytest.raises(errors.CheckpointNotFoundError, match='No checkpoints'):
    tasks.load(str(tmp_path / 'empty'), 'latest', 'translation')


def test_translate_refuses_a_language_model_checkpoint(tmp_path_factory,
                                                       request):
  """(translate.py prints the same message with the error handling of the
  test above.)"""
  lm_workdir, _ = testing.shared_tiny_run(tmp_path_factory, request)
  with pytest.raises(errors.CheckpointMismatchError) as info:
    tasks.load(lm_workdir, 'latest', 'translation')
  message = str(info.value)
  assert 'is a language model' in message and 'generate.py' in message
  assert "this needs task 'translation'" in message
