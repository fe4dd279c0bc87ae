"""Tests of input_pipeline.tokenizers: word, char, SentencePiece, saving."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from input_pipeline import errors, text_corpora, vocabulary
from input_pipeline import tokenizers as tok

TRAIN = ['the cat sat on the mat <unk>', 'the dog sat', 'a cat']


def test_word_vocabulary_order_cap_and_min_count():
  tokenizer = vocabulary.build_word(TRAIN)
  assert tokenizer.vocab == ['<eos>', '<unk>', 'the', 'cat', 'sat', 'a',
                             'dog', 'mat', 'on']
  assert (tokenizer.eos_id, tokenizer.unk_id) == (0, 1)
  assert vocabulary.build_word(TRAIN, max_size=5).vocab == [
      '<eos>', '<unk>', 'the', 'cat', 'sat']
  assert vocabulary.build_word(TRAIN, min_count=2).vocab == [
      '<eos>', '<unk>', 'the', 'cat', 'sat']
  assert tokenizer.encode('the zebra  sat') == [2, 1, 4]
  ids, offsets = tokenizer.encode_lines(['the cat', '', 'dog'])
  assert ids.dtype == np.int32 and offsets.dtype == np.int64
  assert ids.tolist() == [2, 3, 0, 0, 6, 0]
  assert offsets.tolist() == [0, 3, 4, 6]
  assert tokenizer.decode(ids) == 'the cat\n\ndog\n'
  text = ' the  cat sat\n'
  assert tokenizer.decode(tokenizer.encode(text)) == ' '.join(text.split())


def test_char_tokenizer_is_lossless():
  lines = ['Héllo, wörld!', '  indented\ttab', '']
  tokenizer = vocabulary.build_char(lines)
  assert tokenizer.vocab[0] == '<unk>' and '\n' in tokenizer.vocab
  ids, _ = tokenizer.encode_lines(lines)
  assert tokenizer.decode(ids) == '\n'.join(lines) + '\n'
  assert len(ids) == sum(len(line) + 1 for line in lines)
  assert tokenizer.decode(tokenizer.encode('H€')) == 'H\ufffd'


@pytest.fixture(scope='module')
def embedded_train() -> list[str]:
  return text_corpora.EmbeddedCorpus().read_lines('train')[:3000]


@pytest.fixture(scope='module')
def unigram(embedded_train) -> tok.SentencePieceTokenizer:
  return vocabulary.train_sentencepiece(embedded_train, vocab_size=300)


def test_sentencepiece_round_trip_and_specials(unigram, embedded_train):
  assert unigram.vocab_size == 300
  assert (unigram.pad_id, unigram.unk_id, unigram.bos_id,
          unigram.eos_id) == (0, 1, 2, 3)
  valid = text_corpora.EmbeddedCorpus().read_lines('valid')[:200]
  ids, offsets = unigram.encode_lines(valid)
  assert ids.max() < 300 and (ids[offsets[1:] - 1] == unigram.eos_id).all()
  assert unigram.decode(ids) == '\n'.join(valid) + '\n'  # Lossless.
  # Same data and seed: the same model.
  again = vocabulary.train_sentencepiece(embedded_train, vocab_size=300)
  assert again.fingerprint() == unigram.fingerprint()


def test_sentencepiece_bpe(embedded_train):
  bpe = vocabulary.train_sentencepiece(embedded_train[:1000], 200,
                                      model_type='bpe')
  text = 'The "assert" statement'
  assert bpe.decode(bpe.encode(text)) == text
  assert len(bpe.encode(text)) < len(text)
  with pytest.raises(errors.ConfigError, match='wordpiece'):
    vocabulary.train_sentencepiece(embedded_train, 200, model_type='wordpiece')
  # Fewer pieces than characters: a ConfigError that says what to set.
  with pytest.raises(errors.ConfigError,
                     match=r'vocab_size=8 is too small .* need \d+\. Set the data '
                           r'config vocab_size to at least \d+'):
    vocabulary.train_sentencepiece(embedded_train[:50], 8)


def test_tokenizer_is_saved_and_reused(tmp_path: Path):
  calls = []

  def lines():
    calls.append(1)
    return TRAIN

  spec = {'kind': 'word', 'vocab_size': 0, 'min_count': 1}
  first = tok.get_tokenizer(spec, tmp_path, lines, 'fp-a')
  assert (tmp_path / 'tokenizer' / 'tokenizer.json').is_file()
  second = tok.get_tokenizer(spec, tmp_path, lines, 'fp-a')
  assert len(calls) == 1  # Reused without reading the data.
  assert second.vocab == first.vocab
  # Other data fingerprint, same vocabulary: accepted.
  tok.get_tokenizer(spec, tmp_path, lines, 'fp-b')
  assert len(calls) == 2


def test_vocabulary_mismatch_is_an_error(tmp_path: Path):
  spec = {'kind': 'word', 'vocab_size': 0, 'min_count': 1}
  tok.get_tokenizer(spec, tmp_path, lambda: TRAIN, 'fp-a')
  with pytest.raises(errors.VocabularyMismatchError) as info:
    tok.get_tokenizer(spec, tmp_path, lambda: ['other words here'], 'fp-b')
  message = str(info.value)
  assert str(tmp_path / 'tokenizer') in message and 'fresh workdir' in message
  assert "saved 'the', now 'here'" in message
  with pytest.raises(errors.VocabularyMismatchError, match='char'):
    tok.get_tokenizer({**spec, 'kind': 'char'}, tmp_path, lambda: TRAIN,
                      'fp-a')


def test_sentencepiece_model_path(tmp_path: Path, unigram):
  missing = tmp_path / 'missing.model'
  spec = {'kind': 'sentencepiece', 'vocab_size': 0,
          'spm_model_path': str(missing)}
  with pytest.raises(errors.TokenizerNotFoundError, match=str(missing)):
    tok.get_tokenizer(spec, tmp_path / 'run', lambda: TRAIN, 'fp')
  model = tmp_path / 'given.model'
  model.write_bytes(unigram.model_proto)
  spec['spm_model_path'] = str(model)
  loaded = tok.get_tokenizer(spec, tmp_path / 'run', lambda: TRAIN, 'fp')
  assert loaded.fingerprint() == unigram.fingerprint()
  assert (tmp_path / 'run' / 'tokenizer' / 'spm.model').read_bytes() == (
      unigram.model_proto)
  other = vocabulary.train_sentencepiece(TRAIN * 5, 20)
  model.write_bytes(other.model_proto)
  with pytest.raises(errors.VocabularyMismatchError, match=str(model)):
    tok.get_tokenizer(spec, tmp_path / 'run', lambda: TRAIN, 'fp')


def test_trained_sentencepiece_spec_change_is_an_error(tmp_path: Path):
  spec = {'kind': 'sentencepiece', 'vocab_size': 30, 'spm_model_path': ''}
  first = tok.get_tokenizer(spec, tmp_path, lambda: TRAIN * 5, 'fp')
  assert tok.get_tokenizer(spec, tmp_path, lambda: [], 'fp').fingerprint() == (
      first.fingerprint())  # Reused, not retrained.
  with pytest.raises(errors.VocabularyMismatchError, match="'vocab_size': 40"):
    tok.get_tokenizer({**spec, 'vocab_size': 40}, tmp_path, lambda: TRAIN, 'fp')


@pytest.mark.parametrize('kind', ['word', 'char', 'sentencepiece'])
def test_save_load_round_trip(tmp_path: Path, kind: str, unigram):
  built = {'word': lambda: vocabulary.build_word(TRAIN),
           'char': lambda: vocabulary.build_char(TRAIN + ['\u00e9\t"']),
           'sentencepiece': lambda: unigram}[kind]()
  tok.save(built, tmp_path, {'spec': {'kind': kind}})
  loaded, metadata = tok.load_saved(tmp_path)
  assert type(loaded) is type(built) and metadata['spec'] == {'kind': kind}
  assert loaded.fingerprint() == built.fingerprint() == metadata['fingerprint']
  assert (loaded.pad_id, loaded.unk_id, loaded.bos_id, loaded.eos_id) == (
      built.pad_id, built.unk_id, built.bos_id, built.eos_id)
  text = 'the cat sat on the mat\n\u00e9 "dog"\n'
  ids, _ = built.encode_lines(text.splitlines())
  np.testing.assert_array_equal(loaded.encode_lines(text.splitlines())[0], ids)
  assert loaded.decode(ids) == built.decode(ids)
  assert tok.load_saved(tmp_path / 'empty') is None


def test_same_sentencepiece_data_touched_or_moved_is_reused(tmp_path: Path):
  spec = {'kind': 'sentencepiece', 'vocab_size': 30, 'spm_model_path': '',
          'min_count': 1}
  first = tok.get_tokenizer(spec, tmp_path, lambda: TRAIN * 5, 'fp-a')
  # Another data fingerprint (file touched, copied or moved), same text, and
  # a setting that does not concern SentencePiece: retrained, identical.
  again = tok.get_tokenizer({**spec, 'min_count': 3}, tmp_path,
                            lambda: TRAIN * 5, 'fp-b')
  assert again.fingerprint() == first.fingerprint()
  with pytest.raises(errors.VocabularyMismatchError,
                     match='training data changed'):
    tok.get_tokenizer(spec, tmp_path, lambda: ['other text'] * 20, 'fp-c')


def test_sentencepiece_sampling_is_the_same_in_every_process(embedded_train):
  code = ('import sys; from input_pipeline import text_corpora, vocabulary; '
          "lines = text_corpora.EmbeddedCorpus().read_lines('train')[:3000]; "
          'print(vocabulary.train_sentencepiece('
          'lines, 200, max_training_lines=500).fingerprint())')
  other_process = subprocess.run(
      [sys.executable, '-c', code], check=True, capture_output=True, text=True,
      cwd=Path(__file__).resolve().parents[1]).stdout.strip()
  here = vocabulary.train_sentencepiece(embedded_train, 200,
                                        max_training_lines=500)
  assert here.fingerprint() == other_process
  assert vocabulary.train_sentencepiece(
      embedded_train, 200, max_training_lines=500, seed=1).fingerprint() != (
          other_process)
