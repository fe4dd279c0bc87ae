"""Trainer config validation, optimisers and schedules, partitioning rules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import sys

import pytest
from jax.sharding import PartitionSpec as P

from trainer import config_lib, errors, optimizers, partitioning, tasks

import tiny_runs as testing


def test_every_config_file_resolves():
  for name, arg in (('lm', None), ('tiny', None), ('ptb', 'small'),
                    ('ptb', 'medium'), ('ptb', 'large'), ('wikitext2', None),
                    ('wikitext2', 'small'), ('awd_lstm', 'ptb'),
                    ('awd_lstm', 'wikitext2'),
                    ('char_lm', None), ('lm1b', None)):
    config = tasks.build(testing.load_config(name, arg)).config
    assert config.model.hidden_size > 0, name


def test_ptb_presets_are_zaremba():
  small, medium, large = (testing.load_config('ptb', s)
                          for s in ('small', 'medium', 'large'))
  assert (small.model.hidden_size, medium.model.hidden_size,
          large.model.hidden_size) == (200, 650, 1500)
  assert (small.model.dropout_rate, medium.model.dropout_rate,
          large.model.dropout_rate) == (0.0, 0.5, 0.65)
  assert (small.num_epochs, medium.num_epochs, large.num_epochs) == (13, 39, 55)
  assert medium.data.data_dir.endswith('shared/data/ptb')
  # The paper's SGD (lr 1, clip 5 / 5 / 10 on a cost summed over the window)
  # on our per-token mean loss.
  for config, clip in ((small, 5.0), (medium, 5.0), (large, 10.0)):
    window = config.data.seq_len
    assert config.optimizer.learning_rate == pytest.approx(1.0 * window)
    assert config.optimizer.max_grad_norm * window == pytest.approx(clip)
  with pytest.raises(ValueError, match='preset'):
    testing.load_config('ptb', 'huge')


def test_unknown_key_is_an_error_with_a_suggestion():
  config = testing.tiny_config()
  bad = config.to_dict()
  bad['model']['hiden_size'] = 32
  with pytest.raises(errors.ConfigError, match="hiden_size.*model.hidden_size"):
    tasks.build(bad)
  bad = config.to_dict()
  bad['data']['seqlen'] = 3
  with pytest.raises(errors.ConfigError, match='data.seqlen'):
    tasks.build(bad)


@pytest.mark.parametrize('key, value, message', [
    ('model__hidden_size', 0, 'model.hidden_size must be a positive'),
    ('model__num_layers', -1, 'model.num_layers must be a positive'),
    ('data__batch_size', 0, 'data.batch_size must be a positive'),
    ('model__dropout_rate', 1.0, r'model.dropout_rate must be a dropout rate in \[0, 1\)'),
    ('optimizer__name', 'rmsprop', 'optimizer.name'),
    ('optimizer__learning_rate', 0.0, 'learning_rate must be > 0'),
    ('optimizer__lr_decay_factor', 0.5, 'lr_decay_factor'),
    ('mode', 'serve', 'mode'),
    ('checkpoint', 'newest', 'checkpoint'),
    ('log_every_steps', 0, 'log_every_steps'),
])
def test_invalid_values(key, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    tasks.build(testing.tiny_config(**{key: value}))


@pytest.mark.parametrize('make_config', [
    testing.tiny_config,
    lambda **kw: testing.tiny_translation_config('/nonexistent', **kw),
    lambda **kw: testing.tiny_classification_config('/nonexistent', **kw),
], ids=['lm', 'translation', 'classification'])
def test_float16_compute_is_refused_and_bfloat16_accepted(make_config):
  """float16 has no loss scaling in the trainer: one error naming the key and
  value and pointing at bfloat16 (the library itself still takes float16)."""
  with pytest.raises(errors.ConfigError) as e:
    tasks.build(make_config(model__dtype='float16'))
  assert str(e.value) == ("model.dtype='float16' is not supported for training "
                          "(no loss scaling); use 'bfloat16'.")
  for value in ('bfloat16', 'float32'):
    tasks.build(make_config(model__dtype=value))


def test_tie_weights_needs_matching_sizes():
  with pytest.raises(errors.ConfigError, match='tie_weights'):
    tasks.build(testing.tiny_config(model__tie_weights=True,
                                           model__hidden_size=32))


def test_batch_not_divisible_by_data_parallel_devices():
  """(Also checked on 8 real virtual devices in test_train_processes.)"""
  partitioner = partitioning.Partitioner(1)
  partitioner.check_batch_size(7, 'data.batch_size')  # 1 device: anything.
  partitioner.mesh = type('Mesh', (), {'shape': {'data': 8, 'model': 1}})()
  with pytest.raises(errors.BatchSizeError, match='12 is not divisible by the 8'):
    partitioner.check_batch_size(12, 'data.batch_size')
  partitioner.check_batch_size(16, 'data.batch_size')


def test_zaremba_schedule():
  o = testing.tiny_config(optimizer__schedule='zaremba',
                          optimizer__learning_rate=1.0,
                          optimizer__decay_after_epochs=4,
                          optimizer__lr_decay_factor=2.0).optimizer
  schedule = optimizers.learning_rate_schedule(o, updates_per_epoch=10,
                                               total_updates=130)
  # Epochs 0-3 at 1.0, then halved every epoch (Zaremba small).
  expected = {0: 1.0, 39: 1.0, 40: 0.5, 49: 0.5, 50: 0.25, 129: 2.0 ** -9}
  for count, lr in expected.items():
    assert float(schedule(count)) == pytest.approx(lr), count


def test_warmup_cosine_and_inverse_sqrt():
  o = testing.tiny_config(optimizer__schedule='cosine',
                          optimizer__learning_rate=1e-3,
                          optimizer__warmup_steps=10,
                          optimizer__end_lr_fraction=0.1).optimizer
  cosine = optimizers.learning_rate_schedule(o, 10, 110)
  assert float(cosine(0)) == 0.0
  assert float(cosine(5)) == pytest.approx(5e-4)
  assert float(cosine(10)) == pytest.approx(1e-3)
  assert float(cosine(110)) == pytest.approx(1e-4)
  o.schedule = 'inverse_sqrt'
  inv = optimizers.learning_rate_schedule(o, 10, 110)
  assert float(inv(5)) == pytest.approx(5e-4)
  assert float(inv(10)) == pytest.approx(1e-3)
  assert float(inv(10 + 30)) == pytest.approx(1e-3 * np.sqrt(10 / 40))


def test_parameter_averaging_is_the_mean_of_iterates():
  opt = optax.chain(optax.sgd(1.0), optimizers.parameter_averaging(2))
  params = {'w': jnp.zeros(3)}
  state = opt.init(params)
  assert optimizers.eval_params(params, state)['w'] is not None
  iterates = []
  for g in (1.0, 2.0, 3.0, 4.0):
    updates, state = opt.update({'w': jnp.full(3, -g)}, state, params)
    params = optax.apply_updates(params, updates)
    iterates.append(params['w'])
  # Updates 0 and 1 are not averaged; the mean of iterates 2 and 3 is.
  expected = (iterates[2] + iterates[3]) / 2
  np.testing.assert_allclose(optimizers.eval_params(params, state)['w'],
                             expected, rtol=1e-6)
  fresh = opt.init({'w': jnp.ones(3)})
  np.testing.assert_array_equal(  # Before averaging starts: the params.
      optimizers.eval_params({'w': jnp.ones(3)}, fresh)['w'], jnp.ones(3))


def test_gradient_accumulation_and_clipping():
  o = testing.tiny_config(optimizer__name='sgd', optimizer__learning_rate=1.0,
                          optimizer__grad_accum_steps=2,
                          optimizer__max_grad_norm=1.0).optimizer
  opt, _ = optimizers.create_optimizer(o, 10, 100)
  params = {'w': jnp.zeros(2)}
  state = opt.init(params)
  updates, state = opt.update({'w': jnp.array([10.0, 0.0])}, state, params)
  np.testing.assert_array_equal(updates['w'], 0.0)  # Accumulating.
  updates, state = opt.update({'w': jnp.array([0.0, 0.0])}, state, params)
  # Mean gradient [5, 0], clipped to norm 1, times -lr.
  np.testing.assert_allclose(updates['w'], [-1.0, 0.0], rtol=1e-6)


def test_logical_rules_shard_hidden_units_and_vocabulary():
  rules = config_lib.default_config().logical_axis_rules
  p = partitioning.Partitioner(1, rules)
  p.mesh = type('Mesh', (), {'shape': {'data': 2, 'model': 4}})()
  # LSTM kernels [in, 4, H]: H over 'model', so each device holds all four
  # gates of its units.
  assert p.logical_spec(('lstm_in', 'gate', 'lstm_hidden'),
                        (16, 4, 64)) == P(None, None, 'model')
  assert p.logical_spec(('gate', 'lstm_hidden'), (4, 64)) == P(None, 'model')
  assert p.logical_spec(('vocab', 'embed'), (300, 16)) == P('model', None)
  assert p.logical_spec(('lstm_out', 'vocab'), (16, 300)) == P(None, 'model')
  with pytest.raises(errors.ConfigError, match="301 along its logical axis 'vocab'"):
    p.logical_spec(('lstm_out', 'vocab'), (16, 301), 'output/kernel')


def test_a_parameter_without_logical_names_is_an_error():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  named = nn.with_logical_partitioning(nn.initializers.zeros, ('embed',))
  boxed = {'ok': named(jax.random.PRNGKey(0), (3,)),
           'dense': {'kernel': jnp.zeros((2, 2))}}
  with pytest.raises(errors.ConfigError, match="'dense'.*'kernel'"):
    partitioning.check_named(boxed)
  partitioning.check_named({'ok': boxed['ok']})


def test_split_text_follows_the_tfds_tiny_shakespeare_split(shared_data):
  sys.path.insert(0, str(testing.REPO_ROOT / 'tools'))
  import split_text  # pylint: disable=g-import-not-at-top
  text = (shared_data / 'tiny_shakespeare' / 'input.txt').read_text('utf-8')
  parts = split_text.split(text)
  assert {k: len(v) for k, v in parts.items()} == {
      'train': 1_003_854, 'valid': 55_770, 'test': 55_770}
  assert ''.join(parts[k] for k in ('train', 'valid', 'test')) == text


def test_multi_process_detection(monkeypatch):
  from trainer import distributed  # pylint: disable=g-import-not-at-top
  for name in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE', 'TPU_WORKER_HOSTNAMES',
               'JAX_COORDINATOR_ADDRESS'):
    monkeypatch.delenv(name, raising=False)
  assert not distributed.in_cluster()
  monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '1')
  assert not distributed.in_cluster()
  monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '4')
  assert distributed.in_cluster()


def test_generic_trainer_modules_import_no_task_lookup():
  """The loop, steps, checkpoints, config, evaluation and inference code get
  the task handed to them: importing them loads neither ``trainer.tasks``
  (the lookup) nor any task module."""
  import subprocess  # pylint: disable=g-import-not-at-top
  code = ('import sys; import trainer.loop, trainer.evaluation, trainer.inference, '
          'trainer.compiled, trainer.steps, trainer.checkpoints, trainer.config_lib; '
          "loaded = [m for m in sys.modules if m.startswith('trainer.tasks')]; "
          'assert not loaded, loaded')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=testing.REPO_ROOT,
                 env=testing.python_env())
