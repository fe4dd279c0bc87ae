"""Vocabularies from training text: word counts, characters, SentencePiece.

Makes :mod:`lstm_flax.tokenizer` tokenizers (the one implementation of the
saved format and of applying it) from the training split:

* word (:func:`word_from_counts`): whitespace words ordered by count (ties by
  word), optional size cap and minimum count, ``<eos>`` = 0 and ``<unk>`` = 1.
  For PTB / WikiText, ``<unk>`` and ``<eos>`` are counted as words, giving the
  standard 10,000 / 33,278 vocabularies.
* char (:func:`char_from_chars`): id 0 is ``<unk>``, the rest the sorted
  characters of the training split plus ``\\n``, the end-of-line marker.
* SentencePiece (:func:`train_sentencepiece`): a unigram or BPE model trained
  on (a seeded sample of) the training split, identity normalisation and no
  whitespace collapsing (detokenisation gives back the text), pad = 0,
  unk = 1, bos = 2, eos = 3; or loaded from a model file
  (:func:`load_sentencepiece`).

The training text is streamed: :func:`stats_of` gathers one shard's counts
(words, characters or non-empty lines) and :func:`build` merges them;
:func:`sample_nonempty_lines` streams SentencePiece's training sample.
"""

from __future__ import annotations

import collections
import io
import itertools
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from input_pipeline import errors
from lstm_flax.tokenizer import (CharTokenizer, EOS, SentencePieceTokenizer,
                                 Tokenizer, UNK, WordTokenizer)


def word_from_counts(counts: Mapping[str, int], max_size: int = 0,
                     min_count: int = 1) -> WordTokenizer:
  """The word vocabulary of word counts.

  Args:
    counts: word -> count in the training text.
    max_size: keep at most this many tokens including ``<eos>`` and
      ``<unk>`` (0: no cap).
    min_count: drop words seen fewer times.
  """
  counts = collections.Counter(counts)
  counts.pop(EOS, None)
  counts.pop(UNK, None)
  words = sorted((w for w, c in counts.items() if c >= min_count),
                 key=lambda w: (-counts[w], w))
  if max_size:
    if max_size < 3:
      raise errors.ConfigError(
          f'vocab_size={max_size} is too small for a word vocabulary '
          f'(needs {EOS}, {UNK} and at least one word).')
    words = words[:max_size - 2]
  return WordTokenizer([EOS, UNK, *words])


def build_word(lines: Iterable[str], max_size: int = 0,
               min_count: int = 1) -> WordTokenizer:
  """The word vocabulary of training lines (see :func:`word_from_counts`)."""
  counts: collections.Counter = collections.Counter()
  for line in lines:
    counts.update(line.split())
  return word_from_counts(counts, max_size, min_count)


def char_from_chars(chars: Iterable[str]) -> CharTokenizer:
  """The character vocabulary of a set of characters (``\\n`` is added)."""
  return CharTokenizer([UNK, *sorted(set(chars) | {'\n'})])


def build_char(lines: Iterable[str]) -> CharTokenizer:
  """The character vocabulary of training lines."""
  return char_from_chars(itertools.chain.from_iterable(lines))


def train_sentencepiece(lines: Iterable[str], vocab_size: int,
                        model_type: str = 'unigram',
                        character_coverage: float = 1.0,
                        max_training_lines: int = 1_000_000, seed: int = 0,
                        ) -> SentencePieceTokenizer:
  """Trains a SentencePiece model on ``lines`` (empty lines skipped).

  Args:
    lines: training text.
    vocab_size: pieces including pad / unk / bos / eos. A soft limit: on a
      corpus too small for it, SentencePiece makes fewer pieces.
    model_type: ``'unigram'`` or ``'bpe'``.
    character_coverage: fraction of characters covered by the vocabulary.
    max_training_lines: at most this many lines (sampled with ``seed``) are
      used for training.
    seed: seeds SentencePiece's sampling, for reproducible models.
  """
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  if model_type not in ('unigram', 'bpe'):
    raise errors.ConfigError(
        f"spm_model_type={model_type!r}; use 'unigram' or 'bpe'.")
  sentences = [line for line in lines if line.strip()]
  if not sentences:
    raise errors.EmptyDataError(
        'No training text to train a SentencePiece model on.')
  if 0 < max_training_lines < len(sentences):
    # Sampled here, not by SentencePiece: its sampling differs from one
    # process to the next whatever the seed, so hosts (and restarts) would
    # train different models.
    chosen = np.random.default_rng(seed).choice(
        len(sentences), max_training_lines, replace=False)
    sentences = [sentences[i] for i in np.sort(chosen).tolist()]
  spm.set_random_generator_seed(seed)
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model,
        vocab_size=vocab_size, model_type=model_type,
        character_coverage=character_coverage,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        normalization_rule_name='identity', remove_extra_whitespaces=False,
        input_sentence_size=0, shuffle_input_sentence=False,
        max_sentence_length=1 << 16, hard_vocab_limit=False, num_threads=1,
        minloglevel=2)
  except RuntimeError as e:
    needed = re.search(r'smaller than required_chars\. \d+ vs (\d+)', str(e))
    if needed is None:
      raise
    raise errors.ConfigError(
        f'vocab_size={vocab_size} is too small for SentencePiece on this '
        f'text: its characters (at spm_character_coverage='
        f'{character_coverage}) and the 4 special pieces need '
        f'{needed.group(1)}. Set the data config vocab_size to at least '
        f'{needed.group(1)} (more leaves room for subwords), or lower '
        'spm_character_coverage (e.g. 0.9995) to map rare characters to '
        '<unk>.') from None
  return SentencePieceTokenizer(model.getvalue())


def load_sentencepiece(path: str | os.PathLike[str]) -> SentencePieceTokenizer:
  """The SentencePiece model file ``path`` (data config ``spm_model_path``)."""
  path = Path(path).expanduser()
  if not path.is_file():
    raise errors.TokenizerNotFoundError(
        f'SentencePiece model {path} (data config spm_model_path) does not '
        'exist. Point spm_model_path at an existing .model file, or set it '
        "to '' to train one on the training split.")
  return SentencePieceTokenizer(path.read_bytes())


def stats_of(kind: str, text: Any, shard: int, chunk_bytes: int
              ) -> dict[str, Any]:
  """What building a ``kind`` vocabulary needs from one shard of text:
  word counts, the set of characters, or the number of non-empty lines."""
  if kind == 'word':
    counts: collections.Counter = collections.Counter()
    for chunk in text.chunks(shard, chunk_bytes):
      counts.update('\n'.join(chunk).split())
    return {'counts': counts}
  if kind == 'char':
    chars: set[str] = set()
    for chunk in text.chunks(shard, chunk_bytes):
      chars.update(''.join(chunk))
    return {'chars': sorted(chars)}
  nonempty = 0
  for chunk in text.chunks(shard, chunk_bytes):
    nonempty += sum(map(bool, map(str.strip, chunk)))
  return {'nonempty_lines': nonempty}


def build(spec: Mapping[str, Any], loaded: SentencePieceTokenizer | None,
          text: Any, stats: Iterator[dict[str, Any]] | None,
          chunk_bytes: int) -> Tokenizer:
  """The tokenizer of ``spec``: ``loaded`` (a given SentencePiece model), or
  one built from the per-shard ``stats`` (:func:`stats_of`) of ``text``."""
  kind = spec['kind']
  if kind == 'word':
    counts: collections.Counter = collections.Counter()
    for shard in stats:
      counts.update(shard['counts'])
    return word_from_counts(
        counts, max_size=spec.get('vocab_size', 0),
        min_count=spec.get('min_count', 1))
  if kind == 'char':
    return char_from_chars(
        itertools.chain.from_iterable(s['chars'] for s in stats))
  if loaded is not None:
    return loaded
  if not spec.get('vocab_size'):
    raise errors.ConfigError(
        'tokenizer=sentencepiece needs vocab_size > 0 (e.g. 8000), or '
        'spm_model_path pointing at a trained model.')
  max_lines = spec.get('spm_max_training_lines', 1_000_000)
  seed = spec.get('seed', 0)
  sample = sample_nonempty_lines(
      text, [s['nonempty_lines'] for s in stats], max_lines, seed,
      chunk_bytes)
  logging.info('Training a %s SentencePiece model with %d pieces on %d '
               'lines...', spec.get('spm_model_type', 'unigram'),
               spec['vocab_size'], len(sample))
  return train_sentencepiece(
      sample, spec['vocab_size'],
      model_type=spec.get('spm_model_type', 'unigram'),
      character_coverage=spec.get('spm_character_coverage', 1.0),
      max_training_lines=max_lines, seed=seed)


def sample_nonempty_lines(text: Any, nonempty_per_shard: Sequence[int],
                          max_lines: int, seed: int,
                          chunk_bytes: int = 4 << 20) -> list[str]:
  """The SentencePiece training sample, streamed: at most ``max_lines`` of
  the non-empty lines, the same ones (seeded) that
  :func:`train_sentencepiece` would pick from the whole list."""
  total = int(sum(nonempty_per_shard))
  if not total:
    raise errors.EmptyDataError(
        'No training text to train a SentencePiece model on.')
  chosen = None
  if 0 < max_lines < total:
    chosen = np.sort(np.random.default_rng(seed).choice(
        total, max_lines, replace=False))
  sample: list[str] = []
  seen = 0
  for shard in range(text.num_shards):
    if chosen is not None and not nonempty_per_shard[shard]:
      continue
    for chunk in text.chunks(shard, chunk_bytes):
      lines = [line for line in chunk if line.strip()]
      if chosen is None:
        sample.extend(lines)
      else:
        lo, hi = np.searchsorted(chosen, [seen, seen + len(lines)])
        sample.extend(lines[i] for i in (chosen[lo:hi] - seen).tolist())
      seen += len(lines)
  return sample
