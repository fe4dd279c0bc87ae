"""input_pipeline.audio and feature_batches: FSDD-style directories and TFDS
spoken_digit (mocked) to cached, normalised, padded frame batches."""

import wave
from pathlib import Path

import numpy as np
import pytest

from input_pipeline import audio, errors, hosts
from lstm_flax import features as features_lib

SETTINGS = features_lib.FeatureSettings(sample_rate=8000, window_length=64, hop_length=32,
                                        n_fft=64, num_mel_bands=6)
SINGLE = hosts.HostShard(0, 1)


def _write(path: Path, samples: np.ndarray) -> Path:
  with wave.open(str(path), 'wb') as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(8000)
    f.writeframes(np.asarray(samples, '<i2').tobytes())
  return path


def _recordings(directory: Path) -> dict[str, np.ndarray]:
  """6 files: digits 3 and 7, indexes 5, 10 and 11, 100-300 samples."""
  rng = np.random.default_rng(0)
  directory.mkdir()
  written = {}
  for digit in (3, 7):
    for index in (5, 10, 11):
      samples = rng.integers(-3000, 3000, 100 + 20 * index + digit)
      name = f'{digit}_theo_{index}.wav'
      _write(directory / name, samples)
      written[name] = samples / 32768.0
  return written


def test_directory_split_cache_and_batches(tmp_path, monkeypatch):
  written = _recordings(tmp_path / 'rec')
  # Another process only waits for process 0's entry; it never featurises.
  with pytest.raises(errors.WaitTimeoutError, match='audio-train'):
    audio.load_directory(tmp_path / 'rec', SETTINGS, tmp_path / 'cache',
                         process_index=1, timeout_s=0.2)
  assert not list((tmp_path / 'cache').glob('*/*.npy'))
  splits = audio.load_directory(tmp_path / 'rec', SETTINGS, tmp_path / 'cache')
  train, valid = splits['train'], splits['valid']
  assert train.labels.tolist() == [3, 3, 7, 7] and valid.labels.tolist() == [3, 7]
  expected = [SETTINGS.unnormalised(written[n]) for n in
              ('3_theo_10.wav', '3_theo_11.wav', '7_theo_10.wav', '7_theo_11.wav')]
  np.testing.assert_allclose(train.frames, np.concatenate(expected), rtol=1e-5, atol=1e-5)
  assert train.lengths.tolist() == [len(x) for x in expected]
  assert isinstance(train.frames.base, np.memmap) or isinstance(train.frames, np.memmap)
  # A second start reads no audio.
  monkeypatch.setattr(features_lib, 'read_wav', lambda *a: pytest.fail('re-read'))
  again = audio.load_directory(tmp_path / 'rec', SETTINGS, tmp_path / 'cache',
                               process_index=1, timeout_s=0.2)
  np.testing.assert_array_equal(again['train'].frames, train.frames)
  settings = audio.with_train_statistics(SETTINGS, train)
  np.testing.assert_allclose(settings.mean, np.concatenate(expected).mean(0), rtol=1e-5)
  batcher = train.batcher(SINGLE, mean=np.array(settings.mean), std=np.array(settings.std),
                          batch_size=3, max_length=16, boundaries=(8,), training=False)
  first, second = list(batcher.iterate())
  assert first['features'].shape == (3, 16, 6) and first['features'].dtype == np.float32
  assert second['example_index'].tolist() == [3, -1, -1]
  row, n = first['example_index'][0], first['lengths'][0]
  np.testing.assert_allclose(first['features'][0, :n], settings.featurize(
      written[['3_theo_10.wav', '3_theo_11.wav', '7_theo_10.wav', '7_theo_11.wav'][row]]),
      rtol=1e-4, atol=1e-4)
  assert not first['features'][0, n:].any()
  assert first['labels'].tolist() == [train.labels[i] for i in first['example_index']]


def test_bad_files_are_named_and_nothing_is_cached(tmp_path):
  _recordings(tmp_path / 'rec')
  good = (tmp_path / 'rec' / '3_theo_10.wav').read_bytes()
  (tmp_path / 'rec' / '7_theo_12.wav').write_bytes(good[:-7])
  with pytest.raises(ValueError, match=r'7_theo_12\.wav is truncated'):
    audio.load_directory(tmp_path / 'rec', SETTINGS, tmp_path / 'cache')
  entries = list((tmp_path / 'cache').glob('audio-train-*'))
  assert entries and not list(entries[0].iterdir())  # No marker, no arrays, no temps.
  (tmp_path / 'rec' / '7_theo_12.wav').unlink()
  (tmp_path / 'rec' / 'seven.wav').write_bytes(good)
  with pytest.raises(errors.MalformedLineError,
                     match=r"'seven\.wav' does not match the file-name pattern"):
    audio.load_directory(tmp_path / 'rec', SETTINGS, tmp_path / 'cache')


def _spoken_digit(self, split, **kwargs):
  """A mock ``as_dataset`` of spoken_digit: 4 examples, indexes 5 and 10."""
  del self, split, kwargs
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  return tf.data.Dataset.from_generator(
      lambda: ({'audio': rng.integers(-999, 999, 150 + i), 'label': i % 2,
                'audio/filename': f'{i % 2}_lucas_{5 if i < 2 else 10}.wav'}
               for i in range(4)),
      output_signature={'audio': tf.TensorSpec([None], tf.int64),
                        'label': tf.TensorSpec([], tf.int64),
                        'audio/filename': tf.TensorSpec([], tf.string)})


def test_tfds_spoken_digit(tmp_path):
  tf = pytest.importorskip('tensorflow')
  tf.config.set_visible_devices([], 'GPU')
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(as_dataset_fn=_spoken_digit):
    splits = audio.load_tfds('spoken_digit', SETTINGS, tmp_path)
  assert splits['train'].labels.tolist() == [0, 1]
  assert splits['valid'].labels.tolist() == [0, 1]
  assert splits['train'].lengths.tolist() == [1 + (152 - 64) // 32, 1 + (153 - 64) // 32]
