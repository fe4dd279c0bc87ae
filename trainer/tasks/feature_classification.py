"""Classification of real-valued frame sequences (spoken digits, MNIST rows):
``lstm_flax.feature_models.FeatureSequenceClassifier``.

``config.task = 'feature_classification'``; ``config.data.source`` picks the
reader:

* ``'audio_dir'``: a directory of 16-bit PCM mono ``.wav`` files
  (``input_pipeline.audio.load_directory``; label and index from the file
  name, ``data.index_ranges`` split name -> inclusive index range);
* ``'tfds_spoken_digit'`` (or ``'tfds'`` with ``data.tfds_name``): TFDS
  ``spoken_digit``, selected the same way (``input_pipeline.audio.load_tfds``);
* ``'idx'``: MNIST IDX files in ``data.data_dir``
  (``input_pipeline.idx.load_directory``; the last ``data.valid_size``
  training images are 'valid', ``t10k`` is 'test');
* ``'tfds_mnist'``: TFDS ``mnist`` (``input_pipeline.idx.load_tfds``).

Audio becomes log-mel (or MFCC) frames (``data.features``:
``lstm_flax.features.FeatureSettings``) cached once per split; the per-feature
mean and std of the training split's frames normalise every split. The
settings with those statistics are saved as ``workdir/tokenizer/features.json``
(beside the run's label "tokenizer": a word vocabulary ``<eos> <unk>`` + the
label names, which the trainer saves and checks like any tokenizer) and are
part of the checkpoint signature: a resumed run whose data or settings give
other statistics is refused. Images are uint8 rows (or pixels) scaled by
1/255.

Loss, accuracy and the best checkpoint (highest ``valid_accuracy``) are the
text classifier's (:class:`ClassificationTask`). Inference (``classify.py``):
:class:`FeatureClassifier` classifies ``.wav`` paths (audio runs) or ``.npy``
images ``[rows, cols]`` (image runs), one per input line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from input_pipeline import (audio, errors as input_errors, hosts, idx, prefetch,
                            sharded_encoding, tokenizers)
from input_pipeline.classification_batching import DEFAULT_BOUNDARIES
from input_pipeline.feature_batches import FeatureBatcher, FeatureSplit
from lstm_flax import features as features_lib, inference as inference_lib
from lstm_flax.feature_models import FeatureSequenceClassifier
from lstm_flax.tokenizer import EOS, UNK, WordTokenizer
from trainer import config_lib, errors, inference
from trainer import task_base as base
from trainer.tasks.classification import ClassificationDatasets, ClassificationTask

AUDIO_SOURCES = ('audio_dir', 'tfds_spoken_digit', 'tfds')
IMAGE_SOURCES = ('idx', 'tfds_mnist')
SOURCES = AUDIO_SOURCES + IMAGE_SOURCES


def default_data_config() -> ml_collections.ConfigDict:
  """The data section, every key with its default."""
  c = ml_collections.ConfigDict()
  # Reader: 'audio_dir', 'tfds_spoken_digit' / 'tfds' (audio), 'idx' or
  # 'tfds_mnist' (images).
  c.source = 'audio_dir'
  c.data_dir = ''  # audio_dir: the .wav directory; idx: the IDX directory.
  c.tfds_name = 'spoken_digit'  # tfds: the dataset ('spoken_digit').
  c.tfds_data_dir = ''  # tfds / tfds_mnist: where it is prepared ('': default).
  # Audio: file-name regex with groups 'label' and 'index' (FSDD's
  # {digit}_{speaker}_{index}.wav), the label names (class id order), and
  # split name -> inclusive index range.
  c.file_pattern = audio.FSDD_PATTERN
  c.labels = audio.FSDD_LABELS
  c.index_ranges = ml_collections.ConfigDict(
      {k: tuple(v) for k, v in audio.FSDD_SPLITS.items()})
  # Audio front end (lstm_flax.features.FeatureSettings): window and hop in
  # samples, FFT size, mel bands from fmin to fmax Hz (0: Nyquist), MFCCs
  # (0: the log-mel bands themselves).
  c.features = ml_collections.ConfigDict(dict(
      sample_rate=8000, window_length=200, hop_length=80, n_fft=256,
      num_mel_bands=40, fmin=20.0, fmax=0.0, log_offset=1e-6, num_mfcc=0))
  # Images: pixels per step (0: one row per step; 1: sequential MNIST),
  # the seed of the pixel permutation (-1: none; pMNIST), and the training
  # images kept for validation (idx: the last ones).
  c.pixels_per_step = 0
  c.permutation_seed = -1
  c.valid_size = 5000
  # tfds_mnist: split name -> TFDS split.
  c.tfds_splits = ml_collections.ConfigDict(
      {'train': 'train[:55000]', 'valid': 'train[55000:]', 'test': 'test'})
  # Batching (lengths in frames).
  c.batch_size = 32  # Global rows per training batch.
  c.eval_batch_size = 100  # Global rows per evaluation batch.
  c.max_length = 256  # Longer sequences are truncated.
  c.bucket_boundaries = DEFAULT_BOUNDARIES  # Batch widths (up to max_length).
  c.shuffle_seed = 0  # Seeds each epoch's shuffle (with the epoch number).
  c.cache_dir = ''  # '': workdir/data_cache.
  c.prefetch = 2  # Batches prepared ahead on a thread (0: none).
  return c


def feature_settings(data: Mapping[str, Any]) -> features_lib.FeatureSettings:
  """The front-end settings of ``data.features`` (no statistics)."""
  f = dict(data['features'])
  try:
    return features_lib.FeatureSettings(**{
        **f, 'fmax': float(f['fmax']) or None, 'num_mfcc': int(f['num_mfcc']) or None})
  except (TypeError, ValueError) as e:
    raise errors.ConfigError(f'data.features: {e}') from None


def _fingerprint(value: Any) -> str:
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass
class FeatureSource:
  """The loaded splits, their normalisation and the label "tokenizer"."""

  config: Mapping[str, Any]
  splits: dict[str, FeatureSplit]
  label_names: list[str]
  settings: features_lib.FeatureSettings | None  # Audio: with statistics.
  shard: hosts.HostShard

  @property
  def tokenizer(self) -> WordTokenizer:
    return label_tokenizer(self.label_names)

  @property
  def num_features(self) -> int:
    return int(self.splits['train'].frames.shape[1])

  @property
  def normalisation(self) -> tuple[np.ndarray | float, np.ndarray | float]:
    """(mean, std) per feature (audio) or scalars (pixels: 0, 255)."""
    if self.settings is not None:
      return np.asarray(self.settings.mean), np.asarray(self.settings.std)
    return 0.0, idx.PIXEL_STD

  def batcher(self, split: str, training: bool | None = None) -> FeatureBatcher:
    if split not in self.splits:
      raise errors.ConfigError(f'Split {split!r} was not loaded; loaded: '
                               f'{sorted(self.splits)} (data.source={self.config["source"]!r}).')
    training = split == 'train' if training is None else training
    mean, std = self.normalisation
    c = self.config
    return self.splits[split].batcher(
        self.shard, mean=mean, std=std,
        batch_size=c['batch_size' if training else 'eval_batch_size'],
        max_length=c['max_length'], boundaries=tuple(c['bucket_boundaries']),
        training=training, seed=c['shuffle_seed'])

  def train_batches(self, start_step: int = 0):
    return prefetch.prefetch(self.batcher('train').iterate(start_step), self.config['prefetch'])

  def eval_batches(self, split: str):
    return prefetch.prefetch(self.batcher(split, training=False).iterate(num_epochs=1),
                             self.config['prefetch'])


def label_tokenizer(label_names: Sequence[str]) -> WordTokenizer:
  """The run's "tokenizer": ``<eos> <unk>`` and the label names (what the
  trainer saves in ``workdir/tokenizer/`` and checks on resume)."""
  return WordTokenizer([EOS, UNK, *label_names])


class FeatureDatasets(ClassificationDatasets):
  """:class:`FeatureSource` for the trainer (no carry between batches)."""

  def model_inputs(self) -> dict[str, int]:
    return {'num_features': self.source.num_features,
            'num_classes': len(self.source.label_names)}

  def device_batch(self, local):
    return {k: local[k] for k in ('features', 'lengths', 'labels', 'example_index')}

  def signature(self) -> dict[str, Any]:
    settings = self.source.settings
    return {**super().signature(), 'features_fingerprint': _fingerprint(
        dataclasses.asdict(settings) if settings else list(map(float, self.source.normalisation)))}


def _load_audio(c: Mapping[str, Any], cache_dir: Path) -> tuple[dict[str, FeatureSplit], Any]:
  settings = feature_settings(c)
  ranges = {k: tuple(v) for k, v in dict(c['index_ranges']).items()}
  labels = tuple(c['labels'])
  # Process 0 featurises each split; the others wait for its cache entry.
  wait = {'process_index': hosts.resolve().process_index,
          'timeout_s': float(c.get('wait_timeout_s', 3600.0))}
  try:
    if c['source'] == 'audio_dir':
      if not c['data_dir']:
        raise errors.ConfigError("data.source='audio_dir' needs data.data_dir (the .wav directory).")
      splits = audio.load_directory(c['data_dir'], settings, cache_dir, ranges,
                                    c['file_pattern'], labels, **wait)
    else:
      name = 'spoken_digit' if c['source'] == 'tfds_spoken_digit' else c['tfds_name']
      splits = audio.load_tfds(name, settings, cache_dir, ranges,
                               data_dir=c['tfds_data_dir'] or None,
                               pattern=c['file_pattern'], labels=labels, **wait)
  except ValueError as e:  # read_wav's one-line errors name the file.
    if isinstance(e, (input_errors.InputPipelineError, errors.TrainerError)):
      raise
    raise input_errors.MalformedLineError(str(e)) from None
  if 'train' not in splits:
    raise errors.ConfigError(f'data.index_ranges names no train split ({sorted(ranges)}).')
  return splits, audio.with_train_statistics(settings, splits['train'])


def _load_images(c: Mapping[str, Any]) -> dict[str, FeatureSplit]:
  options = dict(pixels_per_step=int(c['pixels_per_step']) or None,
                 permutation_seed=None if c['permutation_seed'] < 0 else int(c['permutation_seed']))
  if c['source'] == 'tfds_mnist':
    return idx.load_tfds('mnist', dict(c['tfds_splits']), data_dir=c['tfds_data_dir'] or None,
                         **options)
  if not c['data_dir'] or not os.path.isdir(c['data_dir']):
    raise errors.ConfigError(
        f'data.data_dir={c["data_dir"]!r} is not a directory of MNIST IDX files '
        '(train-images-idx3-ubyte[.gz], ...); download them there, or use '
        "data.source='tfds_mnist'.")
  return idx.load_directory(c['data_dir'], valid_size=int(c['valid_size']), **options)


def _save_settings(settings: features_lib.FeatureSettings, workdir: str) -> None:
  """Saves ``workdir/tokenizer/features.json``, or checks it (resume)."""
  directory = Path(workdir) / tokenizers.TOKENIZER_DIR
  if (directory / features_lib.METADATA_FILE).is_file():
    saved = features_lib.load(directory)
    if saved != settings:
      differ = [f.name for f in dataclasses.fields(settings)
                if getattr(saved, f.name) != getattr(settings, f.name)]
      raise input_errors.VocabularyMismatchError(
          f'The feature settings or training-split statistics now differ from the ones saved '
          f'with this run in {directory / features_lib.METADATA_FILE} (fields {differ}); the '
          'saved model only fits those. Restore the data and data.features the run was '
          'started with, or use a fresh workdir.')
  elif hosts.resolve().process_index == 0:
    settings.save(directory)


class FeatureClassificationTask(ClassificationTask):
  """Frame sequences -> classes (``task='feature_classification'``)."""

  name = 'feature_classification'
  USAGE = ('a feature-sequence classifier (use classify.py with .wav or .npy paths, or '
           'train.py with --config.mode=evaluate)')
  FREE_KEYED = (*base.Task.FREE_KEYED, 'data.index_ranges')

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Model: the fields of lstm_flax.feature_models.FeatureSequenceClassifier
    # (documented there); features per frame and classes come from the data.
    config.model = config_lib.module_config(
        FeatureSequenceClassifier, exclude=('num_features', 'num_classes'),
        embedding_size=64, hidden_size=128)
    # Data: default_data_config() (every key documented there).
    config.data = default_data_config()
    return config

  def validate(self) -> None:
    base.Task.validate(self)
    c = self.config.data
    if c.source not in SOURCES:
      raise errors.ConfigError(f'data.source={c.source!r} is not one of {list(SOURCES)}.')
    for key in ('batch_size', 'eval_batch_size', 'max_length'):
      config_lib.positive(f'data.{key}', c[key])
    if c.source in AUDIO_SOURCES:
      feature_settings(c)

  def placeholder_model_inputs(self) -> dict[str, int]:
    return {'num_features': 4, 'num_classes': 2}

  def transfer_params(self, params):
    del params
    return None

  def load_datasets(self, workdir: str, eval_split: str | None = None) -> FeatureDatasets:
    c = self.config.data.to_dict()
    shard = hosts.resolve()
    start = time.perf_counter()
    settings = None
    if c['source'] in AUDIO_SOURCES:
      splits, settings = _load_audio(c, sharded_encoding.cache_dir(c, workdir))
      label_names = [str(n) for n in c['labels']]
    else:
      splits = _load_images(c)
      label_names = [str(i) for i in range(int(splits['train'].labels.max()) + 1)]
    logging.info('Feature data (%s) loaded in %.2f s: %s', c['source'],
                 time.perf_counter() - start, ', '.join(
                     f'{k}: {v.num_examples} examples, {len(v.frames)} frames of '
                     f'{v.frames.shape[1]}' for k, v in splits.items()))
    tokenizers.use_given(label_tokenizer(label_names), workdir)
    if settings is not None:
      _save_settings(settings, workdir)
    source = FeatureSource(c, splits, label_names, settings, shard)
    source.batcher('train')  # Checks batch_size against the examples.
    return FeatureDatasets(source, self.config, eval_split)

  def build_model(self, *, num_features: int, num_classes: int) -> FeatureSequenceClassifier:
    return FeatureSequenceClassifier(num_features=num_features, num_classes=num_classes,
                                     **self.config.model.to_dict())

  def init_variables(self, model, rng):
    args, kwargs = model.dummy_inputs()
    return model.init(rng, *args, **kwargs)['params']

  def loss_fn(self, model, params, carry, batch, reset, dropout_rng):
    return super().loss_fn(model, params, carry, _as_tokens(batch), reset, dropout_rng)

  def eval_fn(self, model, params, carry, batch):
    return super().eval_fn(model, params, carry, _as_tokens(batch))

  def inference_settings(self, workdir: str) -> dict[str, Any]:
    """The label names and how raw inputs become normalised frames."""
    restored = FeatureInputs.of_workdir(workdir, self.config.data.to_dict())
    return {'label_names': restored.label_names, **restored.settings_json()}

  def predictor(self, restored: inference.Restored) -> FeatureClassifier:
    return FeatureClassifier(restored.model, restored.params(),
                             FeatureInputs.of_workdir(restored.workdir, self.config.data.to_dict(),
                                                      restored.tokenizer),
                             restored.step)


def _as_tokens(batch: Mapping[str, Any]) -> dict[str, Any]:
  """The batch with the features where the text classifier's steps read
  their inputs (``tokens``), so its loss and metrics apply unchanged."""
  return {**batch, 'tokens': batch['features']}


@dataclasses.dataclass
class FeatureInputs:
  """How a run turns raw inputs into normalised frames: audio settings
  (with statistics) or the image layout, and the label names."""

  label_names: list[str]
  settings: features_lib.FeatureSettings | None
  data: Mapping[str, Any]

  @classmethod
  def of_workdir(cls, workdir: str, data: Mapping[str, Any],
                 tokenizer: WordTokenizer | None = None) -> FeatureInputs:
    """Those of the run in ``workdir`` (``data``: its data config;
    ``tokenizer``: its label tokenizer, if already loaded)."""
    directory = Path(workdir) / tokenizers.TOKENIZER_DIR
    tokenizer = tokenizer or tokenizers.load_tokenizer(workdir)
    settings = None
    if data['source'] in AUDIO_SOURCES:
      try:
        settings = features_lib.load(directory)
      except (OSError, ValueError) as e:
        raise errors.CheckpointNotFoundError(str(e)) from None
    return cls(list(tokenizer.vocab[2:]), settings, dict(data))

  def settings_json(self) -> dict[str, Any]:
    """``lstm_flax.export``'s inference settings: ``features`` (audio) or
    ``normalisation`` (pixels: mean, std)."""
    if self.settings is not None:
      return {'features': dataclasses.asdict(self.settings)}
    return {'normalisation': {'mean': 0.0, 'std': idx.PIXEL_STD}}

  def frames(self, path: str) -> np.ndarray:
    """float32 ``[T, F]`` normalised frames of a ``.wav`` (audio) or ``.npy``
    image ``[rows, cols]`` (images); one-line errors naming the file."""
    if self.settings is not None:
      try:
        samples, _ = features_lib.read_wav(path, self.settings.sample_rate)
      except (OSError, ValueError) as e:
        raise input_errors.MalformedLineError(
            str(e) if isinstance(e, ValueError) else f'{path} cannot be read: {e}') from None
      return self.settings.featurize(samples)
    try:
      image = np.load(path)
    except (OSError, ValueError) as e:
      raise input_errors.MalformedLineError(f'{path} is not a readable .npy image: {e}') from None
    if image.ndim != 2:
      raise input_errors.MalformedLineError(
          f'{path} holds an array of shape {image.shape}; give one image [rows, cols].')
    seed = int(self.data['permutation_seed'])
    split = idx.image_sequences(image[None], np.zeros(1, np.int32),
                                pixels_per_step=int(self.data['pixels_per_step']) or None,
                                permutation_seed=None if seed < 0 else seed, what=path)
    return split.frames.astype(np.float32) / idx.PIXEL_STD


@dataclasses.dataclass
class FeatureClassifier:
  """A restored feature classifier (what ``classify.py`` uses): one input
  path per line."""

  model: Any  # lstm_flax.feature_models.FeatureSequenceClassifier
  params: Any
  inputs: FeatureInputs
  step: int

  def __post_init__(self):
    self._probabilities = inference_lib.class_probabilities(self.model)

  def classify(self, lines: Sequence[str], *, batch_size: int = 64
               ) -> list[inference_lib.Prediction | None]:
    """The prediction of each path (``None`` for blank lines), in order."""
    paths = [line.strip() for line in lines]
    frames = [self.inputs.frames(p) if p else None for p in paths]
    with inference.settings_as_config_errors():
      return inference_lib.classify_frames(
          self.model, self.params, frames, self.inputs.label_names,
          batch_size=batch_size, probabilities_fn=self._probabilities)


TASK = FeatureClassificationTask
