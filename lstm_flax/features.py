"""The audio front end: WAV files -> normalised log-mel (or MFCC) frames.

The audio analogue of ``lstm_flax.tokenizer``: a run saves its
:class:`FeatureSettings` (front-end parameters plus the training split's
per-feature mean and std) as ``features.json`` in a directory, and an
exported model reads them back with :func:`load` to classify raw audio with
numpy alone (no TensorFlow, no trainer)::

  settings = features.load(export_dir)
  samples, rate = features.read_wav('0_george_0.wav', settings.sample_rate)
  frames = settings.featurize(samples)  # float32 [frames, features]

Conventions (numpy, float64 inside, float32 out):

* Frames of ``window_length`` samples every ``hop_length`` samples, no
  centring; a signal shorter than a window is zero-padded to one frame. Each
  frame is multiplied by a periodic Hann window and zero-padded to ``n_fft``
  for the real FFT; the power spectrum ``|X|^2`` has ``n_fft // 2 + 1`` bins.
* Mel scale: the HTK formula ``mel(f) = 2595 log10(1 + f / 700)`` (so
  ``mel(1000 Hz) = 1000``). ``num_mel_bands`` triangles, linear in mel, whose
  edges are equally spaced in mel from ``fmin`` to ``fmax`` (TensorFlow's
  ``tf.signal.linear_to_mel_weight_matrix``, DC bin weight 0, unnormalised).
* ``log(mel power + log_offset)``; with ``num_mfcc``, the first
  ``num_mfcc`` coefficients of the orthonormal DCT-II of the log-mel bands.
* Normalisation ``(x - mean) / std`` per feature, when ``mean``/``std`` are
  set (:meth:`FeatureSettings.with_statistics`, on the training split).

:func:`read_wav` reads 16-bit PCM mono only and refuses another sample rate
than the expected one (it does not resample): resample the files first
(e.g. ``sox in.wav -r 8000 out.wav``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import wave
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import numpy as np

METADATA_FILE = 'features.json'


def read_wav(path: str | os.PathLike[str],
             sample_rate: Optional[int] = None) -> tuple[np.ndarray, int]:
  """``(samples float32 [n] in [-1, 1), sample_rate)`` of a 16-bit PCM mono
  WAV file.

  Raises:
    ValueError: (one line naming the file) not a RIFF/WAVE file, not 16-bit
      PCM, not mono, another rate than ``sample_rate``, no samples, or
      fewer sample bytes than the header announces (truncated).
  """
  try:
    with wave.open(os.fspath(path), 'rb') as f:
      channels, width, rate, count = (f.getnchannels(), f.getsampwidth(),
                                      f.getframerate(), f.getnframes())
      data = f.readframes(count)
  except (wave.Error, EOFError) as e:
    raise ValueError(f'{path} is not a readable RIFF/WAVE file ({e}); give a '
                     '16-bit PCM mono .wav file.') from None
  if channels != 1:
    raise ValueError(f'{path} has {channels} channels; only mono is read. Mix '
                     'it down to one channel first.')
  if width != 2:
    raise ValueError(f'{path} has {8 * width}-bit samples; only 16-bit PCM is '
                     'read. Convert it first.')
  if sample_rate is not None and rate != sample_rate:
    raise ValueError(f'{path} has sample rate {rate} Hz, expected '
                     f'{sample_rate} Hz; resample it first (no resampling is '
                     'done here).')
  if count == 0:
    raise ValueError(f'{path} has no samples (empty recording).')
  if len(data) != 2 * count:
    raise ValueError(f'{path} is truncated: its header announces {count} '
                     f'samples but it holds {len(data) // 2}.')
  samples = np.frombuffer(data, '<i2').astype(np.float32) / 32768.0
  return samples, rate


def hz_to_mel(hz: Any) -> np.ndarray:
  """HTK mel scale: ``2595 log10(1 + hz / 700)`` (float64)."""
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: Any) -> np.ndarray:
  """Inverse of :func:`hz_to_mel` (float64)."""
  return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_matrix(num_bands: int, n_fft: int, sample_rate: int, fmin: float,
               fmax: float) -> np.ndarray:
  """float64 ``[n_fft // 2 + 1, num_bands]`` triangular mel filterbank
  (HTK mel, triangles linear in mel; the DC bin has weight 0)."""
  bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)  # [K] Hz
  mel = hz_to_mel(bins)[:, None]  # [K, 1]
  edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_bands + 2)
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # [M] each
  rising = (mel - lower) / (centre - lower)
  falling = (upper - mel) / (upper - centre)
  weights = np.maximum(0.0, np.minimum(rising, falling))  # [K, M]
  weights[0] = 0.0
  return weights


def dct_matrix(num_inputs: int, num_outputs: int) -> np.ndarray:
  """float64 ``[num_inputs, num_outputs]`` orthonormal DCT-II:
  ``y = x @ D`` gives ``y[k] = s_k sum_n x[n] cos(pi k (2n + 1) / (2N))``."""
  n = np.arange(num_inputs)[:, None]
  k = np.arange(num_outputs)[None, :]
  scale = np.where(k == 0, np.sqrt(1.0 / num_inputs), np.sqrt(2.0 / num_inputs))
  return scale * np.cos(np.pi * k * (2 * n + 1) / (2 * num_inputs))


def hann_window(length: int) -> np.ndarray:
  """Periodic Hann window ``0.5 - 0.5 cos(2 pi n / length)``, float64 [length]."""
  return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def frame(samples: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
  """float64 ``[frames, window_length]`` frames of ``samples [n]``
  (``1 + (n - window_length) // hop_length`` of them, at least 1)."""
  x = np.asarray(samples, np.float64)
  if len(x) < window_length:
    x = np.pad(x, (0, window_length - len(x)))
  count = 1 + (len(x) - window_length) // hop_length
  index = np.arange(count)[:, None] * hop_length + np.arange(window_length)
  return x[index]


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
  """Front-end parameters and the normalisation statistics (JSON-able).

  Attributes:
    sample_rate: expected sample rate in Hz.
    window_length: samples per frame.
    hop_length: samples between frame starts.
    n_fft: FFT size (>= window_length).
    num_mel_bands: mel triangles.
    fmin: lower edge in Hz.
    fmax: upper edge in Hz (None: the Nyquist frequency).
    log_offset: added to the mel power before the log.
    num_mfcc: if set, this many DCT-II coefficients instead of the log-mel
      bands.
    mean: per-feature mean (None: no normalisation).
    std: per-feature standard deviation (set with ``mean``).
  """

  sample_rate: int = 8000
  window_length: int = 200
  hop_length: int = 80
  n_fft: int = 256
  num_mel_bands: int = 40
  fmin: float = 20.0
  fmax: Optional[float] = None
  log_offset: float = 1e-6
  num_mfcc: Optional[int] = None
  mean: Optional[tuple[float, ...]] = None
  std: Optional[tuple[float, ...]] = None

  def __post_init__(self):
    for name in ('sample_rate', 'window_length', 'hop_length', 'n_fft',
                 'num_mel_bands'):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'FeatureSettings.{name} must be a positive int; got {value!r}.')
    if self.n_fft < self.window_length:
      raise ValueError(f'FeatureSettings.n_fft={self.n_fft} must be >= '
                       f'window_length={self.window_length}.')
    if not 0 <= self.fmin < self.upper_hz <= self.sample_rate / 2:
      raise ValueError(
          f'FeatureSettings needs 0 <= fmin ({self.fmin}) < fmax ({self.upper_hz}) '
          f'<= sample_rate / 2 ({self.sample_rate / 2}).')
    if not self.log_offset > 0:
      raise ValueError(f'FeatureSettings.log_offset must be > 0; got {self.log_offset!r}.')
    if self.num_mfcc is not None and not 1 <= self.num_mfcc <= self.num_mel_bands:
      raise ValueError(f'FeatureSettings.num_mfcc={self.num_mfcc!r} must be None or in '
                       f'[1, num_mel_bands={self.num_mel_bands}].')
    if (self.mean is None) != (self.std is None):
      raise ValueError('FeatureSettings.mean and .std must be set together.')
    if self.mean is not None:
      object.__setattr__(self, 'mean', tuple(float(v) for v in self.mean))
      object.__setattr__(self, 'std', tuple(float(v) for v in self.std))
      if not len(self.mean) == len(self.std) == self.num_features:
        raise ValueError(f'FeatureSettings.mean and .std need {self.num_features} values '
                         f'(one per feature); got {len(self.mean)} and {len(self.std)}.')
      if min(self.std) <= 0:
        raise ValueError('FeatureSettings.std values must be > 0.')

  @property
  def upper_hz(self) -> float:
    """``fmax``, or the Nyquist frequency."""
    return self.sample_rate / 2 if self.fmax is None else float(self.fmax)

  @property
  def num_features(self) -> int:
    """``F``: ``num_mfcc`` or ``num_mel_bands``."""
    return self.num_mfcc or self.num_mel_bands

  def unnormalised(self, samples: np.ndarray) -> np.ndarray:
    """float64 ``[frames, F]`` log-mel (or MFCC) features of ``samples [n]``."""
    frames = frame(samples, self.window_length, self.hop_length)
    spectrum = np.fft.rfft(frames * hann_window(self.window_length), n=self.n_fft)
    power = spectrum.real ** 2 + spectrum.imag ** 2  # [frames, n_fft // 2 + 1]
    mel = power @ mel_matrix(self.num_mel_bands, self.n_fft, self.sample_rate,
                             self.fmin, self.upper_hz)
    logmel = np.log(mel + self.log_offset)  # [frames, M]
    if self.num_mfcc:
      return logmel @ dct_matrix(self.num_mel_bands, self.num_mfcc)
    return logmel

  def featurize(self, samples: np.ndarray) -> np.ndarray:
    """float32 ``[frames, F]`` features of ``samples [n]``, normalised."""
    x = self.unnormalised(samples)
    if self.mean is not None:
      x = (x - np.asarray(self.mean)) / np.asarray(self.std)
    return x.astype(np.float32)

  def with_statistics(self, features: Iterable[np.ndarray],
                      min_std: float = 1e-3) -> FeatureSettings:
    """These settings with ``mean``/``std`` over every frame of
    ``features`` (unnormalised ``[frames, F]`` arrays of the training
    split); ``std`` is floored at ``min_std``."""
    total = np.zeros(self.num_features)
    squares = np.zeros(self.num_features)
    count = 0
    for x in features:
      x = np.asarray(x, np.float64)
      total += x.sum(0)
      squares += (x * x).sum(0)
      count += len(x)
    if not count:
      raise ValueError('FeatureSettings.with_statistics got no frames.')
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return dataclasses.replace(self, mean=tuple(mean),
                               std=tuple(np.maximum(std, min_std)))

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=1)

  @classmethod
  def from_json(cls, text: str) -> FeatureSettings:
    values = json.loads(text)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f'Feature settings have unknown keys {unknown}.')
    return cls(**values)

  def save(self, directory: str | os.PathLike[str]) -> Path:
    """Writes ``directory/features.json``; returns its path."""
    path = Path(directory) / METADATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(self.to_json())
    return path


def load(directory: str | os.PathLike[str]) -> FeatureSettings:
  """The settings saved in ``directory/features.json``."""
  path = Path(directory) / METADATA_FILE
  try:
    text = path.read_text()
  except OSError as e:
    raise FileNotFoundError(f'{path} cannot be read ({e.strerror}); the directory '
                            'has no saved feature settings.') from None
  try:
    return FeatureSettings.from_json(text)
  except (ValueError, TypeError) as e:
    raise ValueError(f'{path}: {e}') from None
