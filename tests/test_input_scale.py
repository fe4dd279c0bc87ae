"""Tests of the scalable data path: chunked, sharded, memory-mapped encoding,
one tokenizer for several processes, crash and disk-full safety."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import input_pipeline
from input_pipeline import cache, errors, text_corpora, text_lines, vocabulary
from batch_helpers import assert_same_batches, take

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def text_dir(tmp_path_factory) -> Path:
  directory = tmp_path_factory.mktemp('text')
  lines = text_corpora.EmbeddedCorpus().read_lines('train')
  train = lines[:3000]
  train[10] = ' '.join(['long'] * 5000)  # 25 KB: longer than a chunk.
  train[11] = ''
  (directory / 'train.txt').write_text('\n'.join(train) + '\n')
  (directory / 'valid.txt').write_text('\n'.join(lines[3000:3300]))
  return directory


def _config(text_dir, **overrides):
  return {'source': 'text_files', 'data_dir': str(text_dir),
          'files': {'test': ''}, 'prefetch': 0, 'batch_size': 4,
          'eval_batch_size': 4, **overrides}


def test_scan_lines_and_file_shards_keep_every_line(tmp_path: Path):
  rng = np.random.default_rng(0)
  for trial in range(20):
    lines = [''.join(rng.choice(list('ab é\t'), rng.integers(0, 40)))
             for _ in range(rng.integers(1, 30))]
    text = '\n'.join(lines) + ('\n' if trial % 2 else '')
    path = tmp_path / f'{trial}.txt'
    path.write_text(text)
    expected = text_lines.split_text_lines(text)
    count, offsets = text_lines.scan_lines(path, range(len(expected) + 1))
    assert count == len(expected)
    data = path.read_bytes()
    for n, offset in enumerate(offsets[:-1]):
      assert data[offset:].decode().split('\n')[0] == expected[n]
    assert offsets[-1] == len(data)
    for num_shards in (1, 2, 3, 7):
      shards = text_lines.FileShards(path, len(data), num_shards)
      got = [line for k in range(num_shards)
             for chunk in shards.chunks(k, 5) for line in chunk]
      assert got == expected, (trial, num_shards)


@pytest.mark.parametrize('tokenizer', ['word', 'char'])
def test_shards_and_chunks_do_not_change_the_data(text_dir, tmp_path,
                                                  tokenizer):
  """Many small shards, tiny chunks (a line longer than a chunk is read
  whole): the same tokens as one shard, as memory maps; the whole-split
  encoder gives the same ids."""
  one = input_pipeline.get_lm_datasets(
      _config(text_dir, tokenizer=tokenizer), tmp_path / 'one',
      process_index=0, process_count=1)
  many = input_pipeline.get_lm_datasets(
      _config(text_dir, tokenizer=tokenizer, shard_mb=0.03, chunk_mb=0.004),
      tmp_path / 'many', process_index=0, process_count=1)
  assert one.tokenizer.fingerprint() == many.tokenizer.fingerprint()
  train = many.splits['train']
  assert isinstance(train.ids, cache.ConcatArray) and len(train.ids.parts) > 4
  assert all(isinstance(p, np.memmap) for p in train.ids.parts)
  lines = (text_dir / 'train.txt').read_text().split('\n')[:-1]
  ids, offsets = one.tokenizer.encode_lines(lines)
  np.testing.assert_array_equal(np.asarray(train.ids), ids)
  np.testing.assert_array_equal(train.offsets, offsets)
  np.testing.assert_array_equal(np.asarray(one.splits['train'].ids), ids)
  assert many.splits['valid'].num_lines == 300  # No final newline.
  assert_same_batches(take(one.train_batches(3), 4), take(many.train_batches(3), 4))
  assert_same_batches(list(one.eval_batches('valid')),
               list(many.eval_batches('valid')))


def test_sentence_batches_from_shards(text_dir, tmp_path):
  config = _config(text_dir, batching='sentences', max_length=16,
                   packing=True)
  one = input_pipeline.get_lm_datasets(config, tmp_path / 'one',
                                       process_index=0, process_count=1)
  many = input_pipeline.get_lm_datasets({**config, 'shard_mb': 0.03},
                                        tmp_path / 'many', process_index=0,
                                        process_count=1)
  assert_same_batches(take(one.train_batches(5), 3), take(many.train_batches(5), 3))


_PROCESS = r'''
import json, logging, sys
logging.basicConfig(level=logging.INFO)
import numpy as np
import input_pipeline
config, workdir, index, count, out = json.loads(sys.argv[1])
data = input_pipeline.get_lm_datasets(config, workdir, process_index=index,
                                      process_count=count)
batches = [b for _, b in zip(range(6), data.train_batches(2))]
np.savez(out, **{f'{i}_{k}': v for i, b in enumerate(batches)
                 for k, v in b.items()})
print('RESULT' + json.dumps(data.preprocessing))
'''


def _run_processes(config, workdir, count, tmp_path, tag):
  env = {**os.environ, 'PYTHONPATH': str(REPO)}
  procs = [subprocess.Popen(
      [sys.executable, '-c', _PROCESS, json.dumps(
          [config, str(workdir), i, count, str(tmp_path / f'{tag}{i}.npz')])],
      env=env, cwd=REPO, text=True, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE) for i in range(count)]
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-4000:]
  stats = [json.loads(out.split('RESULT')[-1]) for out, _ in outputs]
  batches = [dict(np.load(tmp_path / f'{tag}{i}.npz')) for i in range(count)]
  return stats, batches, [err for _, err in outputs]


@pytest.mark.slow
def test_two_processes_one_tokenizer_sharded_encoding(text_dir, tmp_path):
  """Two processes, one shared workdir: process 0 alone trains the
  SentencePiece model, each encodes about half the tokens, and their batches
  concatenate to one process's. Then one and three processes reuse the
  shards (the shards belong to the data, not to the process count)."""
  config = _config(text_dir, tokenizer='sentencepiece', vocab_size=200,
                   shard_mb=0.04, spm_max_training_lines=2000)
  workdir = tmp_path / 'shared'
  stats, batches, logs = _run_processes(config, workdir, 2, tmp_path, 'two')
  assert 'Training a unigram SentencePiece' in logs[0]
  assert 'Training a' not in logs[1]
  reference = input_pipeline.get_lm_datasets(config, tmp_path / 'alone',
                                             process_index=0, process_count=1)
  assert reference.preprocessing['tokens_encoded'] == sum(
      s['tokens_encoded'] for s in stats)
  assert min(s['tokens_encoded'] for s in stats) > 0.3 * sum(
      s['tokens_encoded'] for s in stats)
  full = take(reference.train_batches(2), 6)
  for i, batch in enumerate(full):
    for key, value in batch.items():
      np.testing.assert_array_equal(
          np.concatenate([b[f'{i}_{key}'] for b in batches]), value)
  # Same tokenizer as a lone process builds (the same sampled lines).
  assert (workdir / 'tokenizer' / 'spm.model').read_bytes() == (
      reference.tokenizer.model_proto)
  again, batches3, _ = _run_processes(config, workdir, 1, tmp_path, 'one')
  assert again == [{'shards_encoded': 0, 'tokens_encoded': 0}]
  three = input_pipeline.get_lm_datasets(
      {**config, 'batch_size': 6, 'eval_batch_size': 6}, workdir,
      process_index=2, process_count=3)
  assert three.preprocessing['tokens_encoded'] == 0


def test_crash_leftovers_and_foreign_shards_are_rebuilt(text_dir, tmp_path):
  config = _config(text_dir, shard_mb=0.05)
  first = input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                         process_count=1)
  entry = next((tmp_path / 'data_cache').glob('lm-train-*[!s]'))
  markers = sorted(entry.glob('*.json'))
  assert len(markers) > 2
  # A crash after writing arrays but before the marker; a shard whose
  # marker is from another tokenizer / format; a truncated array.
  markers[0].unlink()
  (entry / ('.' + markers[0].stem + '.ids.npy.tmp-1-x')).write_bytes(b'junk')
  meta = json.loads(markers[1].read_text())
  markers[1].write_text(json.dumps({**meta, 'digest': 'other'}))
  ids_2 = markers[2].with_name(markers[2].stem + '.ids.npy')
  ids_2.write_bytes(ids_2.read_bytes()[:-4])
  again = input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                         process_count=1)
  assert again.preprocessing['shards_encoded'] == 3
  np.testing.assert_array_equal(np.asarray(again.splits['train'].ids),
                                np.asarray(first.splits['train'].ids))


def test_disk_full_is_a_clear_error_and_leaves_no_shard(text_dir, tmp_path,
                                                         monkeypatch):
  config = _config(text_dir, shard_mb=0.05)
  calls = []
  original = cache.NpyAppender.append

  class FullDisk:
    def __init__(self, file):
      self.file = file

    def write(self, data):
      raise OSError(errno.ENOSPC, 'No space left on device')

    def close(self):
      self.file.close()

  def append(self, values):
    calls.append(1)
    if len(calls) == 5:  # The disk fills up in the middle of a shard.
      self.file = FullDisk(self.file)
    return original(self, values)

  monkeypatch.setattr(cache.NpyAppender, 'append', append)
  with pytest.raises(errors.CacheWriteError, match='disk is full'):
    input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                   process_count=1)
  entry = next((tmp_path / 'data_cache').glob('lm-train-*[!s]'))
  assert not list(entry.glob('.*tmp*'))
  complete = len(list(entry.glob('*.json')))
  assert len(list(entry.glob('*.npy'))) == 2 * complete
  monkeypatch.setattr(cache.NpyAppender, 'append', original)
  data = input_pipeline.get_lm_datasets(config, tmp_path, process_index=0,
                                        process_count=1)
  assert data.preprocessing['shards_encoded'] >= 1
  assert data.num_tokens('train') == len(np.asarray(data.splits['train'].ids))


def test_entry_of_ragged_float_rows_round_trips(tmp_path):
  # E.g. speech features: [total_frames, 3] float32 and frames per example.
  fields = {'features': np.dtype((np.float32, (3,))), 'frames': np.int32}
  entry = cache.ShardedEntry(tmp_path, 'speech', {'source': 'x'}, 1, fields)
  rows = np.arange(15, dtype=np.float32).reshape(5, 3)
  entry.write(0, iter([{'features': rows[:2], 'frames': [2]},
                       {'features': rows[2:], 'frames': [3]}]))
  again = cache.ShardedEntry(tmp_path, 'speech', {'source': 'x'}, 1, fields)
  assert again.complete(0)
  np.testing.assert_array_equal(again.open('features')[0], rows)
  np.testing.assert_array_equal(again.open('frames')[0], [2, 3])
  two = cache.ConcatArray([rows[:2], rows[2:]])  # Rows of two shards.
  assert two.shape == (5, 3) and two.ndim == 2
  np.testing.assert_array_equal(two[1:4], rows[1:4])
  # The plain int32 field keys the entry as before (existing caches stay).
  assert again.key['fields']['frames'] == '<i4'
  with pytest.raises(ValueError, match=r'rows of shape \(4,\)'):
    entry.write(0, iter([{'features': np.zeros((1, 4), np.float32)}]))


def test_waiting_for_a_missing_tokenizer_times_out(text_dir, tmp_path):
  with pytest.raises(errors.WaitTimeoutError, match='process 0'):
    input_pipeline.get_lm_datasets(_config(text_dir, wait_timeout_s=0.3),
                                   tmp_path, process_index=1,
                                   process_count=2)


def test_streamed_sentencepiece_sample_is_the_in_memory_one(text_dir):
  lines = (text_dir / 'train.txt').read_text().split('\n')[:-1]
  path = text_dir / 'train.txt'
  shards = text_lines.FileShards(path, path.stat().st_size, 5)
  nonempty = [vocabulary.stats_of('sentencepiece', shards, k, 1000)[
      'nonempty_lines'] for k in range(5)]
  sample = vocabulary.sample_nonempty_lines(shards, nonempty, 500, 3, 1000)
  sentences = [line for line in lines if line.strip()]
  chosen = np.random.default_rng(3).choice(len(sentences), 500,
                                           replace=False)
  assert sample == [sentences[i] for i in np.sort(chosen)]


def test_translation_shards_threads_and_lengths(tmp_path):
  """Parallel files in many line-aligned shards, encoded by two processes
  (threads here): the same pairs, filter and batches as one process."""
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  words = 'ein hund katze läuft schläft auf dem sofa und der mann'.split()
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  for prefix, n in (('train', 600), ('val', 30)):
    de = [' '.join(rng.choice(words, rng.integers(1, 25))) for _ in range(n)]
    en = [line.upper() for line in de]
    (data_dir / f'{prefix}.de').write_text('\n'.join(de) + '\n')
    (data_dir / f'{prefix}.en').write_text('\n'.join(en) + '\n')
  config = {'source': 'parallel_text', 'data_dir': str(data_dir),
            'vocab_size': 60, 'max_length': 20, 'tokens_per_batch': 128,
            'eval_tokens_per_batch': 64, 'batch_size_multiple': 2,
            'prefetch': 0}
  one = input_pipeline.get_translation_datasets(
      config, tmp_path / 'one', process_index=0, process_count=1)
  sharded = {**config, 'shard_mb': 0.002, 'chunk_mb': 0.001}
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    two = list(pool.map(
        lambda i: input_pipeline.get_translation_datasets(
            sharded, tmp_path / 'two', process_index=i, process_count=2),
        range(2)))
  assert one.tokenizer.fingerprint() == two[0].tokenizer.fingerprint()
  assert one.train.num_dropped > 0
  assert len(two[0].train.source_ids.parts) > 4
  for split in ('train', 'eval'):
    a, b = getattr(one, split), getattr(two[1], split)
    np.testing.assert_array_equal(a.raw_index, b.raw_index)
    np.testing.assert_array_equal(a.source_lengths, b.source_lengths)
    np.testing.assert_array_equal(np.asarray(a.target_ids),
                                  np.asarray(b.target_ids))
  assert two[0].eval_references == one.eval_references
  full = take(one.train_batches(), 8)
  hosts = [take(d.train_batches(), 8) for d in two]
  for step, batch in enumerate(full):
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([h[step][key] for h in hosts]), batch[key])
  assert sum(d.preprocessing['tokens_encoded'] for d in two) == (
      one.preprocessing['tokens_encoded'])
