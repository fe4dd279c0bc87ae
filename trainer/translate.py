"""Translation of text lines with a trained translation run's checkpoint.

``load(workdir, checkpoint)`` restores the latest (or best, or a given
step's) checkpoint of a translation run and the joint SentencePiece
tokenizer saved in the workdir; :meth:`Translator.translate` translates a
list of lines in length-sorted batches with beam search, greedy decoding or
sampling (``lstm_flax.decoding.translate``, jit-compiled once per padded
source length), and returns the translations in input order with an
:class:`InputReport` of the lines it had to change:

* empty (or blank) lines are not translated; their output is an empty line;
* lines longer than ``max_input_tokens`` tokens (with EOS) are truncated and
  counted;
* characters the vocabulary lacks are encoded as ``<unk>`` and reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from input_pipeline import tokenizers
from trainer import errors, inference
from trainer.tasks import translation

PAD_TO = 8  # Source lengths are padded to a multiple of this (fewer compiles).


@dataclasses.dataclass
class InputReport:
  """What was changed in the input (line numbers from 1)."""

  num_lines: int = 0
  max_input_tokens: int = 0
  empty: list[int] = dataclasses.field(default_factory=list)
  truncated: list[tuple[int, int]] = dataclasses.field(default_factory=list)
  unknown: list[tuple[int, str]] = dataclasses.field(default_factory=list)

  def messages(self) -> list[str]:
    """One human-readable warning per kind of change."""
    out = []
    if self.empty:
      out.append(f'{_lines(len(self.empty))} empty ({_numbers(self.empty)}): '
                 'not translated, written as empty lines.')
    if self.truncated:
      detail = ', '.join(f'line {n}: {t} tokens'
                         for n, t in self.truncated[:5])
      more = ', ...' if len(self.truncated) > 5 else ''
      out.append(
          f'{_lines(len(self.truncated))} longer than max_input_tokens='
          f'{self.max_input_tokens} (with EOS) truncated ({detail}{more}).')
    if self.unknown:
      chars = sorted({c for _, s in self.unknown for c in s})
      out.append(
          f'{_lines(len(self.unknown))} with characters the vocabulary '
          f'lacks, translated as <unk> ({_numbers([n for n, _ in self.unknown])}'
          f'; characters: {"".join(chars)!r}).')
    return out


def _lines(n: int) -> str:
  return f'{n} line' if n == 1 else f'{n} lines'


def _numbers(numbers: Sequence[int]) -> str:
  shown = ', '.join(str(n) for n in numbers[:10])
  more = ', ...' if len(numbers) > 10 else ''
  return f'line{"s" if len(numbers) > 1 else ""} {shown}{more}'


@dataclasses.dataclass
class Translator:
  """A restored translation model, its parameters and tokenizer."""

  model: Any  # lstm_flax.seq2seq.Seq2Seq
  params: Any
  tokenizer: tokenizers.Tokenizer
  step: int
  config: ml_collections.ConfigDict  # The run's config (decode defaults).

  def encode(self, lines: Sequence[str], max_input_tokens: int
             ) -> tuple[list[list[int] | None], InputReport]:
    """Ids (with EOS) of each line (``None`` for empty lines), truncated to
    ``max_input_tokens``, and the report of changes."""
    if max_input_tokens < 2:
      raise errors.ConfigError(
          f'max_input_tokens must be >= 2 (a token and EOS); got '
          f'{max_input_tokens}.')
    report = InputReport(num_lines=len(lines),
                         max_input_tokens=max_input_tokens)
    unk = self.tokenizer.unk_id
    char_is_unknown: dict[str, bool] = {}
    encoded: list[list[int] | None] = []
    for number, line in enumerate(lines, 1):
      if not line.strip():
        report.empty.append(number)
        encoded.append(None)
        continue
      ids = list(self.tokenizer.encode(line)) + [self.tokenizer.eos_id]
      if unk in ids:
        missing = []
        for c in dict.fromkeys(line):
          if c.isspace():
            continue
          if c not in char_is_unknown:
            char_is_unknown[c] = unk in self.tokenizer.encode(c)
          if char_is_unknown[c]:
            missing.append(c)
        report.unknown.append((number, ''.join(missing)))
      if len(ids) > max_input_tokens:
        report.truncated.append((number, len(ids)))
        ids = ids[:max_input_tokens - 1] + [self.tokenizer.eos_id]
      encoded.append(ids)
    return encoded, report

  def translate(self, lines: Sequence[str], *, batch_size: int = 32,
                method: str | None = None, beam_size: int | None = None,
                alpha: float | None = None,
                max_input_tokens: int | None = None,
                seed: int = 0) -> tuple[list[str], InputReport]:
    """Translations of ``lines`` (in order) and the report of changes.

    ``method``, ``beam_size``, ``alpha`` default to the run's
    ``config.decode``; ``max_input_tokens`` to ``config.decode.max_length``.
    """
    if batch_size < 1:
      raise errors.ConfigError(f'batch_size must be >= 1; got {batch_size}.')
    decode = ml_collections.ConfigDict(self.config.decode.to_dict())
    if method is not None:
      decode.method = method
    if beam_size is not None:
      decode.beam_size = beam_size
    if alpha is not None:
      decode.alpha = alpha
    if decode.method not in ('beam', 'greedy', 'sample'):
      raise errors.ConfigError(
          f"method={decode.method!r} is unknown; use 'beam', 'greedy' or "
          "'sample'.")
    if decode.beam_size < 1:
      raise errors.ConfigError(
          f'beam_size must be >= 1; got {decode.beam_size}.')
    encoded, report = self.encode(
        lines, int(max_input_tokens or decode.max_length))
    outputs = [''] * len(lines)
    todo = sorted((i for i, ids in enumerate(encoded) if ids is not None),
                  key=lambda i: -len(encoded[i]))
    rng = jax.random.PRNGKey(seed)
    eos = self.tokenizer.eos_id
    for begin in range(0, len(todo), batch_size):
      chunk = todo[begin:begin + batch_size]
      length = -(-max(len(encoded[i]) for i in chunk) // PAD_TO) * PAD_TO
      source = np.full((batch_size, length), self.tokenizer.pad_id, np.int32)
      mask = np.zeros((batch_size, length), np.float32)
      source[:, 0], mask[:, 0] = eos, 1.0  # Filler rows: just EOS.
      for r, i in enumerate(chunk):
        ids = encoded[i]
        source[r], mask[r] = self.tokenizer.pad_id, 0.0
        source[r, :len(ids)], mask[r, :len(ids)] = ids, 1.0
      tokens = translation.translate_batch(
          self.model, self.params, source, mask, decode, self.tokenizer,
          rng=jax.random.fold_in(rng, begin))
      tokens = np.asarray(jax.device_get(tokens))
      for r, i in enumerate(chunk):
        outputs[i] = translation.detokenize(self.tokenizer, tokens[r])
    return outputs, report


def load(workdir: str, checkpoint: str | int = 'latest') -> Translator:
  """The translator of ``workdir``'s checkpoint ('latest', 'best' or a step).

  Raises:
    CheckpointNotFoundError: no (such) checkpoint in the workdir, or its
      tokenizer is missing.
    CheckpointMismatchError: the checkpoint is not a translation model.
  """
  restored = inference.restore(workdir, checkpoint, task_name=translation.TranslationTask.name)
  tokenizer = inference.checkpoint_tokenizer(workdir, restored.meta,
                                             restored.step)
  return Translator(restored.model, restored.params(), tokenizer,
                    restored.step, restored.task.config)
