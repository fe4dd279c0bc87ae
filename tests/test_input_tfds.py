"""Tests of the TFDS sources, offline: tfds.testing.mock_data and errors."""

from pathlib import Path

import numpy as np
import pytest

import input_pipeline
from input_pipeline import errors

tf = pytest.importorskip('tensorflow')
tf.config.set_visible_devices([], 'GPU')
tfds = pytest.importorskip('tensorflow_datasets')


def _lm_config(name: str, **overrides):
  return {'source': 'tfds', 'tfds_name': name, 'prefetch': 0,
          'tfds_splits': {'train': 'train', 'valid': 'test', 'test': ''},
          **overrides}


def test_lm1b_sentences(tmp_path: Path):
  with tfds.testing.mock_data(num_examples=40):
    data = input_pipeline.get_lm_datasets(
        _lm_config('lm1b', tokenizer='sentencepiece', vocab_size=40,
                   batching='sentences', batch_size=8, eval_batch_size=8,
                   max_length=32),
        tmp_path, process_index=0, process_count=1)
    lines = [x['text'].decode() for x in tfds.as_numpy(
        tfds.builder('lm1b').as_dataset(split='train'))]
  assert data.splits['train'].num_lines == 40 == len(lines)
  assert data.tokenizer.decode(data.splits['train'].ids) == '\n'.join(
      lines) + '\n'
  batch = next(data.train_batches())
  assert batch['inputs'].dtype == np.int32 and batch['inputs'].shape[0] == 8
  assert sum(int(b['mask'].any(1).sum()) for b in data.eval_batches()) == 40


def test_tiny_shakespeare_char_stream(tmp_path: Path):
  with tfds.testing.mock_data(num_examples=3):
    data = input_pipeline.get_lm_datasets(
        _lm_config('tiny_shakespeare', tokenizer='char', batch_size=2,
                   eval_batch_size=2, seq_len=8),
        tmp_path, process_index=0, process_count=1)
    texts = [x['text'].decode() for x in tfds.as_numpy(
        tfds.builder('tiny_shakespeare').as_dataset(split='train'))]
  assert data.num_tokens('train') == sum(len(t) + 1 for t in texts)
  assert data.tokenizer.decode(data.splits['train'].ids) == ''.join(
      t + '\n' for t in texts)
  batch = next(data.train_batches())
  assert batch['inputs'].shape == (2, 8)


def test_wmt17_translation(tmp_path: Path):
  with tfds.testing.mock_data(num_examples=64):
    data = input_pipeline.get_translation_datasets(
        {'source': 'tfds', 'tfds_name': 'wmt17_translate/de-en',
         'source_lang': 'de', 'target_lang': 'en', 'vocab_size': 30,
         'max_length': 64, 'tokens_per_batch': 128, 'batch_size_multiple': 2,
         'prefetch': 0}, tmp_path, process_index=0, process_count=1)
    references = [x['en'].decode() for x in tfds.as_numpy(
        tfds.builder('wmt17_translate/de-en').as_dataset(split='validation'))]
  assert data.eval_references == references
  assert data.train.num_pairs + data.train.num_dropped == 64
  batch = next(data.train_batches())
  assert batch['source'].shape == batch['target_output'].shape
  assert batch['source'].shape[0] % 2 == 0


def test_unknown_tfds_name(tmp_path: Path):
  with pytest.raises(errors.TfdsError) as info:
    input_pipeline.get_lm_datasets(_lm_config('lm1bb'), tmp_path,
                                   process_index=0, process_count=1)
  assert "'lm1bb'" in str(info.value) and 'tfds_name' in str(info.value)


def test_unknown_feature_key(tmp_path: Path):
  with pytest.raises(errors.TfdsError) as info:
    input_pipeline.get_lm_datasets(_lm_config('lm1b', tfds_text_key='txt'),
                                   tmp_path, process_index=0, process_count=1)
  assert "'txt'" in str(info.value) and "['text']" in str(info.value)
  with pytest.raises(errors.TfdsError, match="'fr'"):
    input_pipeline.get_translation_datasets(
        {'source': 'tfds', 'tfds_name': 'wmt17_translate/de-en',
         'source_lang': 'fr'}, tmp_path, process_index=0, process_count=1)


def test_not_prepared_says_how_to_prepare(tmp_path: Path):
  data_dir = tmp_path / 'tfds'
  with pytest.raises(errors.TfdsNotPreparedError) as info:
    input_pipeline.get_lm_datasets(
        _lm_config('tiny_shakespeare', tfds_data_dir=str(data_dir)),
        tmp_path, process_index=0, process_count=1)
  message = str(info.value)
  assert 'tfds build tiny_shakespeare' in message
  assert str(data_dir) in message and 'tfds_data_dir' in message


def _not_utf8_dataset(self, split, **kwargs):
  """A mock ``as_dataset``: the second example has a Latin-1 byte."""
  del self, split, kwargs
  return tf.data.Dataset.from_tensor_slices(
      {'text': [b'a good line', b'caf\xe9 au lait']})


def test_text_that_is_not_utf8_names_the_example(tmp_path: Path):
  with tfds.testing.mock_data(as_dataset_fn=_not_utf8_dataset):
    with pytest.raises(errors.NotUtf8Error,
                       match=r"TFDS 'lm1b' split 'train', example 1, feature "
                             r"'text', line 1: bytes b'\\xe9' .*encoding_errors"):
      input_pipeline.get_lm_datasets(_lm_config('lm1b'), tmp_path / 'strict',
                                     process_index=0, process_count=1)
    data = input_pipeline.get_lm_datasets(
        _lm_config('lm1b', encoding_errors='replace'), tmp_path / 'replace',
        process_index=0, process_count=1)
  assert data.tokenizer.decode(data.splits['train'].ids).split('\n')[:2] == [
      'a good line', 'caf\ufffd au lait']
