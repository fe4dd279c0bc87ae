"""Tests of translation datasets from parallel files (Multi30k layout)."""

import logging
from pathlib import Path

import numpy as np
import pytest

import input_pipeline
from input_pipeline import errors, translation
from input_pipeline.hosts import HostShard

SHARED_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'

GERMAN = ['ein hund läuft', 'zwei katzen schlafen auf dem sofa',
          'der mann liest ein buch', 'eine frau trinkt kaffee',
          'kinder spielen im park', 'ein rotes auto fährt schnell']
ENGLISH = ['a dog runs', 'two cats sleep on the sofa', 'the man reads a book',
           'a woman drinks coffee', 'children play in the park',
           'a red car drives fast']


@pytest.fixture(scope='module')
def parallel_dir(tmp_path_factory) -> Path:
  directory = tmp_path_factory.mktemp('multi30k')
  rng = np.random.default_rng(0)
  train_de, train_en = [], []
  for _ in range(300):
    picks = rng.integers(0, len(GERMAN), rng.integers(1, 4))
    train_de.append(' und '.join(GERMAN[i] for i in picks))
    train_en.append(' and '.join(ENGLISH[i] for i in picks))
  train_de.append(' '.join(GERMAN * 10))  # Too long: dropped.
  train_en.append(' '.join(ENGLISH * 10))
  (directory / 'train.de').write_text('\n'.join(train_de) + '\n')
  (directory / 'train.en').write_text('\n'.join(train_en) + '\n')
  (directory / 'val.de').write_text('\n'.join(GERMAN + [GERMAN[0]]) + '\n')
  (directory / 'val.en').write_text('\n'.join(ENGLISH + [ENGLISH[1]]) + '\n')
  return directory


def _config(data_dir: Path, **overrides):
  return {'source': 'parallel_text', 'data_dir': str(data_dir),
          'vocab_size': 60, 'max_length': 96, 'tokens_per_batch': 256,
          'eval_tokens_per_batch': 64, 'batch_size_multiple': 4,
          'prefetch': 0, **overrides}


@pytest.fixture(scope='module')
def datasets(parallel_dir, tmp_path_factory):
  return input_pipeline.get_translation_datasets(
      _config(parallel_dir), tmp_path_factory.mktemp('run'), process_index=0,
      process_count=1)


def test_encoding_bos_eos_and_filter(datasets, parallel_dir, caplog,
                                     tmp_path: Path):
  tokenizer = datasets.tokenizer
  assert tokenizer.vocab_size == 60
  assert datasets.train.num_pairs == 300 and datasets.train.num_dropped == 1
  assert datasets.eval.num_pairs == 7 and datasets.eval.num_dropped == 0
  with caplog.at_level(logging.INFO):
    input_pipeline.get_translation_datasets(
        _config(parallel_dir, cache_dir=str(tmp_path / 'c')), tmp_path,
        process_index=0, process_count=1)
  assert 'Dropped 1 of 301 train pairs' in caplog.text
  assert datasets.eval_references == ENGLISH + [ENGLISH[1]]
  assert datasets.eval_sources == GERMAN + [GERMAN[0]]


def test_train_batches(datasets):
  batches = [b for _, b in zip(range(40), datasets.train_batches())]
  keys = {'source', 'target_input', 'target_output', 'source_mask',
          'target_mask', 'example_index'}
  bos, eos = datasets.tokenizer.bos_id, datasets.tokenizer.eos_id
  for batch in batches:
    assert set(batch) == keys
    b, length = batch['source'].shape
    assert batch['example_index'].shape == (b,)
    assert b % 4 == 0 and b * length <= max(256, 4 * length)
    for key in keys - {'example_index'}:
      assert batch[key].shape == (b, length)
      assert batch[key].dtype == (np.float32 if 'mask' in key else np.int32)
    n_src = batch['source_mask'].sum(1).astype(int)
    n_tgt = batch['target_mask'].sum(1).astype(int)
    assert (np.maximum(n_src, n_tgt) <= length).all()
    assert (batch['target_input'][:, 0] == bos).all()
    rows = np.arange(b)
    assert (batch['source'][rows, n_src - 1] == eos).all()
    assert (batch['target_output'][rows, n_tgt - 1] == eos).all()
    np.testing.assert_array_equal(
        np.where(batch['target_mask'][:, 1:] > 0, batch['target_input'][:, 1:],
                 0),
        np.where(batch['target_mask'][:, 1:] > 0,
                 batch['target_output'][:, :-1], 0))
    assert not batch['source'][batch['source_mask'] == 0].any()
  lengths = {b['source'].shape[1] for b in batches}
  assert len(lengths) > 1 and lengths <= set(
      translation.bucket_boundaries(96).tolist())


def test_eval_batches_cover_references_in_order(datasets):
  seen = {}
  for batch in datasets.eval_batches():
    for row, index in enumerate(batch['example_index'].tolist()):
      if index < 0:
        assert not batch['target_mask'][row].any()
        continue
      n = int(batch['target_mask'][row].sum())
      seen[index] = datasets.tokenizer.decode(
          batch['target_output'][row, :n - 1])
  assert seen == dict(enumerate(datasets.eval_references))  # Round trip.


def test_deterministic_resumable_and_sharded(datasets):
  def take(iterator, n):
    return [b for _, b in zip(range(n), iterator)]

  full = take(datasets.batcher('train').iterate(), 150)  # Several epochs.
  per_epoch = len(datasets.batcher('train').plan(0))
  assert per_epoch < 75
  for start in (1, per_epoch, 2 * per_epoch + 1):
    resumed = take(datasets.batcher('train').iterate(start), 150 - start)
    for a, b in zip(full[start:], resumed):
      for key in a:
        np.testing.assert_array_equal(a[key], b[key])
  hosts = []
  for p in range(2):
    shard = translation.TranslationBatcher(
        datasets.train.source_ids, datasets.train.source_offsets,
        datasets.train.target_ids, datasets.train.target_offsets,
        HostShard(p, 2), bos_id=2, pad_id=0, tokens_per_batch=256,
        max_length=96, batch_size_multiple=4)
    hosts.append(take(shard.iterate(), 150))
  for step, batch in enumerate(full):
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([h[step][key] for h in hosts]), batch[key])


def test_batch_size_multiple_not_divisible(datasets):
  with pytest.raises(errors.BatchSizeError, match='batch_size_multiple=4'):
    translation.TranslationBatcher(
        datasets.train.source_ids, datasets.train.source_offsets,
        datasets.train.target_ids, datasets.train.target_offsets,
        HostShard(0, 3), bos_id=2, pad_id=0, tokens_per_batch=256,
        max_length=96, batch_size_multiple=4)


def test_multi30k_slice(tmp_path: Path):
  data_dir = SHARED_DATA / 'multi30k'
  if not data_dir.is_dir():
    pytest.skip(f'{data_dir} not present')
  data = input_pipeline.get_translation_datasets(
      {'data_dir': str(data_dir), 'vocab_size': 1000,
       'max_train_examples': 3000, 'prefetch': 0, 'tokens_per_batch': 2048},
      tmp_path, process_index=0, process_count=1)
  assert data.train.num_pairs + data.train.num_dropped == 3000
  assert len(data.eval_references) == 1014 == data.eval.num_pairs
  reference = (data_dir / 'val.en').read_text('utf-8').split('\n')[:1014]
  assert data.eval_references == reference
  ids, _ = data.tokenizer.encode_lines(reference)
  assert data.tokenizer.decode(ids) == '\n'.join(reference) + '\n'
  batch = next(data.train_batches())
  assert batch['source'].shape[0] * batch['source'].shape[1] <= 2048


def test_missing_or_unaligned_parallel_files(parallel_dir: Path,
                                             tmp_path: Path):
  missing = tmp_path / 'nowhere'
  with pytest.raises(errors.DataFileNotFoundError, match=str(missing)):
    input_pipeline.get_translation_datasets(
        _config(missing), tmp_path, process_index=0, process_count=1)
  with pytest.raises(errors.DataFileNotFoundError,
                     match=r'test\.de.*eval_prefix'):
    input_pipeline.get_translation_datasets(
        _config(parallel_dir, eval_prefix='test'), tmp_path, process_index=0,
        process_count=1)
  with pytest.raises(errors.BatchSizeError, match='batch_size_multiple=4'):
    input_pipeline.get_translation_datasets(
        _config(parallel_dir), tmp_path, process_index=0, process_count=3)


def test_no_bucket_fills_a_batch_is_a_config_error(datasets):
  batcher = translation.TranslationBatcher(
      datasets.train.source_ids, datasets.train.source_offsets,
      datasets.train.target_ids, datasets.train.target_offsets,
      HostShard(0, 1), bos_id=2, pad_id=0, tokens_per_batch=256,
      max_length=96, batch_size_multiple=512)
  with pytest.raises(errors.ConfigError, match='tokens_per_batch'):
    next(batcher.iterate())
