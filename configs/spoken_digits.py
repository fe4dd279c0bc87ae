"""Free Spoken Digit Dataset: a biLSTM over log-mel frames on 2 CPU cores.

  python train.py --config=configs/spoken_digits.py --workdir=/tmp/fsdd
  python train.py --config=configs/spoken_digits.py --workdir=/tmp/fsdd \
      --config.mode=evaluate --config.eval_split=valid --config.checkpoint=best
  python classify.py --workdir=/tmp/fsdd 0_george_0.wav 7_jackson_3.wav
  python export.py --workdir=/tmp/fsdd --out=/tmp/fsdd_export

The 2,700 recordings (8 kHz, 16-bit mono, ``{digit}_{speaker}_{index}.wav``)
are in ``data.data_dir`` (default ``../shared/data/fsdd/recordings`` beside
the repository). Splits by recording index: valid = 5-9, train = 10-49
(index 0-4 is FSDD's test split, held out). 40 log-mel bands of 25 ms
windows every 10 ms, normalised by the training frames' mean and std
(saved as workdir/tokenizer/features.json). ``:tfds`` reads TFDS
``spoken_digit`` instead (prepared in ``data.tfds_data_dir``).
"""

import os

from trainer import tasks

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.normpath(os.path.join(_REPO, '..', 'shared', 'data', 'fsdd',
                                         'recordings'))


def get_config(variant: str = 'dir'):
  """The FSDD config: 'dir' (default, the .wav directory) or 'tfds'."""
  if variant not in ('dir', 'tfds'):
    raise ValueError(f"Unknown spoken_digits variant {variant!r}; use 'dir' or 'tfds'.")
  config = tasks.default_config('feature_classification')
  config.task = 'feature_classification'

  # 8 epochs over the 2,400 training recordings (75 batches of 32 each).
  config.num_epochs = 8
  config.log_every_steps = 50
  # Validation accuracy every epoch (0) and at the end; the best checkpoint
  # is the one with the highest validation accuracy.
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 1000
  config.progress_every_secs = 60.0

  # Dense projection of the 40 features to 64, a bidirectional LSTM (2 x 128),
  # mean-pooled over the valid frames, then the 10-way output.
  config.model.embedding_size = 64
  config.model.hidden_size = 128
  config.model.num_layers = 1
  config.model.bidirectional = True
  config.model.pooling = 'mean'
  config.model.layer_norm = False

  # Adam 3e-3, cosine-decayed to 0 over the run; clipped gradients.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 3e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 0
  config.optimizer.max_grad_norm = 5.0

  # The recordings and how their names give label and index (FSDD's).
  config.data.source = 'audio_dir' if variant == 'dir' else 'tfds_spoken_digit'
  config.data.data_dir = DATA_DIR if variant == 'dir' else ''
  config.data.index_ranges = {'train': (10, 49), 'valid': (5, 9)}
  # Front end: 8 kHz; 25 ms Hann windows (200 samples) every 10 ms (80), a
  # 256-point FFT, 40 HTK-mel bands from 20 Hz to 4 kHz, log(power + 1e-6).
  config.data.features.sample_rate = 8000
  config.data.features.window_length = 200
  config.data.features.hop_length = 80
  config.data.features.n_fft = 256
  config.data.features.num_mel_bands = 40
  config.data.features.fmin = 20.0
  config.data.features.fmax = 0.0  # The Nyquist frequency.
  config.data.features.num_mfcc = 0  # The log-mel bands themselves.
  # 32 recordings per batch; batch widths in frames (a recording is <= 2.3 s:
  # ~230 frames).
  config.data.batch_size = 32
  config.data.eval_batch_size = 100
  config.data.max_length = 256
  config.data.bucket_boundaries = (32, 48, 64, 96, 128)
  return config
