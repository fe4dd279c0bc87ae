"""Tests of LM datasets: exact counts, stream / sentence batches, hosts,
determinism, resumption, caching and config errors."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import input_pipeline
from input_pipeline import errors, lm, text_corpora, text_lines, vocabulary
from input_pipeline.hosts import HostShard
from batch_helpers import assert_same_batches, take

SHARED_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
ONE_HOST = HostShard(0, 1)


def _shared(name: str) -> Path:
  path = SHARED_DATA / name
  if not path.is_dir():
    pytest.skip(f'{path} not present')
  return path


def test_ptb_exact_counts(tmp_path: Path):
  data = input_pipeline.get_lm_datasets(
      {'source': 'text_files', 'data_dir': str(_shared('ptb')),
       'files': {'train': 'ptb.train.txt', 'valid': 'ptb.valid.txt',
                 'test': 'ptb.test.txt'}, 'prefetch': 0},
      tmp_path, process_index=0, process_count=1)
  assert data.vocab_size == 10_000
  assert data.num_tokens('train') == 929_589
  assert data.num_tokens('valid') == 73_760
  assert data.splits['train'].num_lines == 42_068
  train = data.splits['train'].ids
  assert train.dtype == np.int32 and train.max() == 9_999
  assert (train == data.tokenizer.eos_id).sum() == 42_068
  with (SHARED_DATA / 'ptb' / 'ptb.train.txt').open() as f:
    first_line = f.readline()
  ids = data.tokenizer.encode(first_line)
  assert data.tokenizer.decode(ids) == ' '.join(first_line.split())
  assert data.steps_per_epoch() == (929_589 // 20 - 1) // 35
  batch = next(data.train_batches())
  assert batch['inputs'].shape == (20, 35)
  np.testing.assert_array_equal(batch['inputs'][0], train[:35])
  stream_length = 929_589 // 20
  np.testing.assert_array_equal(batch['targets'][1],
                                train[stream_length + 1:stream_length + 36])


def test_wikitext2_exact_counts(tmp_path: Path):
  data = input_pipeline.get_lm_datasets(
      {'source': 'text_files', 'data_dir': str(_shared('wikitext-2')),
       'files': {'train': 'train.txt', 'valid': 'valid.txt'},
       'prefetch': 0}, tmp_path, process_index=0, process_count=1)
  assert data.vocab_size == 33_278
  assert data.num_tokens('train') == 2_088_628
  assert data.num_tokens('valid') == 217_646


def _ids(n: int = 1003) -> np.ndarray:
  return (np.arange(n, dtype=np.int32) * 7) % 101


def test_stream_batches_are_consecutive_windows():
  ids = _ids()
  batcher = lm.StreamBatcher(ids, 4, 10, ONE_HOST)
  streams = ids[:1000].reshape(4, 250)
  batches = list(batcher.iterate(num_epochs=1))
  assert len(batches) == 249 // 10
  for i, batch in enumerate(batches):
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        'inputs': ((4, 10), np.int32), 'targets': ((4, 10), np.int32),
        'mask': ((4, 10), np.float32)}
    np.testing.assert_array_equal(batch['inputs'], streams[:, i * 10:i * 10 + 10])
    np.testing.assert_array_equal(batch['targets'],
                                  streams[:, i * 10 + 1:i * 10 + 11])
  assert (np.concatenate([b['mask'] for b in batches]) == 1).all()


@pytest.mark.parametrize('num_tokens', [1003, 1001, 7])
def test_stream_eval_scores_every_token_but_the_first_once(num_tokens: int):
  ids = np.arange(num_tokens, dtype=np.int32)  # Token i is i: easy to track.
  single = list(lm.StreamBatcher(ids, 4, 10, ONE_HOST,
                                 drop_remainder=False).iterate(num_epochs=1))
  per_host = [list(lm.StreamBatcher(ids, 4, 10, HostShard(p, 2),
                                    drop_remainder=False).iterate(
                                        num_epochs=1)) for p in range(2)]
  assert len(single) == -(-(-(-(num_tokens - 1) // 4)) // 10)
  scored = []
  for step, batch in enumerate(single):
    assert batch['inputs'].shape == (4, 10)
    for key in batch:  # The hosts' rows make up the single-host batch.
      np.testing.assert_array_equal(
          np.concatenate([host[step][key] for host in per_host]), batch[key])
    real = batch['mask'] > 0
    np.testing.assert_array_equal(batch['inputs'][real] + 1,
                                  batch['targets'][real])
    scored.append(batch['targets'][real])
  scored = np.sort(np.concatenate(scored))
  np.testing.assert_array_equal(scored, np.arange(1, num_tokens))
  # Each row continues its stream: row r of batch k + 1 starts where row r of
  # batch k ended.
  for a, b in zip(single, single[1:]):
    np.testing.assert_array_equal(a['targets'][:, -1], b['inputs'][:, 0])


@pytest.mark.parametrize('random_window', [False, True])
def test_stream_deterministic_and_resumable(random_window: bool):
  def make(seed=3):
    return lm.StreamBatcher(_ids(), 4, 10, ONE_HOST,
                            random_window=random_window, seed=seed)

  full = take(make().iterate(), 60)  # Crosses two epoch boundaries.
  assert_same_batches(full, take(make().iterate(), 60))
  for start in (1, 24, 25, 53):
    assert_same_batches(full[start:], take(make().iterate(start_step=start),
                                     60 - start))
  if random_window:
    lengths = [int(b['mask'][0].sum()) for b in full]
    assert len(set(lengths)) > 3 and min(lengths) >= 5
    assert all(b['inputs'].shape[1] % 8 == 0 for b in full)
    assert all(b['inputs'].shape[1] >= n for b, n in zip(full, lengths))
    other = take(make(seed=4).iterate(), 60)
    assert [int(b['mask'][0].sum()) for b in other] != lengths


def test_stream_hosts_union_is_single_host_batch():
  single = take(lm.StreamBatcher(_ids(), 8, 5, ONE_HOST).iterate(), 7)
  per_host = [take(lm.StreamBatcher(_ids(), 8, 5, HostShard(p, 4)).iterate(),
                    7) for p in range(4)]
  for step, batch in enumerate(single):
    assert per_host[0][step]['inputs'].shape == (2, 5)
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([host[step][key] for host in per_host]), batch[key])


def test_batch_size_not_divisible_by_processes(tmp_path: Path):
  with pytest.raises(errors.BatchSizeError) as info:
    input_pipeline.get_lm_datasets({'batch_size': 10, 'prefetch': 0},
                                   tmp_path, process_index=0, process_count=4)
  assert 'batch_size=10' in str(info.value) and 'multiple of 4' in str(
      info.value) and '12' in str(info.value)


def _sentences(count=203, seed=0):
  rng = np.random.default_rng(seed)
  # Distinct sentences: the first token is the sentence number + 100.
  lines = [np.concatenate([[100 + i], rng.integers(3, 50, rng.integers(0, 30))])
           for i in range(count)]
  lengths = np.array([len(x) + 1 for x in lines])
  offsets = np.concatenate([[0], np.cumsum(lengths)])
  ids = np.concatenate([np.append(x, 0) for x in lines]).astype(np.int32)
  return ids, offsets


def test_sentence_batches_bucketed():
  ids, offsets = _sentences()
  batcher = lm.SentenceBatcher(ids, offsets, 8, 16, ONE_HOST, bos_id=0,
                               pool_batches=5)
  batches = list(batcher.iterate(num_epochs=1))
  assert len(batches) == 203 // 8
  seen = []
  for batch in batches:
    width = batch['inputs'].shape[1]
    assert batch['inputs'].shape == (8, width) and width % 8 == 0
    assert width <= 16 and batch['inputs'].dtype == np.int32
    lengths = batch['mask'].sum(1).astype(int)
    assert width - 8 < lengths.max() <= width
    for row, n in zip(range(8), lengths):
      assert batch['inputs'][row, 0] == 0
      np.testing.assert_array_equal(batch['inputs'][row, 1:n],
                                    batch['targets'][row, :n - 1])
      assert not batch['targets'][row, n:].any()
      seen.append(tuple(batch['targets'][row, :n]))
  truncated = {tuple(ids[a:b][:16]) for a, b in zip(offsets[:-1], offsets[1:])}
  assert set(seen) <= truncated and len(seen) == len(set(seen)) == 200
  # Eval: every sentence once, last batch filled with empty rows.
  eval_batches = list(lm.SentenceBatcher(
      ids, offsets, 8, 16, ONE_HOST, bos_id=0, shuffle=False,
      drop_remainder=False).iterate(num_epochs=1))
  assert len(eval_batches) == 26
  assert sum(int(b['mask'].any(1).sum()) for b in eval_batches) == 203
  # Evaluation truncates nothing: every token is scored once.
  assert sum(int(b['mask'].sum()) for b in eval_batches) == len(ids)
  assert max(b['inputs'].shape[1] for b in eval_batches) == 32


def test_sentence_eval_packed_scores_every_token_once():
  ids, offsets = _sentences()
  batches = list(lm.SentenceBatcher(
      ids, offsets, 4, 16, ONE_HOST, bos_id=0, packing=True, shuffle=False,
      drop_remainder=False).iterate(num_epochs=1))
  assert {b['inputs'].shape for b in batches} == {(4, 32)}  # 31 -> 32 wide.
  real = np.concatenate([b['targets'][b['mask'] > 0] for b in batches])
  np.testing.assert_array_equal(real, ids)  # In order, none lost.


def test_sentence_batches_packed():
  ids, offsets = _sentences()
  batcher = lm.SentenceBatcher(ids, offsets, 4, 32, ONE_HOST, bos_id=0,
                               packing=True, drop_remainder=False)
  batches = list(batcher.iterate(num_epochs=1))
  total = 0
  for batch in batches:
    assert set(batch) == {'inputs', 'targets', 'mask', 'segment_ids',
                          'positions'}
    assert all(v.shape == (4, 32) and v.dtype in (np.int32, np.float32)
               for v in batch.values())
    np.testing.assert_array_equal(batch['mask'] > 0, batch['segment_ids'] > 0)
    starts = batch['positions'] == 0
    np.testing.assert_array_equal(batch['inputs'][starts & (batch['mask'] > 0)],
                                  0)
    total += int(batch['mask'].sum())
  assert total == len(ids)
  assert max(int(b['segment_ids'].max()) for b in batches) > 1


@pytest.mark.parametrize('packing', [False, True])
def test_sentences_deterministic_resumable_and_sharded(packing: bool):
  ids, offsets = _sentences()

  def make(shard=ONE_HOST, seed=1):
    return lm.SentenceBatcher(ids, offsets, 8, 24, shard, bos_id=0,
                              packing=packing, seed=seed, pool_batches=3)

  full = take(make().iterate(), 70)  # Several epochs.
  assert_same_batches(full, take(make().iterate(), 70))
  for start in (1, 25, 51):
    assert_same_batches(full[start:], take(make().iterate(start), 70 - start))
  assert any((a['targets'] != b['targets']).any()
             for a, b in zip(full, take(make(seed=2).iterate(), 70))
             if a['targets'].shape == b['targets'].shape)
  hosts = [take(make(HostShard(p, 2)).iterate(), 70) for p in range(2)]
  for step, batch in enumerate(full):
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([h[step][key] for h in hosts]), batch[key])


@pytest.fixture(scope='module')
def text_dir(tmp_path_factory) -> Path:
  directory = tmp_path_factory.mktemp('text')
  lines = text_corpora.EmbeddedCorpus().read_lines('train')
  (directory / 'train.txt').write_text('\n'.join(lines[:2000]) + '\n')
  (directory / 'valid.txt').write_text('\n'.join(lines[2000:2300]) + '\n')
  return directory


def test_cache_makes_second_run_read_no_text(text_dir: Path, tmp_path: Path,
                                              monkeypatch):
  config = {'source': 'text_files', 'data_dir': str(text_dir),
            'files': {'test': ''}, 'prefetch': 0, 'batch_size': 4}
  first = input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                         process_count=1)
  assert list((tmp_path / 'data_cache').glob('lm-train-*/*.ids.npy'))

  def fail(*args, **kwargs):
    raise AssertionError('text was read although it is cached')

  monkeypatch.setattr(text_lines, 'read_text_file', fail)
  monkeypatch.setattr(text_lines.FileShards, 'chunks', fail)
  monkeypatch.setattr(text_lines, 'scan_lines', fail)
  monkeypatch.setattr(vocabulary, 'build_word', fail)
  monkeypatch.setattr(vocabulary, 'word_from_counts', fail)
  second = input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                          process_count=1)
  np.testing.assert_array_equal(first.splits['train'].ids,
                                second.splits['train'].ids)
  assert_same_batches(take(first.train_batches(5), 3),
               take(second.train_batches(5), 3))


def test_cache_is_not_reused_for_changed_file_or_tokenizer(
    text_dir: Path, tmp_path: Path):
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  (data_dir / 'train.txt').write_text((text_dir / 'train.txt').read_text())
  (data_dir / 'valid.txt').write_text('the of\n')
  cache_dir = str(tmp_path / 'shared_cache')
  config = {'source': 'text_files', 'data_dir': str(data_dir),
            'files': {'test': ''}, 'prefetch': 0, 'cache_dir': cache_dir}

  def load(workdir, **overrides):
    return input_pipeline.get_lm_datasets(
        {**config, **overrides}, tmp_path / workdir, process_index=0,
        process_count=1)

  first = load('run')
  assert first.tokenizer.decode(first.splits['valid'].ids) == 'the of\n'
  (data_dir / 'valid.txt').write_text('of the the\n')  # Same vocabulary.
  changed = load('run')
  assert changed.tokenizer.decode(changed.splits['valid'].ids) == (
      'of the the\n')
  # Another run with a capped vocabulary shares the cache directory: its
  # own tokenizer, its own cached ids.
  capped = load('capped', vocab_size=50)
  assert capped.vocab_size == 50 < first.vocab_size
  assert capped.splits['train'].ids.max() == 49
  assert first.splits['train'].ids.max() >= 50
  assert load('capped', vocab_size=50).splits['train'].ids.max() == 49
  assert load('limited', max_lines=10).splits['train'].num_lines == 10


def test_changed_data_with_saved_tokenizer_is_a_vocabulary_error(
    text_dir: Path, tmp_path: Path):
  config = {'source': 'text_files', 'data_dir': str(text_dir),
            'files': {'test': ''}, 'prefetch': 0}
  input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                 process_count=1)
  other = tmp_path / 'other'
  other.mkdir()
  (other / 'train.txt').write_text('completely different words\n')
  (other / 'valid.txt').write_text('words\n')
  with pytest.raises(errors.VocabularyMismatchError, match='tokenizer'):
    input_pipeline.get_lm_datasets({**config, 'data_dir': str(other)},
                                   tmp_path, process_index=0, process_count=1)


def test_embedded_default_char_level_round_trip(tmp_path: Path):
  data = input_pipeline.get_lm_datasets(
      {'tokenizer': 'char', 'eval_splits': ('valid', 'test'), 'prefetch': 0,
       'batch_size': 16, 'seq_len': 64}, tmp_path, process_index=0,
      process_count=1)
  corpus = text_corpora.EmbeddedCorpus()
  for split in ('train', 'valid', 'test'):
    text = '\n'.join(corpus.read_lines(split)) + '\n'
    assert data.num_tokens(split) == len(text)
    assert data.tokenizer.decode(data.splits[split].ids) == text
  assert data.vocab_size < 200
  batch = next(data.train_batches())
  assert batch['inputs'].shape == (16, 64)


def test_sentencepiece_lm_and_prefetch(tmp_path: Path):
  config = {'tokenizer': 'sentencepiece', 'vocab_size': 200,
            'max_lines': 1500, 'batching': 'sentences', 'batch_size': 8,
            'max_length': 32, 'packing': True, 'eval_batch_size': 8}
  data = input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                        process_count=1)
  lines = text_corpora.EmbeddedCorpus().read_lines('train')[:1500]
  assert data.splits['train'].num_lines == 1500
  assert data.tokenizer.decode(data.splits['train'].ids) == '\n'.join(
      lines) + '\n'
  prefetched = take(data.train_batches(start_step=3), 4)
  direct = take(data.batcher('train').iterate(start_step=3), 4)
  assert_same_batches(prefetched, direct)
  assert list(data.eval_batches())


def test_config_errors(tmp_path: Path):
  with pytest.raises(errors.ConfigError, match="'seq_length'"):
    input_pipeline.get_lm_datasets({'seq_length': 35}, tmp_path,
                                   process_index=0, process_count=1)
  with pytest.raises(errors.ConfigError, match='bogus'):
    input_pipeline.get_lm_datasets({'source': 'bogus'}, tmp_path,
                                   process_index=0, process_count=1)
  missing = tmp_path / 'missing.model'
  with pytest.raises(errors.TokenizerNotFoundError, match=str(missing)):
    input_pipeline.get_lm_datasets(
        {'tokenizer': 'sentencepiece', 'spm_model_path': str(missing)},
        tmp_path, process_index=0, process_count=1)
  with pytest.raises(errors.DataFileNotFoundError, match='nowhere'):
    input_pipeline.get_lm_datasets(
        {'source': 'text_files', 'data_dir': str(tmp_path / 'nowhere')},
        tmp_path, process_index=0, process_count=1)


def test_pipeline_does_not_import_the_model_library():
  # Of lstm_flax, only the saved input formats (which know no model): the
  # tokenizer and the audio front end.
  code = ('import sys, input_pipeline, input_pipeline.lm_data; '
          "assert 'lstm_flax.models' not in sys.modules; "
          "assert 'tensorflow' not in sys.modules")
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=Path(__file__).resolve().parents[1])
  source = Path(__file__).resolve().parents[1] / 'input_pipeline'
  imports = re.compile(
      r'^\s*(?:import\s+(lstm_flax\S*)|from\s+(lstm_flax\S*)\s+import\s+(\w+))',
      re.MULTILINE)
  used = set()
  for p in source.glob('*.py'):
    for module, package, name in imports.findall(p.read_text()):
      used.add(module or (f'{package}.{name}' if package == 'lstm_flax' else package))
  assert used == {'lstm_flax.tokenizer', 'lstm_flax.features'}


def test_configdict_default_embedded_word_level(tmp_path: Path):
  config = input_pipeline.default_lm_config()
  config.random_window = True
  config.prefetch = 0
  data = input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                        process_count=1)
  assert data.config['source'] == 'embedded'
  lines = text_corpora.EmbeddedCorpus().read_lines('train')
  assert data.num_tokens('train') == sum(len(l.split()) + 1 for l in lines)
  assert set(data.splits) == {'train', 'valid'}
  full = take(data.train_batches(), 12)
  assert_same_batches(full[7:], take(data.train_batches(start_step=7), 5))
  assert len({b['inputs'].shape[1] for b in full}) > 1
  with pytest.raises(errors.ConfigError, match="'test'.*eval_splits"):
    data.eval_batches('test')
  eval_batches = list(data.eval_batches('valid'))
  assert sum(b['mask'].sum() for b in eval_batches) == (
      data.num_tokens('valid') - 1)


def test_prefetch_thread_keeps_order_raises_and_stops():
  import threading
  import time
  from input_pipeline import prefetch
  batches = [{'x': np.full((2,), i)} for i in range(7)]
  out = list(prefetch.prefetch(iter(batches), 3))
  assert [int(b['x'][0]) for b in out] == list(range(7))

  def failing():
    yield batches[0]
    raise ValueError('bad line 3 in train.txt')

  it = prefetch.prefetch(failing(), 2)
  assert int(next(it)['x'][0]) == 0
  with pytest.raises(ValueError, match='bad line 3'):
    next(it)
  # An endless producer stops once the consumer drops the iterator.
  def endless():
    while True:
      yield batches[0]

  before = set(threading.enumerate())
  it = prefetch.prefetch(endless(), 2)
  next(it)
  (thread,) = set(threading.enumerate()) - before
  del it
  deadline = time.monotonic() + 5
  while thread.is_alive():
    assert time.monotonic() < deadline, 'the prefetch thread did not stop'
    time.sleep(0.05)
