"""Tests of input_pipeline.text_corpora, text_lines, parallel_text: embedded
corpus, text files, bad input."""

from pathlib import Path

import pytest

from input_pipeline import errors, parallel_text, text_corpora, text_lines


def test_embedded_corpus_split_is_fixed_and_disjoint():
  corpus = text_corpora.EmbeddedCorpus()
  splits = {s: corpus.read_lines(s) for s in text_corpora.SPLITS}
  total = sum(len(lines) for lines in splits.values())
  assert total == len(text_corpora._embedded_lines())  # pylint: disable=protected-access
  assert len(splits['train']) == int(total * 0.9)
  assert len(splits['valid']) == int(total * 0.05)
  assert len(splits['test']) == total - len(splits['train']) - len(
      splits['valid'])
  # Contiguous, in order, no blank lines: train + valid + test is the corpus.
  assert splits['train'] + splits['valid'] + splits['test'] == list(
      text_corpora._embedded_lines())  # pylint: disable=protected-access
  assert all(line.strip() and line == line.rstrip()
             for lines in splits.values() for line in lines)
  assert sum(len(line) for line in splits['train']) > 300_000  # Real text.
  assert text_corpora.EmbeddedCorpus().read_lines('valid') == splits['valid']
  fingerprints = {corpus.fingerprint(s) for s in text_corpora.SPLITS}
  assert len(fingerprints) == 3
  assert corpus.fingerprint('train') == text_corpora.EmbeddedCorpus().fingerprint(
      'train')


def test_text_file_lines_split_on_newline_only(tmp_path: Path):
  path = tmp_path / 'train.txt'
  path.write_text(' a b \n\nc\u2028d\x0be\nlast', encoding='utf-8')
  assert text_lines.read_text_file(path) == [' a b ', '', 'c\u2028d\x0be',
                                          'last']
  path.write_text('x\ny\n', encoding='utf-8')
  assert text_lines.read_text_file(path) == ['x', 'y']


def test_missing_directory_names_it(tmp_path: Path):
  missing = tmp_path / 'nope'
  with pytest.raises(errors.DataFileNotFoundError, match=str(missing)):
    text_corpora.TextFilesCorpus(missing, {'train': 'train.txt'})


def test_missing_split_file_names_file_and_key(tmp_path: Path):
  (tmp_path / 'ptb.train.txt').write_text('a b\n')
  corpus = text_corpora.TextFilesCorpus(
      tmp_path, {'train': 'ptb.train.txt', 'valid': 'ptb.valid.txt'})
  assert corpus.read_lines('train') == ['a b']
  with pytest.raises(errors.DataFileNotFoundError) as info:
    corpus.read_lines('valid')
  message = str(info.value)
  assert str(tmp_path / 'ptb.valid.txt') in message
  assert 'files.valid' in message and 'ptb.train.txt' in message
  with pytest.raises(errors.ConfigError, match="'test'"):
    corpus.read_lines('test')


@pytest.mark.parametrize('content', [b'', b'  \n\n \n'])
def test_empty_file_is_an_error(tmp_path: Path, content: bytes):
  path = tmp_path / 'train.txt'
  path.write_bytes(content)
  with pytest.raises(errors.EmptyDataError, match=str(path)):
    text_lines.read_text_file(path)


def test_non_utf8_bytes_name_file_and_line(tmp_path: Path):
  path = tmp_path / 'valid.txt'
  path.write_bytes('first line\nsecond caf\u00e9\n'.encode('utf-8') +
                   b'third \xe9t\xe9\n')
  with pytest.raises(errors.NotUtf8Error) as info:
    text_lines.read_text_file(path)
  message = str(info.value)
  assert f'{path}, line 3' in message and "b'\\xe9'" in message
  assert "encoding_errors='replace'" in message
  assert text_lines.read_text_file(path, 'replace') == [
      'first line', 'second caf\u00e9', 'third \ufffdt\ufffd']
  with pytest.raises(errors.ConfigError, match='ignore'):
    text_lines.read_text_file(path, 'ignore')


def test_parallel_files_must_align(tmp_path: Path):
  (tmp_path / 'train.de').write_text('a\nb\n')
  (tmp_path / 'train.en').write_text('x\n')
  with pytest.raises(errors.ConfigError, match='line-aligned'):
    parallel_text.read_parallel_files(tmp_path, 'train', 'de', 'en')
  with pytest.raises(errors.DataFileNotFoundError, match='val.de'):
    parallel_text.read_parallel_files(tmp_path, 'val', 'de', 'en')
  (tmp_path / 'train.en').write_text('x\ny\n')
  assert parallel_text.read_parallel_files(tmp_path, 'train', 'de', 'en') == (
      ['a', 'b'], ['x', 'y'])
