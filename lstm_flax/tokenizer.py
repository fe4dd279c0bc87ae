"""Reading the tokenizer files saved with a run or an export (``tokenizer/``).

The trainer's ``input_pipeline.tokenizers`` builds the vocabularies and
writes ``tokenizer/tokenizer.json`` (``kind``, ``fingerprint`` and, for word
and character tokenizers, ``vocab``; for SentencePiece, ``model_file``
naming the model beside it). This module only reads them back, with the
same ids, so that an exported model needs neither the trainer nor
TensorFlow:

* ``'word'``: whitespace split; ``<eos>`` = 0 (also pad and bos), ``<unk>`` = 1.
* ``'char'``: one id per character; ``<unk>`` = 0 (also pad, decoded as
  U+FFFD), ``'\\n'`` is the end-of-line id (also bos).
* ``'sentencepiece'``: the saved model (``pip install sentencepiece``,
  imported only here).

``encode(text)`` gives one line's ids without the end-of-line id;
``decode(ids)`` turns the end-of-line id into ``'\\n'`` and drops pad and bos.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

METADATA_FILE = 'tokenizer.json'
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
    raise NotImplementedError

  def encode(self, text: str) -> list[int]:
    """Ids of one line of text, without ``eos_id``."""
    raise NotImplementedError

  def fingerprint(self) -> str:
    """Hex digest of the vocabulary / model (the trainer's)."""
    raise NotImplementedError

  def _decode_segment(self, ids: Sequence[int]) -> str:
    raise NotImplementedError

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


class _VocabularyTokenizer(Tokenizer):
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


class WordTokenizer(_VocabularyTokenizer):
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

  def _decode_segment(self, ids: Sequence[int]) -> str:
    return ' '.join(self.vocab[i] for i in ids)


class CharTokenizer(_VocabularyTokenizer):
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
  """A SentencePiece model (the trainer's: pad 0, unk 1, bos 2, eos 3)."""

  kind = 'sentencepiece'

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
      raise ValueError('The SentencePiece model has no BOS or EOS piece.')
    if self.pad_id < 0:  # As the trainer: pad with unk (masked).
      self.pad_id = self.unk_id

  @property
  def vocab_size(self) -> int:
    return self.processor.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self.processor.encode(text)

  def _decode_segment(self, ids: Sequence[int]) -> str:
    return self.processor.decode(list(ids))

  def fingerprint(self) -> str:
    return hashlib.sha256(self.model_proto).hexdigest()


def load(directory: str | os.PathLike[str]) -> Tokenizer:
  """The tokenizer saved in ``directory`` (its ``tokenizer.json``).

  Raises:
    FileNotFoundError: no ``tokenizer.json`` (or SentencePiece model file).
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
    raise ValueError(f'{path}: "kind" is {kind!r}; expected one of {list(KINDS)}.')
  expected = metadata.get('fingerprint')
  if expected is not None and expected != tokenizer.fingerprint():
    raise ValueError(
        f'{path}: "fingerprint" does not match its vocabulary / model file (the files were '
        'changed after saving); export the model again.')
  return tokenizer
