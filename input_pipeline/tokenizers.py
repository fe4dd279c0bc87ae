"""Building a run's tokenizer: word counts, characters, SentencePiece training.

The tokenizers themselves (ids, encode / decode, fingerprint, the saved file
format) are :mod:`lstm_flax.tokenizer`'s; this module makes them from the
training split and writes them (atomically) with the run:

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

:func:`get_tokenizer` builds or loads the tokenizer of a run and saves it in
``workdir/tokenizer/`` so a restarted run, evaluation and generation use the
same one; a different vocabulary for the same workdir is an error.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from input_pipeline import cache, errors
from lstm_flax import tokenizer as tokenizer_format
from lstm_flax.tokenizer import (CharTokenizer, EOS, KINDS, METADATA_FILE,
                                 SentencePieceTokenizer, TOKENIZER_DIR,
                                 Tokenizer, UNK, VocabularyTokenizer,
                                 WordTokenizer)

# The spec keys that determine the vocabulary of each kind (get_tokenizer).
SPEC_KEYS = {
    'word': ('vocab_size', 'min_count'),
    'char': (),
    'sentencepiece': ('vocab_size', 'spm_model_type', 'spm_model_path',
                      'spm_character_coverage', 'spm_max_training_lines',
                      'seed'),
}
# The data config keys a tokenizer is built from: 'tokenizer' (the kind) and
# the spec keys ('seed' is not a data config key: SentencePiece is trained
# with seed 0).
CONFIG_KEYS = ('tokenizer', *dict.fromkeys(
    k for keys in SPEC_KEYS.values() for k in keys if k != 'seed'))


def spec_of(cfg: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
  """The tokenizer spec of a data config (:func:`get_tokenizer`'s ``spec``):
  ``kind`` (default ``cfg['tokenizer']``) and the config's spec keys."""
  return {'kind': kind or cfg['tokenizer'],
          **{k: cfg[k] for k in CONFIG_KEYS[1:] if k in cfg}}


# -------------------------------------------------------------- building ----


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


# ------------------------------------------------------- saving, loading ----


def save(tokenizer: Tokenizer, directory: str | os.PathLike[str],
         extra: Mapping[str, Any] | None = None) -> None:
  """Saves ``tokenizer`` (and ``extra`` metadata) into ``directory``, each
  file atomically, ``tokenizer.json`` last (:func:`lstm_flax.tokenizer.files`)."""
  for name, content in tokenizer_format.files(tokenizer, extra).items():
    cache.atomic_write_bytes(Path(directory) / name, content)


def load_saved(directory: str | os.PathLike[str]
               ) -> tuple[Tokenizer, dict[str, Any]] | None:
  """The tokenizer saved in ``directory`` and its metadata as saved; ``None``
  if there is none, or it is unreadable or does not match its model files
  (logged: it is rebuilt).

  Raises:
    errors.ConfigError: a saved tokenizer of an unknown kind.
  """
  if not (Path(directory) / METADATA_FILE).is_file():
    return None
  try:
    return tokenizer_format.read(directory)
  except tokenizer_format.UnknownKindError as e:
    raise errors.ConfigError(str(e)) from None
  except (OSError, ValueError) as e:
    logging.warning('Ignored the saved tokenizer: %s', e)
    return None


def _vocab_difference(saved: Tokenizer, new: Tokenizer) -> str:
  if isinstance(saved, VocabularyTokenizer) and isinstance(
      new, VocabularyTokenizer):
    for i, (a, b) in enumerate(zip(saved.vocab, new.vocab)):
      if a != b:
        return f'first difference at id {i}: saved {a!r}, now {b!r}'
  return f'saved size {saved.vocab_size}, now {new.vocab_size}'


def get_tokenizer(spec: Mapping[str, Any], workdir: str | os.PathLike[str],
                  train_lines: Callable[[], Iterable[str]] | Any,
                  data_fingerprint: str, *, process_index: int = 0,
                  process_count: int = 1,
                  stats_dir: str | os.PathLike[str] | None = None,
                  wait_timeout_s: float = 3600.0,
                  chunk_bytes: int = 4 << 20) -> Tokenizer:
  """Returns the run's tokenizer: the saved one, or a new one that is saved.

  With several processes, only process 0 builds and saves the tokenizer; the
  others wait for ``workdir/tokenizer/tokenizer.json`` (the workdir is on a
  shared file system) and load it, so a run never trains N copies. The
  training text is streamed: word / char counts and SentencePiece's line
  sample are gathered shard by shard (each process counts its shards, see
  :func:`_shard_stats`), never holding the split in memory.

  Args:
    spec: what to build: ``kind`` (``'word'``, ``'char'``,
      ``'sentencepiece'``), ``vocab_size`` (word: cap, 0 = none;
      sentencepiece: size), ``min_count`` (word), ``spm_model_type``,
      ``spm_model_path`` (load instead of train), ``spm_character_coverage``,
      ``spm_max_training_lines``, ``seed``.
    workdir: the run directory; the tokenizer lives in
      ``workdir/tokenizer/``.
    train_lines: the training text: a :class:`corpora.LineShards`, or a
      function returning the lines (only called when building).
    data_fingerprint: fingerprint of the training text; with ``spec`` it
      decides whether the saved tokenizer is still the right one.
    process_index, process_count: this process among those sharing the
      workdir.
    stats_dir: where the processes exchange per-shard counts (with
      ``process_count > 1``), e.g. the data cache directory.
    wait_timeout_s: how long a process waits for the others.
    chunk_bytes: text read per chunk.

  Raises:
    errors.VocabularyMismatchError: a tokenizer is saved in the workdir and
      the config / data now give a different one.
    errors.TokenizerNotFoundError: ``spm_model_path`` does not exist.
    errors.WaitTimeoutError: process 0 did not save the tokenizer in time.
  """
  from input_pipeline import corpora  # pylint: disable=g-import-not-at-top
  kind = spec['kind']
  if kind not in KINDS:
    raise errors.ConfigError(
        f'tokenizer={kind!r} is unknown; use one of {list(KINDS)}.')
  model_path = spec.get('spm_model_path') or ''
  # Only the settings that determine this kind's vocabulary.
  spec = {'kind': kind, **{k: spec[k] for k in SPEC_KEYS[kind] if k in spec}}
  directory = Path(workdir) / TOKENIZER_DIR
  loaded = load_sentencepiece(model_path) if (
      kind == 'sentencepiece' and model_path) else None
  saved = load_saved(directory)
  if saved is not None:
    tokenizer, metadata = saved
    if loaded is not None:
      if loaded.fingerprint() == tokenizer.fingerprint():
        return tokenizer
      raise errors.VocabularyMismatchError(
          f'The SentencePiece model {model_path} (data config '
          'spm_model_path) differs from the tokenizer saved with this run in '
          f'{directory}. Use the model the run was started with, or start a '
          'new run in a fresh workdir.')
    if metadata.get('spec') == spec and (
        metadata.get('data_fingerprint') == data_fingerprint):
      return tokenizer
    if metadata['kind'] != kind or (kind == 'sentencepiece' and
                                    metadata.get('spec') != spec):
      # Training another kind or SentencePiece with other settings cannot
      # give the saved vocabulary back: fail before building anything.
      raise errors.VocabularyMismatchError(
          f'The tokenizer saved with this run in {directory} was built with '
          f"{metadata.get('spec')}, but the data config now asks for {spec}; "
          'its vocabulary would differ, and the saved model weights only fit '
          'the saved vocabulary. Restore the tokenizer settings the run was '
          'started with, or start a new run in a fresh workdir (or delete '
          f'{directory} if no model was trained with it).')
    # Same settings, other training data (or the same data touched / moved):
    # rebuild, and accept the result if it is the saved vocabulary.
  text = train_lines if isinstance(
      train_lines, corpora.LineShards) else corpora.ListShards(
          lambda: list(train_lines()))
  stats = None
  if loaded is None:
    stats = _shard_stats(spec, text, data_fingerprint, process_index,
                         process_count, stats_dir, wait_timeout_s,
                         chunk_bytes)
  if process_index != 0:
    return _wait_for_saved(directory, spec, data_fingerprint, loaded,
                           wait_timeout_s)
  new = _build(spec, loaded, text, stats, chunk_bytes)
  if saved is not None and new.fingerprint() != saved[0].fingerprint():
    raise errors.VocabularyMismatchError(
        f'The vocabulary built now from the training data '
        f'({new.vocab_size} tokens) differs from the one saved with this '
        f'run in {directory} ({saved[0].vocab_size} tokens; '
        f'{_vocab_difference(saved[0], new)}). The training data changed '
        'since the run started, and the saved model weights only fit the '
        'saved vocabulary. Restore the training data the run was started '
        'with, or start a new run in a fresh workdir (or delete '
        f'{directory} if no model was trained with it).')
  if saved is not None:
    # The saved vocabulary again: refresh its record of the data, unless
    # the workdir is read-only (evaluating a mounted checkpoint).
    try:
      save(new, directory, {'spec': spec, 'data_fingerprint': data_fingerprint})
    except (errors.CacheWriteError, OSError) as e:
      logging.info('Kept the saved tokenizer record in %s (%s).', directory, e)
    return new
  save(new, directory, {'spec': spec, 'data_fingerprint': data_fingerprint})
  logging.info('Saved %s tokenizer (%d ids) in %s', kind, new.vocab_size,
               directory)
  return new


def _wait_for_saved(directory: Path, spec: Mapping[str, Any],
                    data_fingerprint: str,
                    loaded: SentencePieceTokenizer | None,
                    timeout_s: float) -> Tokenizer:
  """Process > 0: waits for process 0 to save the tokenizer, and loads it."""
  found: list[Tokenizer] = []

  def ready() -> bool:
    saved = load_saved(directory)
    if saved is None:
      return False
    tokenizer, metadata = saved
    if loaded is not None:
      ok = tokenizer.fingerprint() == loaded.fingerprint()
    else:
      ok = metadata.get('spec') == dict(spec) and metadata.get(
          'data_fingerprint') == data_fingerprint
    if ok:
      found.append(tokenizer)
    return ok

  cache.wait_until(
      ready, timeout_s,
      f'Timed out after {timeout_s:.0f} s waiting for process 0 to save the '
      f'tokenizer in {directory / METADATA_FILE}. Process 0 builds it; check '
      'its log (it may have failed), or raise the data config '
      'wait_timeout_s. The workdir must be on a file system shared by all '
      'processes.')
  return found[0]


def _stats_of(kind: str, text: Any, shard: int, chunk_bytes: int
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


def _shard_stats(spec: Mapping[str, Any], text: Any, data_fingerprint: str,
                 process_index: int, process_count: int,
                 stats_dir: str | os.PathLike[str] | None, timeout_s: float,
                 chunk_bytes: int) -> Iterator[dict[str, Any]] | None:
  """Per-shard vocabulary statistics, computed in parallel.

  One process: computed lazily, shard after shard, as the returned iterator
  is consumed (so only one shard's counts and the merged counts are held).
  Several: process ``p`` computes the shards ``k % P == p`` and saves each
  (atomically) under ``stats_dir``; process 0 waits for all and returns an
  iterator that loads them one by one; the others return ``None``.
  """
  kind = spec['kind']
  if process_count == 1:
    return (_stats_of(kind, text, k, chunk_bytes)
            for k in range(text.num_shards))
  if stats_dir is None:
    raise errors.ConfigError('Several processes need a shared stats_dir.')
  digest = cache.digest_of({'kind': kind, 'data': data_fingerprint,
                             'shards': text.num_shards})
  directory = Path(stats_dir) / f'vocab-stats-{digest}'

  def path(k: int) -> Path:
    return directory / f'{k:05d}-of-{text.num_shards:05d}.json'

  for k in cache.my_shards(text.num_shards, process_index, process_count):
    if not path(k).is_file():
      stats = _stats_of(kind, text, k, chunk_bytes)
      cache.atomic_write_bytes(path(k), json.dumps(stats).encode())
  if process_index != 0:
    return None
  cache.wait_until(
      lambda: all(path(k).is_file() for k in range(text.num_shards)),
      timeout_s, f'Timed out after {timeout_s:.0f} s waiting for the other '
      f'processes to count their shards of the training text in {directory}.'
      ' Check their logs, or raise the data config wait_timeout_s.')
  return (json.loads(path(k).read_text()) for k in range(text.num_shards))


def _build(spec: Mapping[str, Any], loaded: SentencePieceTokenizer | None,
           text: Any, stats: Iterator[dict[str, Any]] | None,
           chunk_bytes: int) -> Tokenizer:
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
