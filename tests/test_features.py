"""lstm_flax.features: WAV reading and the log-mel / MFCC front end against
float64 direct computations (and TensorFlow's mel matrix when installed)."""

import wave

import numpy as np
import pytest

from lstm_flax import features


def write_wav(path, samples, rate=8000, channels=1):
  with wave.open(str(path), 'wb') as f:
    f.setnchannels(channels)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes(np.asarray(samples, '<i2').tobytes())
  return path


def test_read_wav_values(tmp_path):
  path = write_wav(tmp_path / 'a.wav', [0, 16384, -32768, 32767])
  samples, rate = features.read_wav(path, 8000)
  assert rate == 8000 and samples.dtype == np.float32
  np.testing.assert_array_equal(samples, [0.0, 0.5, -1.0, 32767 / 32768])


def test_read_wav_errors(tmp_path):
  stereo = write_wav(tmp_path / 's.wav', [1, 2, 3, 4], channels=2)
  with pytest.raises(ValueError, match=r's\.wav has 2 channels'):
    features.read_wav(stereo)
  with pytest.raises(ValueError, match=r'r\.wav has sample rate 16000 Hz, expected 8000'):
    features.read_wav(write_wav(tmp_path / 'r.wav', [1, 2], rate=16000), 8000)
  with pytest.raises(ValueError, match=r'e\.wav has no samples'):
    features.read_wav(write_wav(tmp_path / 'e.wav', []))
  good = write_wav(tmp_path / 'g.wav', np.arange(100)).read_bytes()
  (tmp_path / 't.wav').write_bytes(good[:-10])
  with pytest.raises(ValueError, match=r't\.wav is truncated: .* 100 samples but it holds 95'):
    features.read_wav(tmp_path / 't.wav')
  (tmp_path / 'n.wav').write_bytes(b'ID3' + bytes(60))
  with pytest.raises(ValueError, match=r'n\.wav is not a readable RIFF/WAVE'):
    features.read_wav(tmp_path / 'n.wav')
  (tmp_path / 'h.wav').write_bytes(good[:20])  # Header cut short.
  with pytest.raises(ValueError, match=r'h\.wav is not a readable RIFF/WAVE'):
    features.read_wav(tmp_path / 'h.wav')


def test_mel_scale_and_filterbank_known_points():
  np.testing.assert_allclose(features.hz_to_mel(1000.0), 1000.0, atol=0.02)  # HTK: 999.986.
  np.testing.assert_allclose(features.mel_to_hz(features.hz_to_mel([0, 440, 3999])),
                             [0, 440, 3999], atol=1e-9)
  # Band edges chosen so that the centres fall on FFT bins: n_fft 16 at 16 Hz
  # gives bins every 1 Hz; 2 bands between mel(1) and mel(4) at 3 equal mel steps.
  edges_hz = features.mel_to_hz(np.linspace(features.hz_to_mel(1.0),
                                            features.hz_to_mel(7.0), 4))
  m = features.mel_matrix(2, 16, 16, 1.0, 7.0)
  assert m.shape == (9, 2)
  for band in range(2):
    low, centre, high = edges_hz[band:band + 3]
    for k in range(9):
      if low < k < centre:
        expected = (features.hz_to_mel(k) - features.hz_to_mel(low)) / (
            features.hz_to_mel(centre) - features.hz_to_mel(low))
      elif centre <= k < high:
        expected = (features.hz_to_mel(high) - features.hz_to_mel(k)) / (
            features.hz_to_mel(high) - features.hz_to_mel(centre))
      else:
        expected = 0.0
      np.testing.assert_allclose(m[k, band], expected, atol=1e-12, err_msg=(k, band))
  # A filter is 1 at its centre frequency when a bin sits there.
  m = features.mel_matrix(1, 8, 8, features.mel_to_hz(0.0),
                          features.mel_to_hz(2 * features.hz_to_mel(2.0)))
  np.testing.assert_allclose(m[2, 0], 1.0, atol=1e-12)


def test_featurize_matches_direct_dft():
  rng = np.random.default_rng(0)
  samples = rng.uniform(-1, 1, 37)
  s = features.FeatureSettings(sample_rate=16, window_length=8, hop_length=5,
                               n_fft=10, num_mel_bands=3, fmin=1.0, fmax=7.0,
                               log_offset=1e-3, num_mfcc=2)
  mel = features.mel_matrix(3, 10, 16, 1.0, 7.0)
  frames = 1 + (37 - 8) // 5
  expected = np.zeros((frames, 2))
  for t in range(frames):
    power = np.zeros(6)
    for k in range(6):
      total = 0j
      for n in range(8):
        w = 0.5 - 0.5 * np.cos(2 * np.pi * n / 8)
        total += samples[5 * t + n] * w * np.exp(-2j * np.pi * k * n / 10)
      power[k] = abs(total) ** 2
    logmel = np.log(power @ mel + 1e-3)
    for c in range(2):
      scale = np.sqrt((1 if c == 0 else 2) / 3)
      expected[t, c] = scale * sum(logmel[m] * np.cos(np.pi * c * (2 * m + 1) / 6)
                                   for m in range(3))
  np.testing.assert_allclose(s.unnormalised(samples), expected, rtol=1e-10, atol=1e-10)
  normed = s.with_statistics([expected[:3], expected[3:]])
  out = normed.featurize(samples)
  assert out.dtype == np.float32 and out.shape == (frames, 2)
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std(0), 1.0, atol=1e-5)
  # A signal shorter than a window is one zero-padded frame.
  assert s.featurize(samples[:3]).shape == (1, 2)


def test_settings_save_load_and_errors(tmp_path):
  s = features.FeatureSettings(num_mel_bands=4).with_statistics([np.ones((3, 4))])
  s.save(tmp_path)
  assert features.load(tmp_path) == s
  assert s.std == (1e-3,) * 4 and s.mean == (1.0,) * 4
  with pytest.raises(ValueError, match='num_mfcc=9 must be None or in'):
    features.FeatureSettings(num_mel_bands=4, num_mfcc=9)
  with pytest.raises(ValueError, match='fmax'):
    features.FeatureSettings(fmax=5000.0)
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'features.json').write_text('{"hop": 3}')
  with pytest.raises(ValueError, match=r"features\.json: .*unknown keys \['hop'\]"):
    features.load(tmp_path / 'bad')
  with pytest.raises(FileNotFoundError, match='no saved feature settings'):
    features.load(tmp_path / 'missing')


def test_mel_matrix_matches_tensorflow():
  tf = pytest.importorskip('tensorflow')
  ours = features.mel_matrix(40, 256, 8000, 20.0, 4000.0)
  theirs = tf.signal.linear_to_mel_weight_matrix(40, 129, 8000, 20.0, 4000.0,
                                                 dtype=tf.float64).numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-9)
