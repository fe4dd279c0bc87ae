"""Tokenizers: word, character and SentencePiece, saved with the run.

All tokenizers share one interface (:class:`Tokenizer`): ``encode(text)``
gives the ids of one line without end-of-line marker, ``encode_lines`` gives
the flat int32 ids of many lines each followed by ``eos_id`` plus line
offsets, and ``decode(ids)`` inverts them (``eos_id`` -> ``'\\n'``; ``pad_id``
and ``bos_id`` dropped).

* :class:`WordTokenizer`: whitespace split (``str.split``), vocabulary from the
  training split ordered by count (ties by word), optional size cap and
  minimum count, ``<eos>`` = 0 and ``<unk>`` = 1. Lossless up to whitespace:
  ``decode(encode(s)) == ' '.join(s.split())`` when every word is in the
  vocabulary. For PTB / WikiText, ``<unk>`` and ``<eos>`` are counted as words,
  giving the standard 10,000 / 33,278 vocabularies.
* :class:`CharTokenizer`: one id per character; id 0 is ``<unk>`` (decoded as
  U+FFFD), the rest the sorted characters of the training split plus ``\\n``,
  which is the end-of-line marker. Lossless for in-vocabulary text, for
  models evaluated in bits per character.
* :class:`SentencePieceTokenizer`: a unigram or BPE model trained on the
  training split with the sentencepiece library (identity normalisation, no
  whitespace collapsing, so detokenisation gives back the text), ids
  pad = 0, unk = 1, bos = 2, eos = 3; or loaded from a given model file.

:func:`get_tokenizer` builds or loads the tokenizer of a run and saves it in
``workdir/tokenizer/`` so a restarted run, evaluation and generation use the
same one; a different vocabulary for the same workdir is an error.
"""

from __future__ import annotations

import abc
import collections
import hashlib
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

TOKENIZER_DIR = 'tokenizer'
METADATA_FILE = 'tokenizer.json'
SPM_MODEL_FILE = 'spm.model'
EOS = '<eos>'
UNK = '<unk>'
KINDS = ('word', 'char', 'sentencepiece')
# The spec keys that determine the vocabulary of each kind (get_tokenizer).
SPEC_KEYS = {
    'word': ('vocab_size', 'min_count'),
    'char': (),
    'sentencepiece': ('vocab_size', 'spm_model_type', 'spm_model_path',
                      'spm_character_coverage', 'spm_max_training_lines',
                      'seed'),
}


class Tokenizer(abc.ABC):
  """Maps text to int32 ids and back."""

  kind: str
  pad_id: int
  unk_id: int
  bos_id: int
  eos_id: int

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids; every id is in ``[0, vocab_size)``."""

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Ids of one line of text, without ``eos_id``."""

  @abc.abstractmethod
  def _decode_segment(self, ids: Sequence[int]) -> str:
    """Text of ids that contain no eos / pad / bos."""

  @abc.abstractmethod
  def fingerprint(self) -> str:
    """Hex digest of the vocabulary / model; equal iff the mapping is equal."""

  @abc.abstractmethod
  def _save_payload(self, directory: Path) -> dict[str, Any]:
    """Writes model files into ``directory``; returns metadata to store."""

  def encode_batch(self, lines: Sequence[str]) -> list[list[int]]:
    return [self.encode(line) for line in lines]

  def encode_lines(self, lines: Sequence[str],
                   add_eos: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Encodes lines into one flat array.

    Returns:
      ids: int32 ``[num_tokens]``, line after line, each followed by
        ``eos_id`` when ``add_eos``.
      offsets: int64 ``[num_lines + 1]``; line i is
        ``ids[offsets[i]:offsets[i + 1]]``.
    """
    encoded = self.encode_batch(lines)
    lengths = np.fromiter((len(x) for x in encoded), np.int64, len(encoded))
    lengths += int(add_eos)
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    eos = [self.eos_id] if add_eos else []
    ids = np.fromiter(
        itertools.chain.from_iterable(list(x) + eos for x in encoded),
        np.int32, count=int(offsets[-1]))
    return ids, offsets

  def encode_chunk(self, lines: Sequence[str]) -> tuple[np.ndarray,
                                                          np.ndarray]:
    """Encodes a chunk of lines for the cache.

    Returns:
      ids: int32, each line's ids followed by ``eos_id``.
      lengths: int32 ``[len(lines)]``, tokens of each line (with eos).
    """
    ids, offsets = self.encode_lines(lines)
    return ids, np.diff(offsets).astype(np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    """Text of ids: ``eos_id`` becomes ``'\\n'``, pad and bos are dropped."""
    segments: list[str] = []
    current: list[int] = []
    skip = {self.pad_id, self.bos_id} - {self.eos_id, self.unk_id}
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        segments.append(self._decode_segment(current) + '\n')
        current = []
      elif i not in skip:
        current.append(i)
    if current:
      segments.append(self._decode_segment(current))
    return ''.join(segments)

  def save(self, directory: str | os.PathLike[str],
           extra: Mapping[str, Any] | None = None) -> None:
    """Saves the tokenizer (and ``extra`` metadata) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {'kind': self.kind, 'fingerprint': self.fingerprint(),
                **self._save_payload(directory), **(extra or {})}
    cache.atomic_write_bytes(directory / METADATA_FILE,
                  json.dumps(metadata, indent=1, ensure_ascii=False).encode())


class VocabularyTokenizer(Tokenizer):
  """A tokenizer with an explicit list of tokens (word, char)."""

  def __init__(self, vocab: Sequence[str]):
    self.vocab = list(vocab)
    self.token_to_id = {token: i for i, token in enumerate(self.vocab)}
    if len(self.token_to_id) != len(self.vocab):
      raise errors.ConfigError('Vocabulary has duplicate tokens.')

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def fingerprint(self) -> str:
    return hashlib.sha256(
        json.dumps([self.kind, self.vocab]).encode()).hexdigest()

  def _save_payload(self, directory: Path) -> dict[str, Any]:
    return {'vocab': self.vocab}


class WordTokenizer(VocabularyTokenizer):
  """Whitespace words; ``<eos>`` = 0, ``<unk>`` = 1, then by count."""

  kind = 'word'

  def __init__(self, vocab: Sequence[str]):
    if list(vocab[:2]) != [EOS, UNK]:
      raise errors.ConfigError(
          f'A word vocabulary starts with {EOS!r}, {UNK!r}; got '
          f'{list(vocab[:2])}.')
    super().__init__(vocab)
    self.eos_id, self.unk_id = 0, 1
    self.pad_id = self.bos_id = self.eos_id

  @classmethod
  def build(cls, lines: Iterable[str], max_size: int = 0,
            min_count: int = 1) -> WordTokenizer:
    """Builds the vocabulary from training lines.

    Args:
      lines: training text.
      max_size: keep at most this many tokens including ``<eos>`` and
        ``<unk>`` (0: no cap).
      min_count: drop words seen fewer times.
    """
    counts = collections.Counter()
    for line in lines:
      counts.update(line.split())
    return cls.from_counts(counts, max_size, min_count)

  @classmethod
  def from_counts(cls, counts: Mapping[str, int], max_size: int = 0,
                  min_count: int = 1) -> WordTokenizer:
    """The vocabulary of word counts (see :meth:`build`)."""
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
    return cls([EOS, UNK, *words])

  def encode(self, text: str) -> list[int]:
    get, unk = self.token_to_id.get, self.unk_id
    return [get(w, unk) for w in text.split()]

  def encode_chunk(self, lines: Sequence[str]) -> tuple[np.ndarray,
                                                          np.ndarray]:
    # Vectorised: one split of the whole chunk (a newline is whitespace, so
    # this is the lines' words in order), word counts per line, and the eos
    # positions from their cumulative sum.
    words = '\n'.join(lines).split()
    lengths = np.fromiter(map(len, map(str.split, lines)), np.int32,
                          len(lines)) + 1
    ids = np.full(int(lengths.sum()), self.eos_id, np.int32)
    word_ids = np.fromiter(
        map(self.token_to_id.get, words, itertools.repeat(self.unk_id)),
        np.int32, len(words))
    is_word = np.ones(len(ids), bool)
    is_word[np.cumsum(lengths) - 1] = False
    ids[is_word] = word_ids
    return ids, lengths

  def _decode_segment(self, ids: Sequence[int]) -> str:
    return ' '.join(self.vocab[i] for i in ids)


class CharTokenizer(VocabularyTokenizer):
  """Characters; 0 = ``<unk>`` (decoded as U+FFFD), ``\\n`` = end of line."""

  kind = 'char'

  def __init__(self, vocab: Sequence[str]):
    if not vocab or vocab[0] != UNK or '\n' not in vocab:
      raise errors.ConfigError(
          f"A char vocabulary starts with {UNK!r} and contains '\\n'.")
    super().__init__(vocab)
    self.unk_id = 0
    self.eos_id = self.token_to_id['\n']
    self.pad_id = self.unk_id
    self.bos_id = self.eos_id

  @classmethod
  def build(cls, lines: Iterable[str]) -> CharTokenizer:
    chars = set('\n')
    for line in lines:
      chars.update(line)
    return cls.from_chars(chars)

  @classmethod
  def from_chars(cls, chars: Iterable[str]) -> CharTokenizer:
    return cls([UNK, *sorted(set(chars) | {'\n'})])

  def encode(self, text: str) -> list[int]:
    get, unk = self.token_to_id.get, self.unk_id
    return [get(c, unk) for c in text]

  def _decode_segment(self, ids: Sequence[int]) -> str:
    return ''.join('\ufffd' if i == self.unk_id else self.vocab[i] for i in ids)


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model; pad = 0, unk = 1, bos = 2, eos = 3 when trained."""

  kind = 'sentencepiece'

  # Threads of SentencePiece's batch encoding (-1: its default, all cores);
  # set from the data config encode_threads.
  num_threads: int = -1

  def __init__(self, model_proto: bytes):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    self.model_proto = model_proto
    self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
    self.pad_id = self.processor.pad_id()
    self.unk_id = self.processor.unk_id()
    self.bos_id = self.processor.bos_id()
    self.eos_id = self.processor.eos_id()
    if min(self.bos_id, self.eos_id) < 0:
      raise errors.ConfigError(
          'The SentencePiece model has no BOS or EOS piece; train it with '
          'bos_id and eos_id set (this pipeline trains with pad=0, unk=1, '
          'bos=2, eos=3).')
    if self.pad_id < 0:  # Models without a pad piece pad with unk (masked).
      self.pad_id = self.unk_id

  @classmethod
  def train(cls, lines: Iterable[str], vocab_size: int,
            model_type: str = 'unigram', character_coverage: float = 1.0,
            max_training_lines: int = 1_000_000, seed: int = 0,
            ) -> SentencePieceTokenizer:
    """Trains a model on ``lines`` (empty lines skipped).

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
    return cls(model.getvalue())

  @classmethod
  def load(cls, path: str | os.PathLike[str]) -> SentencePieceTokenizer:
    path = Path(path).expanduser()
    if not path.is_file():
      raise errors.TokenizerNotFoundError(
          f'SentencePiece model {path} (data config spm_model_path) does not '
          'exist. Point spm_model_path at an existing .model file, or set it '
          "to '' to train one on the training split.")
    return cls(path.read_bytes())

  @property
  def vocab_size(self) -> int:
    return self.processor.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self.processor.encode(text)

  def encode_batch(self, lines: Sequence[str]) -> list[list[int]]:
    return self.processor.encode(list(lines), num_threads=self.num_threads)

  def _decode_segment(self, ids: Sequence[int]) -> str:
    return self.processor.decode(list(ids))

  def fingerprint(self) -> str:
    return hashlib.sha256(self.model_proto).hexdigest()

  def _save_payload(self, directory: Path) -> dict[str, Any]:
    # Named by content: rewriting tokenizer.json (atomically, last) is the
    # only step that switches a workdir to another model, so a crash never
    # leaves a metadata file that names a different or partial model.
    # spm.model is a copy for tools (loading goes through the json).
    name = f'spm-{self.fingerprint()[:16]}.model'
    cache.atomic_write_bytes(directory / name, self.model_proto)
    cache.atomic_write_bytes(directory / SPM_MODEL_FILE, self.model_proto)
    return {'model_file': name}


def load_saved(directory: str | os.PathLike[str]
               ) -> tuple[Tokenizer, dict[str, Any]] | None:
  """Loads the tokenizer saved in ``directory``; ``None`` if there is none.

  Returns:
    (tokenizer, its metadata dict as saved).
  """
  directory = Path(directory)
  metadata_path = directory / METADATA_FILE
  if not metadata_path.is_file():
    return None
  try:
    metadata = json.loads(metadata_path.read_text('utf-8'))
  except (OSError, ValueError):
    return None
  kind = metadata['kind']
  if kind == 'word':
    tokenizer: Tokenizer = WordTokenizer(metadata['vocab'])
  elif kind == 'char':
    tokenizer = CharTokenizer(metadata['vocab'])
  elif kind == 'sentencepiece':
    try:
      proto = (directory / metadata['model_file']).read_bytes()
    except OSError:
      return None
    tokenizer = SentencePieceTokenizer(proto)
  else:
    raise errors.ConfigError(f'{metadata_path}: unknown tokenizer {kind!r}.')
  if metadata.get('fingerprint', tokenizer.fingerprint()) != (
      tokenizer.fingerprint()):
    logging.warning('%s does not match its model file; ignored.',
                    metadata_path)
    return None
  return tokenizer, metadata


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
  loaded = SentencePieceTokenizer.load(model_path) if (
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
      new.save(directory, {'spec': spec, 'data_fingerprint': data_fingerprint})
    except (errors.CacheWriteError, OSError) as e:
      logging.info('Kept the saved tokenizer record in %s (%s).', directory, e)
    return new
  new.save(directory, {'spec': spec, 'data_fingerprint': data_fingerprint})
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
    return WordTokenizer.from_counts(
        counts, max_size=spec.get('vocab_size', 0),
        min_count=spec.get('min_count', 1))
  if kind == 'char':
    return CharTokenizer.from_chars(
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
  return SentencePieceTokenizer.train(
      sample, spec['vocab_size'],
      model_type=spec.get('spm_model_type', 'unigram'),
      character_coverage=spec.get('spm_character_coverage', 1.0),
      max_training_lines=max_lines, seed=seed)


def sample_nonempty_lines(text: Any, nonempty_per_shard: Sequence[int],
                          max_lines: int, seed: int,
                          chunk_bytes: int = 4 << 20) -> list[str]:
  """The SentencePiece training sample, streamed: at most ``max_lines`` of
  the non-empty lines, the same ones (seeded) that
  :meth:`SentencePieceTokenizer.train` would pick from the whole list."""
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
