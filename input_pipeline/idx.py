"""Images as frame sequences: MNIST IDX files or TFDS ``mnist``.

IDX files (LeCun's format, optionally gzipped): a big-endian header, magic
2051 for ``*-idx3-ubyte`` images (``n, rows, cols`` then ``n*rows*cols``
uint8 pixels) and 2049 for ``*-idx1-ubyte`` labels (``n`` then ``n`` uint8
labels). A wrong magic number, a size that disagrees with the header, or
image and label files of different lengths is a one-line error naming the
file.

An image becomes a sequence of ``rows * cols / pixels_per_step`` steps of
``pixels_per_step`` pixels, read row by row: 28 steps of 28 pixels
(``pixels_per_step=None``, the default: one row per step, "row MNIST") or 784 steps of 1 pixel
(``pixels_per_step=1``, sequential MNIST); with ``permutation_seed`` the
pixels are first shuffled by one fixed permutation (permuted MNIST, pMNIST;
``numpy.random.default_rng(seed).permutation``). Splits are
``FeatureSplit``\\ s of uint8 frames; batch them with ``mean=0, std=255``
(:data:`PIXEL_STD`) for pixels in [0, 1].
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from input_pipeline import errors, tfds_data
from input_pipeline.feature_batches import FeatureSplit

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
PIXEL_STD = 255.0
MNIST_FILES = {'train': 'train', 'test': 't10k'}  # Split -> file prefix.


def read_idx(path: str | os.PathLike[str], magic: int) -> np.ndarray:
  """The uint8 array of an IDX file (``.gz`` read through gzip) whose magic
  number must be ``magic`` (2051: ``[n, rows, cols]``, 2049: ``[n]``)."""
  path = Path(path)
  try:
    data = gzip.decompress(path.read_bytes()) if path.suffix == '.gz' else path.read_bytes()
  except OSError as e:
    raise errors.DataFileNotFoundError(f'IDX file {path} cannot be read: {e}') from None
  ndim = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}[magic]
  header = 4 + 4 * ndim
  found = struct.unpack('>i', data[:4])[0] if len(data) >= 4 else None
  if found != magic:
    raise errors.MalformedLineError(
        f'IDX file {path} has magic number {found}, expected {magic} '
        f'({"images, *-idx3-ubyte" if magic == IMAGES_MAGIC else "labels, *-idx1-ubyte"}); '
        'is it the right file (or gzipped without a .gz name)?')
  if len(data) < header:
    raise errors.MalformedLineError(
        f'IDX file {path} has {len(data)} bytes, fewer than its {header}-byte header.')
  shape = struct.unpack(f'>{ndim}i', data[4:header])
  expected = header + int(np.prod(shape))
  if len(data) != expected:
    raise errors.MalformedLineError(
        f'IDX file {path} has {len(data)} bytes but its header {list(shape)} needs '
        f'{expected}; the file is truncated or corrupt.')
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find(directory: Path, name: str) -> Path:
  for candidate in (directory / name, directory / f'{name}.gz'):
    if candidate.is_file():
      return candidate
  raise errors.DataFileNotFoundError(
      f'{directory} has neither {name} nor {name}.gz (MNIST IDX files).')


def image_sequences(images: np.ndarray, labels: np.ndarray, *, pixels_per_step: int | None = None,
                    permutation_seed: int | None = None, what: str = 'images') -> FeatureSplit:
  """``images [n, rows, cols]`` uint8 and ``labels [n]`` as a FeatureSplit
  of ``[n * steps, pixels_per_step]`` uint8 frames (see module doc)."""
  n = len(images)
  if len(labels) != n:
    raise errors.LabelMismatchError(
        f'{what}: {n} images but {len(labels)} labels; use matching files.')
  images = np.asarray(images, np.uint8)
  pixels_per_step = pixels_per_step or images.shape[-1]  # None: a row.
  pixels = images.reshape(n, -1)  # [n, rows * cols]
  if pixels.shape[1] % pixels_per_step:
    raise errors.ConfigError(
        f'pixels_per_step={pixels_per_step} does not divide the {pixels.shape[1]} '
        'pixels of an image; use a divisor (28 for rows, 1 for pixels).')
  if permutation_seed is not None:
    pixels = pixels[:, np.random.default_rng(permutation_seed).permutation(pixels.shape[1])]
  steps = pixels.shape[1] // pixels_per_step
  return FeatureSplit(pixels.reshape(n * steps, pixels_per_step),
                      np.arange(n + 1, dtype=np.int64) * steps,
                      np.asarray(labels, np.int32))


def load_directory(directory: str | os.PathLike[str], *, pixels_per_step: int | None = None,
                   permutation_seed: int | None = None, valid_size: int = 0,
                   files: Mapping[str, str] = MNIST_FILES) -> dict[str, FeatureSplit]:
  """Split -> FeatureSplit of the IDX files ``{prefix}-images-idx3-ubyte``
  and ``{prefix}-labels-idx1-ubyte`` (or ``.gz``) in ``directory``; with
  ``valid_size``, the last ``valid_size`` training images become ``'valid'``."""
  directory = Path(directory)
  out = {}
  for split, prefix in files.items():
    images_path = _find(directory, f'{prefix}-images-idx3-ubyte')
    labels_path = _find(directory, f'{prefix}-labels-idx1-ubyte')
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    what = f'{images_path.name} and {labels_path.name}'
    if split == 'train' and valid_size:
      if not 0 < valid_size < len(images):
        raise errors.ConfigError(f'valid_size={valid_size} must be in (0, {len(images)}).')
      out['valid'] = image_sequences(images[-valid_size:], labels[-valid_size:],
                                     pixels_per_step=pixels_per_step,
                                     permutation_seed=permutation_seed, what=what)
      images, labels = images[:-valid_size], labels[:-valid_size]
    out[split] = image_sequences(images, labels, pixels_per_step=pixels_per_step,
                                 permutation_seed=permutation_seed, what=what)
  return out


def load_tfds(name: str = 'mnist', splits: Mapping[str, str] | None = None, *,
              pixels_per_step: int | None = None, permutation_seed: int | None = None,
              data_dir: str | None = None) -> dict[str, FeatureSplit]:
  """Split -> FeatureSplit of a TFDS image dataset (``image [rows, cols,
  1]`` uint8, ``label``); ``splits`` maps our split names to TFDS split
  strings (default ``train[:55000]`` / ``train[55000:]``)."""
  tfds = tfds_data.import_tfds()
  builder = tfds_data.tfds_builder(name, data_dir)
  splits = splits or {'train': 'train[:55000]', 'valid': 'train[55000:]'}
  out = {}
  for split, tfds_split in splits.items():
    images, labels = [], []
    for example in tfds.as_numpy(tfds_data.tfds_read(builder, tfds_split, data_dir)):
      images.append(example['image'][..., 0])
      labels.append(int(example['label']))
    if not images:
      raise errors.EmptyDataError(f'TFDS {name!r} split {tfds_split!r} has no images.')
    out[split] = image_sequences(np.stack(images), np.asarray(labels), what=f'TFDS {name!r}',
                                 pixels_per_step=pixels_per_step,
                                 permutation_seed=permutation_seed)
  return out
