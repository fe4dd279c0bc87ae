"""Feature-sequence classification through the trainer
(``task='feature_classification'``): one tiny run on synthetic 8 kHz sine
tones (3 classes, FSDD file names) shared by the assertions: validation
accuracy and the best checkpoint, the saved feature settings, evaluate mode,
resume (and its refusal when the feature settings change), classify.py on
.wav paths (and a stereo file's one-line error), export reloaded in a fresh
process without the trainer or TensorFlow; and a few steps on tiny
generated MNIST IDX files."""

import gzip
import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import input_pipeline

from lstm_flax import features as features_lib
from trainer import checkpoints, errors, evaluation, loop, metrics, tasks
from trainer import export as trainer_export

import tiny_runs as testing

RATE = testing.TONE_RATE
TONES = testing.TONES
NUM_STEPS = testing.TONE_STEPS

# Runs in a fresh process: the export alone classifies wav paths and samples.
FRESH = r'''
import json, sys
import numpy as np
from lstm_flax import export, features
model = export.load(sys.argv[1])
paths = json.loads(sys.argv[2])
samples = features.read_wav(paths[0], 8000)[0]
out = {'paths': [[p.label, p.probabilities] for p in model.classify(paths)],
       'samples': model.classify([samples])[0].label,
       'sample_rate': model.feature_settings.sample_rate,
       'imported': sorted(m for m in ('trainer', 'input_pipeline', 'tensorflow', 'orbax')
                          if any(k == m or k.startswith(m + '.') for k in sys.modules))}
print(json.dumps(out))
'''


@pytest.fixture(scope='module')
def recordings(tmp_path_factory):
  return testing.write_toy_recordings(tmp_path_factory.mktemp('tones'))


@pytest.fixture(scope='module')
def trained(recordings, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('tone_run') / 'run')
  result = loop.train_and_evaluate(tasks.build(testing.tiny_feature_config(recordings)), workdir)
  return workdir, result


def test_trains_saves_feature_settings_and_evaluates(trained, recordings):
  workdir, result = trained
  rows = metrics.read_metrics(workdir)
  evals = {r['step']: r['valid_accuracy'] for r in rows if 'valid_accuracy' in r}
  assert sorted(evals) == [6, NUM_STEPS]
  assert result['valid_accuracy'] == evals[NUM_STEPS] == 1.0
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  assert evals[ckpt.best_step()] == max(evals.values())
  meta = ckpt.read_meta(NUM_STEPS)
  ckpt.close()
  assert meta['model_inputs'] == {'num_features': 12, 'num_classes': 3}
  settings = features_lib.load(f'{workdir}/tokenizer')
  assert settings.num_mel_bands == 12 and len(settings.mean) == len(settings.std) == 12
  assert 'features_fingerprint' in meta['signature']
  scored = evaluation.evaluate(tasks.build(testing.tiny_feature_config(
      recordings, mode='evaluate', eval_split='valid', checkpoint='latest')),
      workdir, tasks.task_class)
  assert scored['valid_accuracy'] == 1.0
  assert scored['valid_loss'] == pytest.approx(result['valid_loss'], rel=1e-4)


def test_a_bad_recording_is_a_one_line_error_naming_it(recordings, tmp_path):
  bad = tmp_path / 'bad'
  shutil.copytree(recordings, bad)
  testing.write_wav(bad / '1_synth_3.wav', np.zeros(800), channels=2)
  with pytest.raises(input_pipeline.errors.MalformedLineError,
                     match=r'1_synth_3.wav has 2 channels; only mono'):
    tasks.build(testing.tiny_feature_config(bad)).load_datasets(str(tmp_path / 'run'))


def test_resume_and_a_changed_front_end_is_refused(trained, recordings, tmp_path):
  workdir = tmp_path / 'resumed'
  shutil.copytree(trained[0], workdir)
  loop.train_and_evaluate(tasks.build(testing.tiny_feature_config(
      recordings, num_train_steps=NUM_STEPS + 2)), str(workdir))
  steps = [r['step'] for r in metrics.read_metrics(workdir) if 'train_accuracy' in r]
  assert steps == list(range(1, NUM_STEPS + 3))
  with pytest.raises(errors.CheckpointMismatchError, match='hop_length'):
    loop.train_and_evaluate(tasks.build(testing.tiny_feature_config(
        recordings, num_train_steps=NUM_STEPS + 4, data__features__hop_length=40)),
        str(workdir))


@pytest.mark.slow
def test_classify_cli_and_export_in_a_fresh_process(trained, recordings, tmp_path):
  workdir, _ = trained
  paths = [str(recordings / f'{label}_synth_1.wav') for label in TONES]
  proc = testing.run([sys.executable, str(testing.REPO_ROOT / 'classify.py'),
                      f'--workdir={workdir}', '--checkpoint=latest', *paths])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert [line.split('\t')[0] for line in proc.stdout.splitlines()] == list(TONES)
  assert 'classified 3 of 3 lines' in proc.stderr
  in_process = tasks.load(workdir, 'latest', 'classification').classify(paths)
  # A stereo file: an input-pipeline error naming it, which classify.py
  # (trainer.cli.errors_as_messages) prints as one line.
  stereo = tmp_path / 'stereo.wav'
  testing.write_wav(stereo, np.zeros(800), channels=2)
  with pytest.raises(input_pipeline.errors.InputPipelineError,
                     match=f'^{stereo} has 2 channels; only mono is read'):
    tasks.load(workdir, 'latest', 'classification').classify([str(stereo)])
  out = tmp_path / 'export'
  trainer_export.export(workdir, out, 'latest')
  fresh = subprocess.run([sys.executable, '-c', FRESH, str(out), json.dumps(paths)],
                         env=testing.python_env(), cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, check=False)
  assert fresh.returncode == 0, fresh.stderr[-3000:]
  result = json.loads(fresh.stdout.strip().splitlines()[-1])
  assert result['imported'] == [] and result['sample_rate'] == RATE
  assert [p[0] for p in result['paths']] == list(TONES)
  assert result['samples'] == '0'
  for (_, probabilities), expected in zip(result['paths'], in_process):
    assert probabilities == pytest.approx(expected.probabilities, abs=1e-5)


def write_idx(path, array, magic):
  header = struct.pack('>i', magic) + struct.pack(f'>{array.ndim}i', *array.shape)
  path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_mnist_rows_trains_on_idx_files(tmp_path):
  rng = np.random.default_rng(0)
  for prefix, n in (('train', 24), ('t10k', 6)):
    labels = np.arange(n) % 2
    images = rng.integers(0, 40, (n, 28, 28))
    images[labels == 1, 10:18] = 255  # Class 1: a bright band of rows.
    write_idx(tmp_path / f'{prefix}-images-idx3-ubyte.gz', images, 2051)
    write_idx(tmp_path / f'{prefix}-labels-idx1-ubyte.gz', labels, 2049)
  config = testing.load_config('mnist_rows')
  testing.apply_overrides(config, dict(
      num_epochs=0, num_train_steps=3, eval_every_steps=3, checkpoint_every_steps=3,
      model__embedding_size=8, model__hidden_size=8, data__data_dir=str(tmp_path),
      data__valid_size=6, data__batch_size=6, data__eval_batch_size=6, data__prefetch=0))
  result = loop.train_and_evaluate(tasks.build(config), str(tmp_path / 'run'))
  assert 0.0 <= result['valid_accuracy'] <= 1.0 and np.isfinite(result['valid_loss'])
  assert config.data.max_length == 784  # :pixels fits; rows are 28 steps.
  np.save(tmp_path / 'image.npy', images[0])
  predictions = tasks.load(str(tmp_path / 'run'), 'latest', 'classification').classify(
      [str(tmp_path / 'image.npy'), ''])
  assert predictions[0].label in ('0', '1') and predictions[1] is None
  assert sum(predictions[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)
  config.data.data_dir = str(tmp_path / 'no_mnist')
  with pytest.raises(errors.ConfigError, match='no_mnist.*is not a directory of MNIST'):
    tasks.build(config).load_datasets(str(tmp_path / 'run2'))
