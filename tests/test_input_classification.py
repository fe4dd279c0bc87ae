"""Tests of the sentence classification data: SST-2 counts, labels, bad lines,
truncation, batches (buckets, eval coverage, resumption, hosts), a given
tokenizer, the cache, TFDS (mocked) and encode_lines."""

import logging
from pathlib import Path

import numpy as np
import pytest

import input_pipeline
from input_pipeline import errors, labelled_text, text_lines
from input_pipeline import tokenizers, vocabulary
from batch_helpers import assert_same_batches, take

WORDS = [f'w{i}' for i in range(60)]


def _load(config, workdir, **kwargs):
  kwargs.setdefault('process_index', 0)
  kwargs.setdefault('process_count', 1)
  return input_pipeline.get_classification_datasets(
      {'prefetch': 0, **config}, workdir, **kwargs)


def _lines(count, labels=('neg', 'pos'), seed=0, max_words=40):
  rng = np.random.default_rng(seed)
  return [f'{labels[rng.integers(len(labels))]} ' + ' '.join(
      rng.choice(WORDS, rng.integers(1, max_words + 1))) for _ in range(count)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
  """train (203 examples, one empty line), valid (37), test (11)."""
  directory = tmp_path / 'data'
  directory.mkdir()
  train = _lines(203)
  train.insert(5, '')
  (directory / 'train.txt').write_text('\n'.join(train) + '\n')
  (directory / 'valid.txt').write_text('\n'.join(_lines(37, seed=1)) + '\n')
  (directory / 'test.txt').write_text('\n'.join(_lines(11, seed=2)) + '\n')
  return directory


def _config(data_dir: Path, files=None, **overrides):
  return {'data_dir': str(data_dir),
          'files': {'train': 'train.txt', 'valid': 'valid.txt',
                    'test': 'test.txt', **(files or {})},
          'batch_size': 8, 'eval_batch_size': 6, 'max_length': 40,
          'bucket_boundaries': (4, 8, 16, 24), **overrides}


def _rows(data, split):
  """Example index -> its (untruncated) token ids."""
  s = data.splits[split]
  return [s.ids[a:b] for a, b in zip(s.offsets[:-1], s.offsets[1:])]


# ------------------------------------------------------------- SST-2 --------


def test_sst2_counts_and_labels(shared_data: Path, tmp_path: Path):
  config = input_pipeline.default_classification_config()
  config.data_dir = str(shared_data / 'sst2')
  config.prefetch = 0
  data = input_pipeline.get_classification_datasets(
      config, tmp_path, process_index=0, process_count=1)
  assert data.num_examples('train') == 6_920
  assert data.num_examples('valid') == 872
  assert int((data.splits['train'].labels == 1).sum()) == 3_610
  assert int((data.splits['valid'].labels == 1).sum()) == 444
  assert data.label_names == ['0', '1'] and data.num_classes == 2
  assert input_pipeline.load_label_names(tmp_path) == ['0', '1']
  assert data.splits['train'].ids.dtype == np.int32
  assert data.splits['train'].offsets.dtype == np.int64
  assert data.splits['train'].labels.dtype == np.int32
  assert data.num_truncated('train') == 0  # Longest: 52 words.
  assert data.steps_per_epoch() == 6_920 // 32 == len(
      data.batcher('train').plan(3))
  with (shared_data / 'sst2' / 'stsa.binary.dev').open() as f:
    label, text = f.readline().rstrip('\n').split(' ', 1)
  first = data.splits['valid']
  assert data.tokenizer.decode(first.ids[:first.offsets[1]]) == text
  assert first.labels[0] == int(label)
  seen = np.concatenate([b['example_index'] for b in data.eval_batches()])
  np.testing.assert_array_equal(np.sort(seen[seen >= 0]), np.arange(872))


# ------------------------------------------------------- labels, lines ------


@pytest.mark.parametrize('line, message', [
    ('pos', r"line 3: 'pos' has no space after the label"),
    (' a good film', 'line 3: .* has an empty label'),
    ('pos ', "line 3: label 'pos' has no text"),
])
def test_bad_line_names_file_and_line(tmp_path: Path, line, message):
  (tmp_path / 'train.txt').write_text(f'neg w1 w2\n\n{line}\npos w3\n')
  (tmp_path / 'valid.txt').write_text('neg w1\n')
  with pytest.raises(errors.MalformedLineError,
                     match=str(tmp_path / 'train.txt') + ', ' + message):
    _load(_config(tmp_path), tmp_path / 'run')


def test_unknown_eval_label_names_file_line_and_label(tmp_path: Path):
  (tmp_path / 'train.txt').write_text('neg w1 w2\npos w3\n')
  (tmp_path / 'valid.txt').write_text('neg w1\n\nneutral w2 w3\n')
  with pytest.raises(errors.UnknownLabelError) as info:
    _load(_config(tmp_path, files={'test': ''}), tmp_path / 'run')
  assert str(tmp_path / 'valid.txt') + ', line 3: label ' in str(info.value)
  assert "'neutral'" in str(info.value) and "['neg', 'pos']" in str(info.value)


def test_empty_lines_skipped_and_counted(data_dir: Path, tmp_path: Path):
  data = _load(_config(data_dir), tmp_path)
  assert data.num_examples('train') == 203
  assert data.splits['train'].num_skipped == 1
  # Lines 1-5 then the empty line 6: example 5 is line 7.
  assert data.splits['train'].source_index[4:6].tolist() == [5, 7]
  assert data.num_examples('valid') == 37 and data.num_examples('test') == 11
  assert data.eval_splits == ('valid', 'test')


def test_label_vocabulary_sorted_numerically_or_as_strings(tmp_path: Path):
  (tmp_path / 'train.txt').write_text('10 a\n2 b\n-1 c\n2 d\n')
  (tmp_path / 'valid.txt').write_text('-1 a\n10 b\n')
  data = _load(_config(tmp_path, batch_size=2, files={'test': ''}),
               tmp_path / 'numeric')
  assert data.label_names == ['-1', '2', '10']
  assert data.splits['train'].labels.tolist() == [2, 1, 0, 1]
  assert data.splits['valid'].labels.tolist() == [0, 2]
  assert labelled_text.sorted_label_names(['b', 'a', '1']) == ['1', 'a', 'b']
  assert input_pipeline.load_label_names(tmp_path / 'numeric') == [
      '-1', '2', '10']
  # Another label set for the same run: an error, not silently other classes.
  (tmp_path / 'train.txt').write_text('10 a\n2 b\n3 c\n2 d\n')
  with pytest.raises(errors.LabelMismatchError, match='labels.json'):
    _load(_config(tmp_path, batch_size=2, files={'test': '', 'valid': ''}),
          tmp_path / 'numeric')


def test_truncation_is_counted_and_logged(data_dir: Path, tmp_path: Path,
                                          caplog):
  with caplog.at_level(logging.WARNING):
    data = _load(_config(data_dir, max_length=12), tmp_path)
  lengths = data.splits['train'].lengths
  assert data.num_truncated('train') == int((lengths > 12).sum()) > 0
  assert data.num_truncated('valid') == int(
      (data.splits['valid'].lengths > 12).sum())
  assert f"Truncated {data.num_truncated('train')} of 203 train" in caplog.text
  rows = _rows(data, 'train')
  for batch in take(data.train_batches(), 30):
    assert batch['tokens'].shape[1] <= 12 and batch['lengths'].max() <= 12
    for index, n, tokens in zip(batch['example_index'], batch['lengths'],
                                batch['tokens']):
      assert n == min(12, len(rows[index]))
      np.testing.assert_array_equal(tokens[:n], rows[index][:n])


# ------------------------------------------------------------ batches -------


@pytest.mark.parametrize('split, size', [('valid', 6), ('test', 4),
                                         ('train', 7)])
def test_eval_batches_every_example_exactly_once(data_dir: Path,
                                                  tmp_path: Path, split, size):
  data = _load(_config(data_dir, eval_batch_size=size), tmp_path)
  n = data.num_examples(split)
  batches = list(data.eval_batches(split))
  assert len(batches) == -(-n // size)
  index = np.concatenate([b['example_index'] for b in batches])
  np.testing.assert_array_equal(np.sort(index[index >= 0]), np.arange(n))
  assert (index[:n] >= 0).all() and (index[n:] == -1).all()
  padding = np.concatenate([b['lengths'][b['example_index'] < 0]
                            for b in batches])
  assert not padding.any() and len(padding) == len(batches) * size - n
  assert not np.concatenate([b['labels'][b['example_index'] < 0]
                             for b in batches]).any()
  rows, labels = _rows(data, split), data.splits[split].labels
  for batch in batches:
    assert batch['tokens'].shape[0] == size
    for index, n_tokens, tokens, label in zip(
        batch['example_index'], batch['lengths'], batch['tokens'],
        batch['labels']):
      if index >= 0:
        np.testing.assert_array_equal(tokens[:n_tokens], rows[index])
        assert label == labels[index]
      assert not tokens[n_tokens:].any()  # Padded with pad_id 0.
  lengths = np.concatenate([b['lengths'] for b in batches])[:n]
  assert (np.diff(lengths) >= 0).all()  # Sorted by length.


def test_bucket_padding(data_dir: Path, tmp_path: Path):
  data = _load(_config(data_dir), tmp_path)
  boundaries = [4, 8, 16, 24, 40]
  batches = take(data.train_batches(), 60) + list(data.eval_batches())
  widths = set()
  for batch in batches:
    width = batch['tokens'].shape[1]
    longest = int(batch['lengths'].max())
    assert width in boundaries and width >= longest
    assert width == min(b for b in boundaries if b >= longest)
    widths.add(width)
  assert len(widths) > 2
  train = take(data.train_batches(), 25)  # One epoch: 203 // 8.
  waste = sum(b['tokens'].size - b['lengths'].sum() for b in train)
  assert waste < 0.3 * sum(b['tokens'].size for b in train)


def test_train_epochs_shuffled_fixed_size_and_seeded(data_dir: Path,
                                                     tmp_path: Path):
  data = _load(_config(data_dir), tmp_path)
  batcher = data.batcher('train')
  assert data.steps_per_epoch() == 203 // 8 == len(batcher.plan(0))
  epoch0, epoch1 = batcher.plan(0), batcher.plan(1)
  assert epoch0.shape == (25, 8)
  assert len(set(epoch0.ravel().tolist())) == 200  # 3 left out, no repeats.
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(epoch0, data.batcher('train').plan(0))
  other = _load(_config(data_dir, shuffle_seed=1), tmp_path)
  assert not np.array_equal(other.batcher('train').plan(0), epoch0)
  batch = next(data.train_batches())
  assert {k: (v.shape[0], v.dtype) for k, v in batch.items()} == {
      'tokens': (8, np.int32), 'lengths': (8, np.int32),
      'labels': (8, np.int32), 'example_index': (8, np.int32)}
  assert (batch['example_index'] >= 0).all() and batch['lengths'].min() >= 1


def test_resume_from_step_k_equals_uninterrupted(data_dir: Path,
                                                 tmp_path: Path):
  data = _load(_config(data_dir, prefetch=2), tmp_path)
  full = take(data.train_batches(), 60)  # 25 per epoch: crosses two.
  for start in (1, 24, 25, 26, 51):
    assert_same_batches(full[start:], take(data.train_batches(start_step=start),
                                     60 - start))


def test_two_processes_rows_make_the_single_process_batch(data_dir: Path,
                                                          tmp_path: Path):
  single = _load(_config(data_dir), tmp_path)
  hosts = [_load(_config(data_dir), tmp_path, process_index=p,
                 process_count=2) for p in range(2)]
  for split, batches_of in (('train', lambda d: take(d.train_batches(), 30)),
                            ('valid', lambda d: list(d.eval_batches()))):
    expected = batches_of(single)
    per_host = [batches_of(h) for h in hosts]
    assert per_host[0][0]['tokens'].shape[0] == expected[0][
        'tokens'].shape[0] // 2, split
    for step, batch in enumerate(expected):
      for key in batch:
        np.testing.assert_array_equal(
            np.concatenate([h[step][key] for h in per_host]), batch[key],
            err_msg=f'{split} {step} {key}')
  with pytest.raises(errors.BatchSizeError, match='eval_batch_size=6'):
    _load(_config(data_dir), tmp_path, process_index=0, process_count=4)


# --------------------------------------------------- tokenizer, cache -------


def test_given_tokenizer_is_used_as_is_and_saved(data_dir: Path,
                                                 tmp_path: Path):
  lm_tokenizer = vocabulary.build_word(
      ['w1 w2 w3 w4 w5 w1 w2 the of'])  # E.g. a language model's.
  data = _load(_config(data_dir, vocab_size=7), tmp_path,
               tokenizer=lm_tokenizer)
  assert data.tokenizer is lm_tokenizer and data.vocab_size == 9
  rows = _rows(data, 'valid')
  with (data_dir / 'valid.txt').open() as f:
    words = f.readline().split()[1:]
  expected = [lm_tokenizer.token_to_id.get(w, lm_tokenizer.unk_id)
              for w in words]
  np.testing.assert_array_equal(rows[0], expected)
  assert (data.splits['train'].ids == lm_tokenizer.unk_id).any()
  saved = input_pipeline.load_tokenizer(tmp_path)
  assert saved.fingerprint() == lm_tokenizer.fingerprint()
  # A restart without it uses the saved (given) one, not a built one.
  again = _load(_config(data_dir), tmp_path)
  assert again.tokenizer.fingerprint() == lm_tokenizer.fingerprint()
  np.testing.assert_array_equal(again.splits['train'].ids,
                                data.splits['train'].ids)
  other = vocabulary.build_word(['w1 w2'])
  with pytest.raises(errors.VocabularyMismatchError, match='given'):
    _load(_config(data_dir), tmp_path, tokenizer=other)
  with pytest.raises(errors.TokenizerNotFoundError, match='nowhere'):
    input_pipeline.load_tokenizer(tmp_path / 'nowhere')


def test_second_start_reads_and_encodes_nothing(data_dir: Path,
                                               tmp_path: Path, monkeypatch):
  config = _config(data_dir, lowercase=True, add_eos=True)
  first = _load(config, tmp_path)
  assert len(list((tmp_path / 'data_cache').glob(
      'classification-*/*.ids.npy'))) == 3

  def fail(*args, **kwargs):
    raise AssertionError('text was read or encoded although it is cached')

  monkeypatch.setattr(tokenizers.Tokenizer, 'encode_lines', fail)
  monkeypatch.setattr(vocabulary, 'build_word', fail)
  monkeypatch.setattr(text_lines, 'read_text_file', fail)
  second = _load(config, tmp_path)
  for split in ('train', 'valid', 'test'):
    for key in ('ids', 'offsets', 'labels', 'source_index'):
      np.testing.assert_array_equal(getattr(first.splits[split], key),
                                    getattr(second.splits[split], key))
  assert second.label_names == first.label_names
  assert second.splits['train'].num_skipped == 1
  assert_same_batches(take(first.train_batches(3), 4),
               take(second.train_batches(3), 4))
  # Other options are other entries (here: without eos).
  monkeypatch.undo()
  third = _load(_config(data_dir, lowercase=True,
                       cache_dir=str(tmp_path / 'data_cache')),
                tmp_path / 'other')
  assert len(third.splits['train'].ids) == len(
      first.splits['train'].ids) - 203


def test_add_eos_and_lowercase(tmp_path: Path):
  (tmp_path / 'train.txt').write_text('a The Film\nb the film\n')
  (tmp_path / 'valid.txt').write_text('a THE\n')
  data = _load(_config(tmp_path, files={'test': ''}, batch_size=2,
                       lowercase=True, add_eos=True), tmp_path / 'run')
  assert data.tokenizer.vocab == ['<eos>', '<unk>', 'film', 'the']
  assert _rows(data, 'valid')[0].tolist() == [3, 0]
  batch = data.encode_lines(['THE FILM'])
  assert batch['tokens'][0, :3].tolist() == [3, 2, 0]
  assert batch['lengths'].tolist() == [3]


def test_config_errors(data_dir: Path, tmp_path: Path):
  with pytest.raises(errors.ConfigError, match="'text_field'"):
    _load({'text_field': 'x'}, tmp_path)
  with pytest.raises(errors.ConfigError, match='data_dir'):
    _load({}, tmp_path)
  with pytest.raises(errors.ConfigError, match="'bogus'"):
    _load({'source': 'bogus'}, tmp_path)
  with pytest.raises(errors.DataFileNotFoundError, match='files.valid'):
    _load(_config(data_dir, files={'valid': 'nope.txt'}), tmp_path)
  with pytest.raises(errors.ConfigError, match='batch_size=300'):
    _load(_config(data_dir, batch_size=300), tmp_path)
  data = _load(_config(data_dir, files={'test': ''}), tmp_path)
  with pytest.raises(errors.ConfigError, match="'test'.*files"):
    data.eval_batches('test')
  with pytest.raises(errors.DataFileNotFoundError, match='labels'):
    input_pipeline.load_label_names(tmp_path / 'nowhere')


def test_encode_lines_matches_the_data(data_dir: Path, tmp_path: Path):
  data = _load(_config(data_dir, max_length=12), tmp_path)
  texts = [line.split(' ', 1)[1] for line in
           (data_dir / 'valid.txt').read_text().splitlines()]
  batch = data.encode_lines(texts[:5])
  assert batch['example_index'].tolist() == list(range(5))
  assert not batch['labels'].any()
  rows = _rows(data, 'valid')
  assert batch['tokens'].shape[1] in (4, 8, 12)
  for i in range(5):
    n = min(12, len(rows[i]))
    assert batch['lengths'][i] == n
    np.testing.assert_array_equal(batch['tokens'][i, :n], rows[i][:n])
  unknown = data.encode_lines(['never seen words'])
  assert unknown['tokens'][0, :3].tolist() == [data.tokenizer.unk_id] * 3
  with pytest.raises(errors.EmptyDataError, match='line 2 is blank'):
    data.encode_lines(['w1', ' '])


def test_sentencepiece_and_char_tokenizers(data_dir: Path, tmp_path: Path):
  spm = _load(_config(data_dir, tokenizer='sentencepiece', vocab_size=80),
              tmp_path / 'spm')
  assert spm.vocab_size <= 80 and spm.tokenizer.kind == 'sentencepiece'
  assert spm.splits['train'].ids.max() < spm.vocab_size
  char = _load(_config(data_dir, tokenizer='char', max_length=64),
               tmp_path / 'char')
  first = (data_dir / 'valid.txt').read_text().splitlines()[0].split(' ', 1)
  assert char.tokenizer.decode(_rows(char, 'valid')[0]) == first[1]


# --------------------------------------------------------------- TFDS -------


@pytest.fixture(scope='module')
def tfds():
  tf = pytest.importorskip('tensorflow')
  tf.config.set_visible_devices([], 'GPU')
  return pytest.importorskip('tensorflow_datasets')


def test_tfds_imdb_reviews(tfds, tmp_path: Path):
  with tfds.testing.mock_data(num_examples=24):
    data = _load({'source': 'tfds', 'tfds_name': 'imdb_reviews',
                  'text_key': 'text',
                  'tfds_splits': {'valid': 'test', 'test': 'unsupervised'},
                  'batch_size': 4, 'eval_batch_size': 5, 'lowercase': True},
                 tmp_path)
    examples = list(tfds.as_numpy(tfds.builder('imdb_reviews').as_dataset(
        split='test')))
  assert data.label_names == ['neg', 'pos'] and data.num_classes == 2
  assert input_pipeline.load_label_names(tmp_path) == ['neg', 'pos']
  valid = data.splits['valid']
  kept = [e for e in examples if e['text'].strip()]
  assert data.num_examples('valid') + valid.num_skipped == 24 == len(examples)
  np.testing.assert_array_equal(valid.labels, [e['label'] for e in kept])
  rows = _rows(data, 'valid')
  assert data.tokenizer.decode(rows[0]) == ' '.join(
      kept[0]['text'].decode().lower().split())
  index = np.concatenate([b['example_index'] for b in data.eval_batches()])
  np.testing.assert_array_equal(np.sort(index[index >= 0]),
                                np.arange(data.num_examples('valid')))
  assert data.num_examples('test') > 0  # Any split name in tfds_splits.
  assert next(data.train_batches())['tokens'].shape[0] == 4


def _glue_with_unlabelled_test(self, split, **kwargs):
  """A mock ``as_dataset``: the test split's labels are -1, as in GLUE."""
  del self, kwargs
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  label = -1 if split == 'test' else 1
  return tf.data.Dataset.from_tensor_slices({
      'sentence': [b'a fine film', b'a dull one', b'fine'],
      'label': np.array([label, label - 1 if label > 0 else -1, label],
                        np.int64),
      'idx': np.arange(3, dtype=np.int32)})


def test_tfds_glue_sst2(tfds, tmp_path: Path):
  config = {'source': 'tfds', 'tfds_name': 'glue/sst2', 'batch_size': 2,
            'eval_batch_size': 2}
  with tfds.testing.mock_data(num_examples=10):
    data = _load(config, tmp_path / 'mocked')
  assert data.label_names == ['negative', 'positive']
  assert data.num_examples('train') + data.splits['train'].num_skipped == 10
  with tfds.testing.mock_data(as_dataset_fn=_glue_with_unlabelled_test):
    data = _load(config, tmp_path / 'glue')
    assert data.splits['valid'].labels.tolist() == [1, 0, 1]
    assert data.tokenizer.decode(_rows(data, 'valid')[1]) == 'a dull one'
    with pytest.raises(errors.UnknownLabelError,
                       match=r"split 'test', example 0: label -1.* "
                             r"unlabelled.*tfds_splits"):
      _load({**config, 'tfds_splits': {'test': 'test'}}, tmp_path / 'test')
    with pytest.raises(errors.TfdsError, match="'txt'.*text_key"):
      _load({**config, 'text_key': 'txt'}, tmp_path / 'key')
    with pytest.raises(errors.TfdsError, match="'idx'.*not a ClassLabel"):
      _load({**config, 'label_key': 'idx'}, tmp_path / 'key')
