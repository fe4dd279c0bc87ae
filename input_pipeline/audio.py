"""Spoken-word classification data: a directory of ``.wav`` files or TFDS
``spoken_digit``, as cached log-mel (or MFCC) frame sequences.

Each file's label (and its index, which selects the split) comes from the
file name through a regex with named groups ``label`` and ``index``; the
default is the Free Spoken Digit Dataset's ``{digit}_{speaker}_{index}.wav``.
Splits are inclusive index ranges: by default ``valid`` = 5-9 and ``train`` =
10-49 (index 0-4 is FSDD's test split, held out of the shared data). A
``.wav`` file whose name does not match is an error naming the file and the
pattern. TFDS ``spoken_digit`` has one ``train`` split; its examples are
selected by their ``audio/filename`` the same way.

Features (``lstm_flax.features``, unnormalised float32) are computed once
per split and cached in ``cache_dir`` with ``cache.ShardedEntry`` (fields
``frames`` (flat ``[total_frames * F]``), ``lengths`` and ``labels``; one
shard), then memory-mapped. The entry's key holds the source fingerprint
(names, sizes and modification times of the files) and the feature
settings. A bad file stops the build with its error and leaves no complete
entry. The normalisation statistics come from the training split
(:func:`with_train_statistics`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from input_pipeline import cache, errors, text_lines, tfds_data
from input_pipeline.feature_batches import FeatureSplit
from lstm_flax import features as features_lib

FSDD_PATTERN = r'(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav'
FSDD_SPLITS = {'train': (10, 49), 'valid': (5, 9)}  # Inclusive index ranges.
FSDD_LABELS = tuple(str(d) for d in range(10))


@dataclasses.dataclass(frozen=True)
class Recording:
  """One labelled recording (a file, or a TFDS example's samples)."""

  name: str
  label: int
  path: Path | None = None
  samples: np.ndarray | None = None


def parse_name(name: str, pattern: str, labels: Sequence[str]) -> tuple[int, int]:
  """``(label id, index)`` of a file name; one-line errors naming it."""
  match = re.fullmatch(pattern, name)
  if not match:
    raise errors.MalformedLineError(
        f'Audio file {name!r} does not match the file-name pattern {pattern!r} '
        '(data config file_pattern); rename it or change the pattern.')
  label = match.group('label')
  if label not in labels:
    raise errors.UnknownLabelError(
        f'Audio file {name!r} has label {label!r}, not one of {list(labels)} '
        '(data config labels).')
  return labels.index(label), int(match.group('index'))


def list_recordings(directory: str | os.PathLike[str], index_range: tuple[int, int],
                    pattern: str = FSDD_PATTERN,
                    labels: Sequence[str] = FSDD_LABELS) -> list[Recording]:
  """The ``.wav`` files of ``directory`` whose index lies in ``index_range``
  (inclusive), sorted by name."""
  directory = Path(directory)
  if not directory.is_dir():
    raise errors.DataFileNotFoundError(
        f'Audio directory {directory} does not exist (data config data_dir).')
  chosen = []
  for path in sorted(directory.glob('*.wav')):
    label, index = parse_name(path.name, pattern, labels)
    if index_range[0] <= index <= index_range[1]:
      chosen.append(Recording(path.name, label, path=path))
  if not chosen:
    raise errors.EmptyDataError(
        f'No .wav file in {directory} has an index in {list(index_range)}.')
  return chosen


def tfds_recordings(name: str, tfds_split: str, index_range: tuple[int, int],
                    pattern: str = FSDD_PATTERN, data_dir: str | None = None,
                    labels: Sequence[str] = FSDD_LABELS) -> list[Recording]:
  """The examples of TFDS ``name`` (``audio``, ``label``,
  ``audio/filename``) whose file-name index lies in ``index_range``."""
  tfds = tfds_data.import_tfds()
  builder = tfds_data.tfds_builder(name, data_dir)
  chosen = []
  for example in tfds.as_numpy(tfds_data.tfds_read(builder, tfds_split, data_dir)):
    file_name = example['audio/filename']
    file_name = file_name.decode() if isinstance(file_name, bytes) else str(file_name)
    label, index = parse_name(file_name, pattern, labels)
    if int(example['label']) != label:
      raise errors.LabelMismatchError(
          f'TFDS {name!r} example {file_name!r} has label {int(example["label"])} '
          f'but its name says {label}.')
    if index_range[0] <= index <= index_range[1]:
      samples = np.asarray(example['audio'], np.float32) / 32768.0
      chosen.append(Recording(file_name, label, samples=samples))
  if not chosen:
    raise errors.EmptyDataError(
        f'TFDS {name!r} split {tfds_split!r} has no example with an index in '
        f'{list(index_range)}.')
  return sorted(chosen, key=lambda r: r.name)


def _settings_key(settings: features_lib.FeatureSettings) -> dict:
  """The settings that determine the cached (unnormalised) frames."""
  return dataclasses.asdict(dataclasses.replace(settings, mean=None, std=None))


def load_split(recordings: Sequence[Recording], settings: features_lib.FeatureSettings,
               cache_dir: str | os.PathLike[str], name: str,
               source_fingerprint: str, *, process_index: int = 0,
               timeout_s: float = 3600.0) -> FeatureSplit:
  """The recordings' unnormalised frames, from the cache or computed (and
  cached) now; ``frames`` is memory-mapped ``[total_frames, F]`` float32.
  Process 0 computes them; the other processes wait for its cache entry
  (at most ``timeout_s``)."""
  num_features = settings.num_features
  entry = cache.ShardedEntry(
      cache_dir, f'audio-{name}',
      {'source': source_fingerprint, 'features': _settings_key(settings)}, 1,
      {'frames': np.float32, 'lengths': np.int32, 'labels': np.int32})

  def chunks() -> Iterator[Mapping[str, np.ndarray]]:
    for r in recordings:
      samples = r.samples
      if samples is None:
        samples, _ = features_lib.read_wav(r.path, settings.sample_rate)
      x = settings.unnormalised(samples).astype(np.float32)  # [frames, F]
      yield {'frames': x.reshape(-1), 'lengths': np.array([len(x)], np.int32),
             'labels': np.array([r.label], np.int32)}

  if process_index == 0 and not entry.complete(0):
    entry.write(0, chunks())
  entry.wait(timeout_s)
  frames = entry.open('frames')[0].reshape(-1, num_features)
  lengths = np.asarray(entry.open('lengths')[0], np.int64)
  offsets = np.zeros(len(lengths) + 1, np.int64)
  np.cumsum(lengths, out=offsets[1:])
  return FeatureSplit(frames, offsets, np.asarray(entry.open('labels')[0]))


def directory_fingerprint(recordings: Sequence[Recording]) -> str:
  """Names, sizes and modification times of the recordings' files."""
  return text_lines.fingerprint_of('audio_files', *(
      text_lines.file_fingerprint(r.path) for r in recordings))


def load_directory(directory: str | os.PathLike[str],
                   settings: features_lib.FeatureSettings,
                   cache_dir: str | os.PathLike[str],
                   splits: Mapping[str, tuple[int, int]] = FSDD_SPLITS,
                   pattern: str = FSDD_PATTERN,
                   labels: Sequence[str] = FSDD_LABELS,
                   **wait: Any) -> dict[str, FeatureSplit]:
  """Split name -> :class:`FeatureSplit` of a directory of ``.wav`` files
  (``wait``: :func:`load_split`'s ``process_index`` and ``timeout_s``)."""
  out = {}
  for split, index_range in splits.items():
    recordings = list_recordings(directory, index_range, pattern, labels)
    out[split] = load_split(recordings, settings, cache_dir, split,
                            directory_fingerprint(recordings), **wait)
  return out


def load_tfds(name: str, settings: features_lib.FeatureSettings,
              cache_dir: str | os.PathLike[str],
              splits: Mapping[str, tuple[int, int]] = FSDD_SPLITS,
              tfds_split: str = 'train', data_dir: str | None = None,
              pattern: str = FSDD_PATTERN,
              labels: Sequence[str] = FSDD_LABELS,
              **wait: Any) -> dict[str, FeatureSplit]:
  """Split name -> :class:`FeatureSplit` of TFDS ``name`` (``spoken_digit``)
  (``wait``: :func:`load_split`'s ``process_index`` and ``timeout_s``).

  The cache key is the dataset's name, version and directory, so the samples
  are read (not featurised) before the cache is checked."""
  out = {}
  for split, index_range in splits.items():
    recordings = tfds_recordings(name, tfds_split, index_range, pattern, data_dir, labels)
    builder = tfds_data.tfds_builder(name, data_dir)
    fingerprint = text_lines.fingerprint_of(
        'tfds_audio', name, str(builder.version), str(builder.data_dir), tfds_split,
        str(index_range), pattern, *(r.name for r in recordings))
    out[split] = load_split(recordings, settings, cache_dir, split, fingerprint, **wait)
  return out


def with_train_statistics(settings: features_lib.FeatureSettings,
                          train: FeatureSplit) -> features_lib.FeatureSettings:
  """``settings`` with the mean and std of every training frame."""
  return settings.with_statistics([train.frames])
