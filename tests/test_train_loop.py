"""The training loop in-process: metrics, checkpoints, exact resume, bad input,
evaluate mode and generation, on the tiny config (configs/tiny.py)."""

import glob
import json
import math
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import input_pipeline
from trainer import (checkpoints, compiled, config_lib, errors, evaluation,
                     inference, loop, metrics, optimizers,
                     partitioning, tasks)

import tiny_runs as testing

NUM_STEPS = 30  # configs/tiny.py


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp('data_cache')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, request):
  """An uninterrupted tiny run (shared, read-only): (workdir, its result)."""
  return testing.shared_tiny_run(tmp_path_factory, request)


def _copy(trained_dir, tmp_path):
  target = str(tmp_path / 'run')
  shutil.copytree(trained_dir, target)
  return target


def _snapshot(directory):
  out = {}
  for path in sorted(glob.glob(os.path.join(directory, '**'), recursive=True)):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        out[path] = f.read()
  return out


def test_trains_evaluates_and_checkpoints(trained):
  workdir, result = trained
  rows = metrics.read_metrics(workdir)
  losses = testing.train_losses(workdir)
  assert sorted(losses) == list(range(1, NUM_STEPS + 1))
  assert np.mean([losses[s] for s in range(26, 31)]) < losses[1] - 0.5
  train_row = next(r for r in rows if r['step'] == 5 and 'train_loss' in r)
  for key in ('train_perplexity', 'learning_rate', 'grad_norm',
              'train_steps_per_sec', 'train_tokens_per_sec'):
    assert train_row[key] > 0, key
  assert train_row['train_perplexity'] == pytest.approx(
      math.exp(train_row['train_loss']))
  evals = {r['step']: r['valid_perplexity'] for r in rows
           if 'valid_perplexity' in r}
  assert sorted(evals) == [10, 20, 30]
  assert result['valid_perplexity'] == evals[30] < 300  # vocab is 300
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['hidden_size'] == 16
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  # Last 3 saves (every 4 steps, at evals and at the end) + the best eval.
  best = min(evals, key=evals.get)
  assert ckpt.latest_step() == NUM_STEPS
  assert ckpt.best_step() == best
  assert result['valid_perplexity'] == evals[30]
  assert set(ckpt.all_steps()) == {24, 28, 30, best}
  meta = ckpt.read_meta(30)
  assert meta['input_pipeline']['next_step'] == 30
  assert meta['tokenizer']['directory'] == 'tokenizer'
  assert meta['tokenizer']['vocab_size'] == 300
  assert os.path.isfile(os.path.join(workdir, 'tokenizer', 'tokenizer.json'))
  ckpt.close()
  # Nothing went wrong: no Orbax warning (e.g. saves without metrics).
  assert not os.path.exists(os.path.join(workdir, checkpoints.CHECKPOINT_LOG))


def test_carry_flows_between_batches_and_resets_each_epoch(cache):
  config = testing.tiny_config(cache)
  task = tasks.build(config)
  config = task.config
  datasets = task.load_datasets(str(cache.parent / 'c'))
  partitioner = partitioning.Partitioner(1, config.logical_axis_rules)
  steps = compiled.compile_steps(task, datasets.model_inputs(), 11, 30,
                                 partitioner)
  state = steps.init(jax.random.PRNGKey(0))
  batches = datasets.train_batches()
  state, _ = steps.train(state, partitioner.global_batch(next(batches)),
                         np.asarray(True))
  assert float(jnp.abs(state.carry.c).sum()) > 0  # Carried to the next batch.
  batch = partitioner.global_batch(next(batches))
  copy = lambda s: jax.tree.map(jnp.copy, s)
  _, kept = steps.train(copy(state), batch, np.asarray(False))
  _, reset = steps.train(copy(state), batch, np.asarray(True))
  zero = state.replace(carry=jax.tree.map(jnp.zeros_like, state.carry))
  _, zeroed = steps.train(zero, batch, np.asarray(False))
  assert float(kept['loss_sum']) != float(reset['loss_sum'])
  assert float(reset['loss_sum']) == float(zeroed['loss_sum'])
  tracker = loop.EpochTracker(*datasets.epoch_length())
  assert [s for s in range(30) if tracker.is_epoch_start(s)] == [0, 11, 22]


def test_resume_after_a_crash_is_exact(trained, cache, tmp_path, monkeypatch):
  """A crash at step 14 (checkpoints at 4, 8, 10, 12); the rerun resumes
  from 12 and every loss equals the uninterrupted run's, bit for bit.
  (A real kill -9 is in test_train_processes.py.)"""
  workdir = str(tmp_path / 'crashed')
  original = input_pipeline.LMDatasets.train_batches

  def crashing(self, start_step=0):
    for i, batch in enumerate(original(self, start_step)):
      if start_step + i == 14:
        raise RuntimeError('simulated crash')
      yield batch

  monkeypatch.setattr(input_pipeline.LMDatasets, 'train_batches', crashing)
  with pytest.raises(RuntimeError, match='simulated crash'):
    loop.train_and_evaluate(tasks.build(testing.tiny_config(cache)), workdir)
  monkeypatch.undo()
  assert max(testing.train_losses(workdir)) == 14
  result = loop.train_and_evaluate(tasks.build(testing.tiny_config(cache)), workdir)
  rows = metrics.read_metrics(workdir)
  reference = testing.train_losses(trained[0])
  assert testing.train_losses(workdir) == reference  # Bit-identical floats.
  assert result == trained[1]
  # The rerun started at step 13 (after the checkpoint of step 12); its rows
  # replace the lost run's rows 13 and 14, so each step is there once.
  steps = [r['step'] for r in rows if 'train_loss' in r]
  assert steps == list(range(1, NUM_STEPS + 1))


@pytest.mark.parametrize('max_loss, message, good_steps', [
    # A huge but finite loss (1e36) exceeds 1e4 x the first loss.
    (0.0, r'loss is 1\.\d+e\+36, above max_loss=\d\.\d+e\+04 \(1e4 x the first '
     r'loss\) at step 2;.*checkpoint \(step 1\)', [1]),
    (1e38, r'loss is (nan|inf) at step 3;.*checkpoint \(step 2\)', [1, 2]),
])
def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    cache, tmp_path, max_loss, message, good_steps):
  workdir = str(tmp_path / 'nan')
  config = testing.tiny_config(
      cache, optimizer__name='sgd', optimizer__learning_rate=1e37,
      optimizer__max_grad_norm=0.0, checkpoint_every_steps=1, max_loss=max_loss)
  with pytest.raises(errors.NonFiniteLossError, match=message):
    loop.train_and_evaluate(tasks.build(config), workdir)
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  assert ckpt.latest_step() == good_steps[-1]
  assert ckpt.all_steps() == good_steps  # No state past the bound is saved.
  ckpt.close()


def test_failed_save_errors_and_keeps_earlier_checkpoints(
    trained, cache, tmp_path, monkeypatch):
  workdir = str(tmp_path / 'failing')
  real = ocp.args.StandardSave
  calls = []

  def failing_save(state, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:  # The save of step 10 gets an unsavable leaf.
      state = {'state': state, 'bad': object()}
    return real(state, *args, **kwargs)

  monkeypatch.setattr(ocp.args, 'StandardSave', failing_save)
  with pytest.raises(errors.CheckpointSaveError,
                     match=r'step 10 .*failed.*latest complete: 8'):
    loop.train_and_evaluate(tasks.build(testing.tiny_config(cache)), workdir)
  monkeypatch.undo()
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  assert ckpt.all_steps() == [4, 8]
  ckpt.close()
  # The earlier checkpoints are intact: resuming reproduces the clean run.
  loop.train_and_evaluate(tasks.build(testing.tiny_config(cache)), workdir)
  assert testing.train_losses(workdir) == testing.train_losses(trained[0])


@pytest.mark.parametrize('override, field', [
    ({'model__hidden_size': 32}, 'model.hidden_size: checkpoint has 16, config gives 32'),
    ({'model__num_layers': 1}, 'model.num_layers'),
    ({'data__batch_size': 4}, 'data.batch_size'),
    ({'data__vocab_size': 200}, 'data.vocab_size: checkpoint has 300, config gives 200'),
])
def test_mismatched_checkpoint_is_refused_and_not_overwritten(
    trained, cache, tmp_path, override, field):
  workdir = _copy(trained[0], tmp_path)
  before = _snapshot(workdir)
  with pytest.raises(errors.CheckpointMismatchError, match=field):
    loop.train_and_evaluate(tasks.build(testing.tiny_config(cache, **override)),
                                 workdir)
  after = _snapshot(workdir)
  assert after == before


def test_half_written_checkpoint_is_never_resumed(trained, cache, tmp_path):
  """A save killed mid-write leaves Orbax's temporary directory; resume
  ignores it and starts from the latest complete checkpoint."""
  workdir = _copy(trained[0], tmp_path)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  partial = os.path.join(ckpt_dir, '40.orbax-checkpoint-tmp-1234')
  shutil.copytree(os.path.join(ckpt_dir, '30'), partial)
  for path in glob.glob(os.path.join(partial, 'state', '**'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'r+b') as f:
        f.truncate(max(0, os.path.getsize(path) // 2))
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  assert ckpt.latest_step() == 30
  ckpt.close()
  loop.train_and_evaluate(
      tasks.build(testing.tiny_config(cache, num_train_steps=32)), workdir)
  rows = [r['step'] for r in metrics.read_metrics(workdir) if 'train_loss' in r]
  assert rows[-2:] == [31, 32]
  assert not os.path.exists(partial)  # the resumed run removed it
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  assert ckpt.latest_step() == 32
  ckpt.close()


def test_evaluate_mode_scores_any_checkpoint_on_any_split(trained, tmp_path,
                                                         capsys):
  workdir, result = _copy(trained[0], tmp_path), trained[1]
  config = testing.tiny_config(mode='evaluate', eval_split='valid',
                               checkpoint='latest')
  valid = evaluation.evaluate(tasks.build(config), workdir, tasks.task_class)
  assert valid['valid_perplexity'] == pytest.approx(
      result['valid_perplexity'], rel=1e-6)
  config = testing.tiny_config(mode='evaluate', eval_split='test',
                               checkpoint='24')
  test = evaluation.evaluate(tasks.build(config), workdir, tasks.task_class)
  assert 1.0 < test['test_perplexity'] < 300
  assert "Checkpoint step 24, split 'test': test_loss = " in capsys.readouterr().out
  with pytest.raises(errors.CheckpointNotFoundError, match='step 5'):
    evaluation.evaluate(tasks.build(testing.tiny_config(checkpoint='5')), workdir, tasks.task_class)


def test_generation_is_deterministic_for_a_seed(trained):
  generator = tasks.load(trained[0], 'best', 'lm')
  assert generator.step in (10, 20, 30)
  a = generator.generate('The for statement', num_tokens=12, seed=3)
  b = generator.generate('The for statement', num_tokens=12, seed=3)
  c = generator.generate('The for statement', num_tokens=12, seed=4)
  assert a == b and a[0].strip()
  assert c != a
  greedy = [generator.generate('The', num_tokens=12, seed=s, top_k=1)
            for s in (1, 2)]
  assert greedy[0] == greedy[1]


def test_a_damaged_or_missing_saved_tokenizer_is_named(trained, tmp_path):
  """Inference reports an unreadable tokenizer.json with its reason, not
  as missing."""
  workdir = _copy(trained[0], tmp_path)
  path = os.path.join(workdir, 'tokenizer', 'tokenizer.json')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('not json')
  with pytest.raises(errors.CheckpointCorruptError,
                     match=re.escape(path) + ' is not a tokenizer description'):
    tasks.load(workdir, 'best', 'lm')
  os.remove(path)
  with pytest.raises(errors.CheckpointNotFoundError, match='which is missing'):
    tasks.load(workdir, 'best', 'lm')


def test_awd_lstm_features_train_and_average(cache, tmp_path):
  """Random BPTT windows, weight drop, locked dropout, a smaller tied last
  layer, gradient accumulation and averaged SGD together."""
  workdir = str(tmp_path / 'awd')
  config = testing.tiny_config(
      cache, num_train_steps=8, eval_every_steps=8, checkpoint_every_steps=8,
      model__num_layers=3, model__last_layer_size=8,
      model__embedding_size=8, model__tie_weights=True,
      model__weight_dropout_rate=0.3, model__embedding_dropout_rate=0.1,
      model__variational_dropout=True, optimizer__name='sgd',
      optimizer__learning_rate=5.0, optimizer__grad_accum_steps=2,
      optimizer__averaging_start_step=2, data__random_window=True,
      data__max_window_extra=4, data__pad_to_multiple=16)  # One shape.
  result = loop.train_and_evaluate(tasks.build(config), workdir)
  assert math.isfinite(result['valid_perplexity'])
  restored = inference.restore(workdir, lookup=tasks.task_class, eval_split='valid')
  state = restored.state
  averaged = optimizers.eval_params(state.params, state.opt_state)
  # 4 updates, averaged from update 2 on: the eval parameters are the mean.
  assert not np.allclose(averaged['embed']['embedding'],
                         state.params['embed']['embedding'])
  assert restored.task.evaluate(restored.eval_context(), restored.datasets,
                                'valid') == pytest.approx(result)


def test_sentence_batches_reset_the_carry(cache, tmp_path):
  workdir = str(tmp_path / 'sentences')
  config = testing.tiny_config(
      cache, num_train_steps=4, eval_every_steps=4, data__batching='sentences',
      data__max_length=16, data__pad_to_multiple=16)  # One shape.
  result = loop.train_and_evaluate(tasks.build(config), workdir)
  assert 1.0 < result['valid_perplexity'] < 1000
  with pytest.raises(errors.ConfigError, match='packing'):
    loop.train_and_evaluate(
        tasks.build(testing.tiny_config(cache, data__batching='sentences',
                            data__packing=True)), str(tmp_path / 'packed'))


def test_resume_check_names_only_fields_that_changed():
  """A tuple in the config equals the list its checkpoint saved (JSON)."""

  class SavedMeta:
    directory = '/ckpt'

    def read_meta(self, step):
      del step
      return {'signature': {'eval_splits': ['valid'], 'seed': 0,
                            'shapes': {'w': [2, 3]}}, 'config': {}}

  signature = {'eval_splits': ('valid',), 'seed': 0, 'shapes': {'w': (2, 3)}}
  loop.check_resumable(SavedMeta(), 5, signature, tasks.build(
      testing.tiny_config()).config)
  with pytest.raises(errors.CheckpointMismatchError,
                     match=r"Differing fields: seed: checkpoint has 0, config "
                           r"gives 1\. Restore") as refusal:
    loop.check_resumable(SavedMeta(), 5, {**signature, 'seed': 1},
                         tasks.build(testing.tiny_config()).config)
  assert 'eval_splits' not in str(refusal.value)


_HOLD_LOCK = r'''
import sys, time
from trainer import workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print('locked', flush=True)
  time.sleep(600)
'''


def test_one_run_per_workdir_and_a_dead_holder_never_blocks(tmp_path):
  """A second run on a locked workdir is refused naming the holder and
  changes nothing; after kill -9 of the holder the workdir is free."""
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  holder = subprocess.Popen([sys.executable, '-c', _HOLD_LOCK, workdir],
                            stdout=subprocess.PIPE, text=True,
                            env=testing.python_env())
  try:
    assert holder.stdout.readline().strip() == 'locked'
    before = sorted(os.listdir(workdir))
    with pytest.raises(errors.WorkdirError,
                       match=rf'in use by another run \(process {holder.pid} on '
                             r'host .*\); one run per workdir'):
      loop.train_and_evaluate(tasks.build(testing.tiny_config(num_train_steps=1)), workdir)
    assert sorted(os.listdir(workdir)) == before == ['.lock']
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  from trainer import workdir_lock  # pylint: disable=g-import-not-at-top
  with workdir_lock.hold(workdir):  # The dead holder's lock is gone.
    pass
  file_workdir = tmp_path / 'a_file'
  file_workdir.write_text('x')
  with pytest.raises(errors.WorkdirError, match='is a file, not a directory'):
    loop.train_and_evaluate(tasks.build(testing.tiny_config(num_train_steps=1)),
                            str(file_workdir))
  # A read-only workdir (chattr +i: even root cannot write) is one error.
  read_only = tmp_path / 'read_only'
  read_only.mkdir()
  if subprocess.run(['chattr', '+i', str(read_only)], check=False,
                    capture_output=True).returncode == 0:
    try:
      with pytest.raises(errors.WorkdirError,
                         match=f'The workdir {read_only} is not writable; training'):
        loop.train_and_evaluate(tasks.build(testing.tiny_config(num_train_steps=1)),
                                str(read_only))
    finally:
      subprocess.run(['chattr', '-i', str(read_only)], check=False)


def test_compiled_steps_are_not_shared_across_batch_sizes():
  """The carry in the train state has the batch's rows: runs that differ only
  in data.batch_size must not share compiled steps."""
  shapes = []
  for batch_size in (4, 8):
    task = tasks.build(
        testing.tiny_config(data__batch_size=batch_size))
    steps = compiled.compile_steps(task, task.placeholder_model_inputs(), 1, 1,
                                   partitioning.Partitioner(1))
    shapes.append(jax.tree.leaves(steps.abstract_state.carry)[0].shape)
  assert shapes[0][1] == 4 and shapes[1][1] == 8, shapes


def test_sigterm_during_a_validation_stops_it_and_saves_at_once(
    trained, cache, tmp_path, monkeypatch):
  """SIGTERM at the 2nd batch of step 10's validation: no more batch is
  scored, step 10 is saved with its validation pending, and the rerun does
  that validation first; SIGTERM in the training step before step 20's
  validation leaves that one pending too; the last rerun ends as the
  uninterrupted run did."""
  import signal  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'stopped')
  original = input_pipeline.LMDatasets.eval_batches
  served = []

  def signalling(self, *args, **kwargs):
    for i, batch in enumerate(original(self, *args, **kwargs)):
      served.append(i)
      if i == 1:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  monkeypatch.setattr(input_pipeline.LMDatasets, 'eval_batches', signalling)
  assert loop.train_and_evaluate(tasks.build(testing.tiny_config(cache)), workdir) == {}
  monkeypatch.undo()
  assert served == [0, 1]  # Stopped before placing the batch after the signal.
  rows = metrics.read_metrics(workdir)
  assert max(r['step'] for r in rows) == 10
  assert not any('valid_loss' in r for r in rows)
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  assert ckpt.latest_step() == 10
  assert ckpt.read_meta(10)['validation_pending']
  ckpt.close()
  # The rerun validates step 10 first; then SIGTERM during step 20's training
  # step: step 20 is saved with its validation pending (not skipped), and
  # without step 10's metrics.
  from trainer.tasks import lm as lm_task  # pylint: disable=g-import-not-at-top
  original_tokens = lm_task.LMDatasets.batch_tokens
  trained_steps = []

  def signalling_tokens(self, local):  # Called once per training step.
    trained_steps.append(10 + len(trained_steps))
    if trained_steps[-1] == 19:  # Step 19 -> 20 is under way.
      os.kill(os.getpid(), signal.SIGTERM)
    return original_tokens(self, local)

  monkeypatch.setattr(lm_task.LMDatasets, 'batch_tokens', signalling_tokens)
  assert loop.train_and_evaluate(tasks.build(testing.tiny_config(cache)), workdir) == {}
  monkeypatch.undo()
  assert max(r['step'] for r in metrics.read_metrics(workdir)) == 20
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  assert ckpt.latest_step() == 20 and ckpt.read_meta(20)['validation_pending']
  assert not ckpt.manager.metrics(20)  # Not step 10's validation.
  ckpt.close()
  result = loop.train_and_evaluate(tasks.build(testing.tiny_config(cache)), workdir)
  assert result == trained[1]
  reference = {r['step']: r['valid_loss'] for r in metrics.read_metrics(trained[0])
               if 'valid_loss' in r}
  assert {r['step']: r['valid_loss'] for r in metrics.read_metrics(workdir)
          if 'valid_loss' in r} == reference  # Step 10's included, once.
  assert testing.train_losses(workdir) == testing.train_losses(trained[0])


def _truncate_state_file(step_dir):
  path = max(glob.glob(os.path.join(step_dir, 'state', '**', '*'), recursive=True),
             key=lambda p: os.path.getsize(p) if os.path.isfile(p) else -1)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip_a_byte(step_dir):
  path = max(glob.glob(os.path.join(step_dir, 'state', '**', '*'), recursive=True),
             key=lambda p: os.path.getsize(p) if os.path.isfile(p) else -1)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x55]))


def _garbage_metadata(step_dir):
  with open(os.path.join(step_dir, 'meta', 'metadata'), 'wb') as f:
    f.write(b'\xff\xfe not json')


@pytest.mark.parametrize('damage, problem', [
    (_truncate_state_file, r'has \d+ bytes, not \d+'),
    (_flip_a_byte, 'does not match its checksum'),
    (_garbage_metadata, r'meta/metadata (has \d+ bytes|does not match)'),
    (lambda step_dir: shutil.rmtree(os.path.join(step_dir, 'state')),
     "its item 'state' is missing"),
])
def test_damaged_latest_checkpoint_is_set_aside_and_the_run_resumes_exactly(
    trained, cache, tmp_path, caplog, damage, problem):
  workdir = _copy(trained[0], tmp_path)
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  steps = ckpt.all_steps()
  assert ckpt.damage(NUM_STEPS) is None and NUM_STEPS in steps
  ckpt.close()
  damage(os.path.join(workdir, 'checkpoints', str(NUM_STEPS)))
  # Refused, and nothing changed, without the fallback.
  before = _snapshot(workdir)
  with pytest.raises(errors.CheckpointCorruptError,
                     match=rf'step {NUM_STEPS} .* is damaged: .*{problem}'):
    loop.train_and_evaluate(tasks.build(testing.tiny_config(cache, checkpoint_fallback=False)),
                            workdir)
  assert _snapshot(workdir) == before
  # Inference skips a damaged latest and refuses it when named.
  assert inference.restore(workdir, 'latest', lookup=tasks.task_class).step == max(set(steps) - {NUM_STEPS})
  with pytest.raises(errors.CheckpointCorruptError, match=problem):
    inference.restore(workdir, NUM_STEPS, lookup=tasks.task_class)
  # Training moves it aside and resumes from the newest intact checkpoint.
  with caplog.at_level('WARNING'):
    result = loop.train_and_evaluate(tasks.build(testing.tiny_config(cache)), workdir)
  assert re.search(rf'checkpoint of step {NUM_STEPS} is damaged \(.*{problem}.*\); '
                   rf'moved it to .*corrupt-{NUM_STEPS}', caplog.text)
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', f'corrupt-{NUM_STEPS}'))
  assert testing.train_losses(workdir) == testing.train_losses(trained[0])
  assert result == trained[1]


def test_a_failed_background_save_names_its_own_step(tmp_path):
  """The save of step 4 fails in the background (disk full); the error
  surfaces at the save of step 8 and names step 4."""

  class Manager:  # Orbax's behaviour: the next save re-raises the failure.
    failed = False

    def save(self, step, **kwargs):
      del step, kwargs
      if self.failed:
        raise OSError(28, 'No space left on device')

    def wait_until_finished(self):
      if self.failed:
        raise OSError(28, 'No space left on device')

    def check_for_errors(self):
      pass

    def reload(self):
      pass

    def latest_step(self):
      return 0

    def close(self):
      pass

  ckpt = checkpoints.Checkpointer(str(tmp_path))
  ckpt.manager.close()
  ckpt.manager = Manager()
  ckpt.save(4, {}, {})
  ckpt.manager.failed = True
  with pytest.raises(errors.CheckpointSaveError,
                     match=r'checkpoint of step 4 .* failed: OSError: .*No space'):
    ckpt.save(8, {}, {})


def test_orbax_errors_go_to_the_workdir_log_not_the_console(tmp_path):
  import logging  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  console = absl_logging.get_absl_handler()

  def record(path, level):
    return logging.LogRecord('absl', level, path, 1, 'write failed: disk full',
                             None, None)

  orbax_error = record('/site-packages/orbax/checkpoint/_src/future.py',
                       logging.ERROR)
  with metrics.orbax_errors_to_file(
      str(tmp_path / checkpoints.CHECKPOINT_LOG)) as path:
    assert not console.filter(orbax_error)
    assert console.filter(record('/work/trainer/loop.py', logging.ERROR))
    assert console.filter(record('/site-packages/orbax/x.py', logging.WARNING))
    logging.getLogger('absl').handle(orbax_error)
    logging.getLogger('absl').handle(record('/work/trainer/loop.py', logging.ERROR))
  assert console.filter(orbax_error)  # Only within the run.
  with open(path, encoding='utf-8') as f:
    lines = f.read().splitlines()
  assert len(lines) == 1 and 'orbax' in lines[0] and 'disk full' in lines[0]


def _break_unrecorded(step_dir):
  """Damage the checksum check cannot see: no record (a save killed before
  it was written) and a truncated state file."""
  os.remove(os.path.join(step_dir, checkpoints.CHECKSUM_FILE))
  _truncate_state_file(step_dir)


def test_a_failed_restore_falls_back_in_place(trained, tmp_path):
  """restore_newest: the latest fails to restore -> refused untouched
  without the fallback; with it, set aside and the next older one restored
  with the same abstract state (vetted by ``check``)."""
  workdir = _copy(trained[0], tmp_path)
  ckpt = checkpoints.Checkpointer(workdir)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          ckpt.restore(NUM_STEPS, None)[0])
  _break_unrecorded(ckpt.step_dir(NUM_STEPS))
  assert ckpt.latest_intact_step() == NUM_STEPS  # Invisible to the checks.
  before = _snapshot(workdir)
  with pytest.raises(errors.CheckpointCorruptError,
                     match=rf'step {NUM_STEPS} .* restoring it failed'):
    ckpt.restore_newest(NUM_STEPS, abstract, fallback=False)
  assert _snapshot(workdir) == before
  checked = []
  step, state, meta = ckpt.restore_newest(NUM_STEPS, abstract,
                                          check=checked.append)
  older = max(set(ckpt.all_steps()) | {0})
  assert step == older == checked[0] == meta['step'] and NUM_STEPS not in (
      ckpt.all_steps())
  assert int(state['step']) == older
  assert os.path.isdir(ckpt.directory + f'/corrupt-{NUM_STEPS}')
  ckpt.close()


def test_closed_loop_tracebacks_go_to_the_workdir_log(tmp_path, capsys):
  """TensorStore's "Event loop is closed" tracebacks after a failed write
  (printed through sys.excepthook) land in checkpoint_errors.log."""
  import sys  # pylint: disable=g-import-not-at-top
  hook = sys.excepthook
  with metrics.orbax_errors_to_file(
      str(tmp_path / checkpoints.CHECKPOINT_LOG)) as path:
    try:
      raise RuntimeError('Event loop is closed')
    except RuntimeError as e:
      sys.excepthook(type(e), e, e.__traceback__)
  assert sys.excepthook is hook
  assert 'Event loop is closed' not in capsys.readouterr().err
  with open(path, encoding='utf-8') as f:
    assert 'RuntimeError: Event loop is closed' in f.read()
