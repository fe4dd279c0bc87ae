"""input_pipeline.idx: generated MNIST IDX files (plain and gzipped) and TFDS
mnist (mocked) to row / pixel / permuted-pixel sequences."""

import gzip
import struct

import numpy as np
import pytest

from input_pipeline import errors, hosts, idx


def _idx(magic, array):
  return struct.pack(f'>i{array.ndim}i', magic, *array.shape) + array.astype(np.uint8).tobytes()


def _mnist(directory, n=5, gz=False):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 4, 6), dtype=np.uint8)
  labels = np.arange(n, dtype=np.uint8) % 10
  directory.mkdir(exist_ok=True)
  for prefix in ('train', 't10k'):
    for name, magic, array in (('images-idx3-ubyte', 2051, images),
                               ('labels-idx1-ubyte', 2049, labels)):
      data = _idx(magic, array)
      path = directory / f'{prefix}-{name}'
      if gz:
        path.with_name(path.name + '.gz').write_bytes(gzip.compress(data))
      else:
        path.write_bytes(data)
  return images, labels


def test_rows_pixels_and_permutation(tmp_path):
  images, labels = _mnist(tmp_path / 'plain')
  _mnist(tmp_path / 'gz', gz=True)
  rows = idx.load_directory(tmp_path / 'gz', valid_size=2)
  assert rows['train'].labels.tolist() == labels[:3].tolist()
  assert rows['valid'].labels.tolist() == labels[3:].tolist()
  assert rows['test'].num_examples == 5
  np.testing.assert_array_equal(rows['train'].frames.reshape(3, 4, 6), images[:3])
  pixels = idx.load_directory(tmp_path / 'plain', pixels_per_step=1, permutation_seed=3)
  order = np.random.default_rng(3).permutation(24)
  np.testing.assert_array_equal(pixels['train'].frames.reshape(5, 24),
                                images.reshape(5, 24)[:, order])
  assert pixels['train'].lengths.tolist() == [24] * 5
  batch = next(rows['test'].batcher(hosts.HostShard(0, 1), std=idx.PIXEL_STD, batch_size=2,
                                    max_length=4, training=False).iterate())
  assert batch['features'].shape == (2, 4, 6) and batch['lengths'].tolist() == [4, 4]
  np.testing.assert_allclose(batch['features'][0], images[batch['example_index'][0]] / 255.0,
                             rtol=1e-6)


def test_idx_errors(tmp_path):
  _mnist(tmp_path)
  path = tmp_path / 'train-labels-idx1-ubyte'
  with pytest.raises(errors.MalformedLineError,
                     match=r'train-labels-idx1-ubyte has magic number 2049, expected 2051'):
    idx.read_idx(path, idx.IMAGES_MAGIC)
  path.write_bytes(path.read_bytes()[:-1])
  with pytest.raises(errors.MalformedLineError, match=r'has 12 bytes but its header \[5\] needs 13'):
    idx.load_directory(tmp_path)
  path.write_bytes(_idx(2049, np.zeros(4)))
  with pytest.raises(errors.LabelMismatchError, match='5 images but 4 labels'):
    idx.load_directory(tmp_path)
  (tmp_path / 's').mkdir()
  (tmp_path / 's' / 't10k-images-idx3-ubyte').write_bytes(_idx(2051, np.zeros((1, 2, 2)))[:9])
  with pytest.raises(errors.MalformedLineError, match='has 9 bytes, fewer than its 16-byte header'):
    idx.read_idx(tmp_path / 's' / 't10k-images-idx3-ubyte', 2051)
  with pytest.raises(errors.DataFileNotFoundError, match='nor train-images-idx3-ubyte.gz'):
    idx.load_directory(tmp_path / 'none')


def test_tfds_mnist(tmp_path):
  tf = pytest.importorskip('tensorflow')
  tf.config.set_visible_devices([], 'GPU')
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=6):
    splits = idx.load_tfds('mnist', {'train': 'train', 'test': 'test'}, pixels_per_step=1)
  assert splits['train'].frames.shape == (6 * 784, 1)
  assert splits['test'].lengths.tolist() == [784] * 6
  assert 0 <= splits['train'].labels.min() and splits['train'].labels.max() < 10
