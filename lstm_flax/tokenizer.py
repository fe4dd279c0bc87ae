"""The saved tokenizer format (``tokenizer/``): reading and applying it.

The one implementation of a run's tokenizer as files and as ids. The
trainer's ``input_pipeline.tokenizers`` builds vocabularies (counts words,
trains SentencePiece) and writes them with :func:`files`; this module reads
them back (:func:`load`) and applies them, so that an exported model needs
neither the trainer nor TensorFlow. ``tokenizer/tokenizer.json`` holds
``kind``, ``fingerprint`` and, for word and character tokenizers, ``vocab``;
for SentencePiece, ``model_file`` naming the model beside it.

* ``'word'``: whitespace split; ``<eos>`` = 0 (also pad and bos), ``<unk>`` = 1.
* ``'char'``: one id per character; ``<unk>`` = 0 (also pad, decoded as
  U+FFFD), ``'\\n'`` is the end-of-line id (also bos).
* ``'sentencepiece'``: the saved model (``pip install sentencepiece``,
  imported only here, when such a tokenizer is made); trained ones have
  pad 0, unk 1, bos 2, eos 3.

``encode(text)`` gives one line's ids without the end-of-line id;
``encode_lines`` many lines' flat int32 ids, each followed by ``eos_id``;
``decode(ids)`` turns the end-of-line id into ``'\\n'`` and drops pad and bos.
:class:`TextEncoding` is how a classifier's texts become a padded batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_DIR = 'tokenizer'  # A run's tokenizer: workdir/tokenizer/.
METADATA_FILE = 'tokenizer.json'
SPM_MODEL_FILE = 'spm.model'  # A copy of the SentencePiece model for tools.
EOS = '<eos>'
UNK = '<unk>'
KINDS = ('word', 'char', 'sentencepiece')


class Tokenizer:
  """Text <-> int ids (subclasses: one per ``kind``)."""

  kind: str
  pad_id: int
  unk_id: int
  bos_id: int
  eos_id: int

  @property
  def vocab_size(self) -> int:
    """Number of ids; every id is in ``[0, vocab_size)``."""
    raise NotImplementedError

  def encode(self, text: str) -> list[int]:
    """Ids of one line of text, without ``eos_id``."""
    raise NotImplementedError

  def fingerprint(self) -> str:
    """Hex digest of the vocabulary / model; equal iff the mapping is equal."""
    raise NotImplementedError

  def _decode_segment(self, ids: Sequence[int]) -> str:
    """Text of ids that contain no eos / pad / bos."""
    raise NotImplementedError

  def _payload(self) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(``tokenizer.json`` entries, model files beside it) of this kind."""
    raise NotImplementedError

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

  def encode_chunk(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Encodes a chunk of lines for a data cache.

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


class VocabularyTokenizer(Tokenizer):
  """A tokenizer with an explicit token list (word, char)."""

  def __init__(self, vocab: Sequence[str]):
    self.vocab = list(vocab)
    self.token_to_id = {token: i for i, token in enumerate(self.vocab)}
    if len(self.token_to_id) != len(self.vocab):
      raise ValueError(f'The {self.kind} vocabulary has duplicate tokens.')

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def fingerprint(self) -> str:
    return hashlib.sha256(json.dumps([self.kind, self.vocab]).encode()).hexdigest()

  def _payload(self) -> tuple[dict[str, Any], dict[str, bytes]]:
    return {'vocab': self.vocab}, {}


class WordTokenizer(VocabularyTokenizer):
  """Whitespace words; ``<eos>`` = 0 (= pad = bos), ``<unk>`` = 1."""

  kind = 'word'

  def __init__(self, vocab: Sequence[str]):
    if list(vocab[:2]) != [EOS, UNK]:
      raise ValueError(f'A word vocabulary starts with {EOS!r}, {UNK!r}; got {list(vocab[:2])}.')
    super().__init__(vocab)
    self.eos_id, self.unk_id = 0, 1
    self.pad_id = self.bos_id = self.eos_id

  def encode(self, text: str) -> list[int]:
    get, unk = self.token_to_id.get, self.unk_id
    return [get(w, unk) for w in text.split()]

  def encode_chunk(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    # Vectorised: one split of the whole chunk (a newline is whitespace, so
    # this is the lines' words in order), word counts per line, and the eos
    # positions from their cumulative sum.
    words = '\n'.join(lines).split()
    lengths = np.fromiter(map(len, map(str.split, lines)), np.int32, len(lines)) + 1
    ids = np.full(int(lengths.sum()), self.eos_id, np.int32)
    word_ids = np.fromiter(
        map(self.token_to_id.get, words, itertools.repeat(self.unk_id)), np.int32, len(words))
    is_word = np.ones(len(ids), bool)
    is_word[np.cumsum(lengths) - 1] = False
    ids[is_word] = word_ids
    return ids, lengths

  def _decode_segment(self, ids: Sequence[int]) -> str:
    return ' '.join(self.vocab[i] for i in ids)


class CharTokenizer(VocabularyTokenizer):
  """Characters; ``<unk>`` = 0 (= pad, decoded as U+FFFD), ``'\\n'`` = eos = bos."""

  kind = 'char'

  def __init__(self, vocab: Sequence[str]):
    if not vocab or vocab[0] != UNK or '\n' not in vocab:
      raise ValueError(f"A char vocabulary starts with {UNK!r} and contains '\\n'.")
    super().__init__(vocab)
    self.unk_id = 0
    self.eos_id = self.token_to_id['\n']
    self.pad_id = self.unk_id
    self.bos_id = self.eos_id

  def encode(self, text: str) -> list[int]:
    get, unk = self.token_to_id.get, self.unk_id
    return [get(c, unk) for c in text]

  def _decode_segment(self, ids: Sequence[int]) -> str:
    return ''.join('\ufffd' if i == self.unk_id else self.vocab[i] for i in ids)


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model (trained ones: pad 0, unk 1, bos 2, eos 3)."""

  kind = 'sentencepiece'

  # Threads of SentencePiece's batch encoding (-1: its default, all cores).
  num_threads: int = -1

  def __init__(self, model_proto: bytes):
    try:
      import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(
          'This model uses a SentencePiece tokenizer, which needs the sentencepiece '
          'package: pip install sentencepiece') from e
    self.model_proto = model_proto
    self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
    self.pad_id = self.processor.pad_id()
    self.unk_id = self.processor.unk_id()
    self.bos_id = self.processor.bos_id()
    self.eos_id = self.processor.eos_id()
    if min(self.bos_id, self.eos_id) < 0:
      raise ValueError(
          'The SentencePiece model has no BOS or EOS piece; train it with bos_id and eos_id '
          'set (the trainer trains with pad=0, unk=1, bos=2, eos=3).')
    if self.pad_id < 0:  # Models without a pad piece pad with unk (masked).
      self.pad_id = self.unk_id

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

  def _payload(self) -> tuple[dict[str, Any], dict[str, bytes]]:
    # Named by content: rewriting tokenizer.json (last) is the only step that
    # switches a directory to another model, so a crash never leaves a
    # metadata file that names a different or partial model. spm.model is a
    # copy for tools (loading goes through the json).
    name = f'spm-{self.fingerprint()[:16]}.model'
    return {'model_file': name}, {name: self.model_proto, SPM_MODEL_FILE: self.model_proto}


def files(tokenizer: Tokenizer, extra: Mapping[str, Any] | None = None) -> dict[str, bytes]:
  """The files that save ``tokenizer`` (with ``extra`` metadata, e.g. the
  spec it was built from), file name -> content, in the order to write them:
  model files first, :data:`METADATA_FILE` last."""
  entries, model_files = tokenizer._payload()  # pylint: disable=protected-access
  metadata = {'kind': tokenizer.kind, 'fingerprint': tokenizer.fingerprint(), **entries,
              **(extra or {})}
  return {**model_files,
          METADATA_FILE: json.dumps(metadata, indent=1, ensure_ascii=False).encode()}


class UnknownKindError(ValueError):
  """A ``tokenizer.json`` of a kind this version does not know."""


def read(directory: str | os.PathLike[str]) -> tuple[Tokenizer, dict[str, Any]]:
  """The tokenizer saved in ``directory`` and its ``tokenizer.json`` as saved.

  Raises:
    FileNotFoundError: no ``tokenizer.json`` (or SentencePiece model file).
    UnknownKindError: a ``kind`` not in :data:`KINDS`.
    ValueError: an unreadable or inconsistent ``tokenizer.json``, naming the
      file and the key.
    ImportError: a SentencePiece tokenizer without the sentencepiece package.
  """
  directory = Path(directory)
  path = directory / METADATA_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f'No tokenizer in {directory}: {METADATA_FILE} is missing. Export the model again, '
        'or copy the run\'s workdir/tokenizer/ there.')
  try:
    metadata: dict[str, Any] = json.loads(path.read_text('utf-8'))
    kind = metadata['kind']
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'{path} is not a tokenizer description with a "kind" key: {e}') from None
  if kind in ('word', 'char'):
    if not isinstance(metadata.get('vocab'), list):
      raise ValueError(f'{path}: a {kind} tokenizer needs a "vocab" list.')
    tokenizer: Tokenizer = (WordTokenizer if kind == 'word' else CharTokenizer)(metadata['vocab'])
  elif kind == 'sentencepiece':
    model_path = directory / str(metadata.get('model_file', ''))
    if not model_path.is_file():
      raise FileNotFoundError(
          f'{path} names the SentencePiece model {metadata.get("model_file")!r}, which is '
          f'missing from {directory}.')
    tokenizer = SentencePieceTokenizer(model_path.read_bytes())
  else:
    raise UnknownKindError(f'{path}: "kind" is {kind!r}; expected one of {list(KINDS)}.')
  expected = metadata.get('fingerprint')
  if expected is not None and expected != tokenizer.fingerprint():
    raise ValueError(
        f'{path}: "fingerprint" does not match its vocabulary / model file (the files were '
        'changed after saving); export the model again.')
  return tokenizer, metadata


def load(directory: str | os.PathLike[str]) -> Tokenizer:
  """The tokenizer saved in ``directory`` (see :func:`read` for the errors)."""
  return read(directory)[0]


# -------------------------------------------------------- classification ----


@dataclasses.dataclass(frozen=True)
class TextEncoding:
  """How a classifier's texts are encoded (in training and at inference).

  Attributes:
    max_length: texts are cut to their first ``max_length`` tokens.
    bucket_boundaries: batch widths (``max_length`` is added).
    lowercase: lower-case the text first.
    add_eos: append the end-of-line id.
  """

  max_length: int
  bucket_boundaries: tuple[int, ...] = ()
  lowercase: bool = False
  add_eos: bool = False

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any]) -> TextEncoding:
    """The fields among ``values`` (e.g. a trainer's ``config.data``)."""
    return cls(max_length=int(values['max_length']),
               bucket_boundaries=tuple(int(b) for b in values.get('bucket_boundaries', ())),
               lowercase=bool(values.get('lowercase', False)),
               add_eos=bool(values.get('add_eos', False)))

  def widths(self) -> np.ndarray:
    """Sorted batch widths (:func:`bucket_widths`)."""
    return bucket_widths(self.max_length, self.bucket_boundaries)

  def width(self, longest: int) -> int:
    """The batch width that holds ``longest`` (<= ``max_length``) tokens."""
    widths = self.widths()
    return int(widths[np.searchsorted(widths, max(1, int(longest)))])

  def text(self, line: str) -> str:
    """``line`` as it is tokenised (lower-cased if ``lowercase``)."""
    return line.lower() if self.lowercase else line

  def encode_flat(self, tokenizer: Tokenizer, lines: Sequence[str]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The lines' ids, not truncated: int32 ``ids`` and int64 ``offsets``
    ``[len(lines) + 1]`` (:meth:`Tokenizer.encode_lines`; ``eos_id`` ends
    each line if ``add_eos``). What the training data caches."""
    return tokenizer.encode_lines([self.text(line) for line in lines],
                                  add_eos=self.add_eos)

  def encode(self, tokenizer: Tokenizer, lines: Sequence[str]
             ) -> tuple[np.ndarray, np.ndarray]:
    """``tokens [len(lines), width]`` int32 (cut to ``max_length``, padded
    with ``pad_id`` to the bucket width of the longest) and ``lengths
    [len(lines)]`` int32: one batch, as the training batches are made."""
    if not lines:
      raise ValueError('No text to encode.')
    ids, offsets = self.encode_flat(tokenizer, lines)
    full = np.diff(offsets)
    log_truncation(full, self.max_length, 'input')
    lengths = np.minimum(full, self.max_length).astype(np.int32)
    tokens = padded_rows(ids, offsets[:-1], lengths, self.width(lengths.max()),
                         tokenizer.pad_id)
    return tokens, lengths


def padded_rows(ids: Any, starts: np.ndarray, lengths: np.ndarray, width: int,
                pad_id: int) -> np.ndarray:
  """int32 ``[len(starts), width]``: row r is ``ids[starts[r]:][:lengths[r]]``
  then ``pad_id`` (``lengths[r] <= width``)."""
  positions = np.arange(width)
  mask = positions < np.asarray(lengths)[:, None]
  tokens = np.full((len(starts), width), pad_id, np.int32)
  tokens[mask] = ids[(np.asarray(starts)[:, None] + positions)[mask]]
  return tokens


def bucket_widths(max_length: int, boundaries: Sequence[int] = ()) -> np.ndarray:
  """Sorted batch widths, int64 ``[k]``: the ``boundaries`` in
  ``(0, max_length)``, then ``max_length``."""
  if max_length < 1:
    raise ValueError(f'max_length={max_length} must be >= 1.')
  return np.asarray(sorted({int(b) for b in boundaries if 0 < b < max_length}
                           | {int(max_length)}), np.int64)


def log_truncation(lengths: np.ndarray, max_length: int, what: str) -> int:
  """Logs how many of ``lengths`` exceed ``max_length``; returns the count."""
  truncated = int((lengths > max_length).sum())
  if truncated:
    logging.getLogger(__name__).warning(
        'Truncated %d of %d %s examples (%.2f%%) to max_length=%d tokens; the longest has %d. '
        'Raise the data config max_length to keep more.', truncated, len(lengths), what,
        100 * truncated / len(lengths), max_length, int(np.max(lengths)))
  return truncated
