"""Translation of text lines with a trained translation run's checkpoint.

``load(workdir, checkpoint)`` restores the latest (or best, or a given
step's) checkpoint of a translation run and the joint SentencePiece
tokenizer saved in the workdir; :meth:`Translator.translate` translates a
list of lines in length-sorted batches with beam search, greedy decoding or
sampling (``lstm_flax.inference.translate``, jit-compiled once per padded
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

import ml_collections

from input_pipeline import tokenizers
from lstm_flax import inference as inference_lib
from trainer import errors, inference
from trainer.tasks import translation

InputReport = inference_lib.InputReport  # What was changed in the input.


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
    ``max_input_tokens``, and the report of changes
    (:func:`lstm_flax.inference.encode_sources`)."""
    try:
      return inference_lib.encode_sources(self.tokenizer, lines,
                                          max_input_tokens)
    except inference_lib.SettingError as e:
      raise errors.ConfigError(str(e)) from None

  def translate(self, lines: Sequence[str], *, batch_size: int = 32,
                method: str | None = None, beam_size: int | None = None,
                alpha: float | None = None,
                max_input_tokens: int | None = None,
                seed: int = 0) -> tuple[list[str], InputReport]:
    """Translations of ``lines`` (in order) and the report of changes
    (:func:`lstm_flax.inference.translate`).

    ``method``, ``beam_size``, ``alpha`` default to the run's
    ``config.decode``; ``max_input_tokens`` to ``config.decode.max_length``.
    """
    try:
      decode = translation.decode_options(
          self.config.decode, method=method, beam_size=beam_size, alpha=alpha)
      return inference_lib.translate(
          self.model, self.params, self.tokenizer, lines, decode=decode,
          batch_size=batch_size, max_input_tokens=max_input_tokens,
          seed=seed)
    except inference_lib.SettingError as e:  # One line, no traceback.
      raise errors.ConfigError(str(e)) from None


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
