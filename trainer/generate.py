"""Text generation from a run's checkpoint and saved tokenizer.

Loads the latest (or best, or a given step's) checkpoint of a workdir, the
model config saved with it and the tokenizer saved in the workdir, reads the
prompt once and samples with :func:`lstm_flax.inference.generate` (a
jit-compiled ``lax.scan`` that carries the LSTM state).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from input_pipeline import tokenizers
from lstm_flax import inference as inference_lib
from lstm_flax.models import LanguageModel
from trainer import inference
from trainer.tasks.language_model import LanguageModelTask


@dataclasses.dataclass
class Generator:
  """A restored model, its parameters and tokenizer."""

  model: LanguageModel
  params: Any
  tokenizer: tokenizers.Tokenizer
  step: int

  def generate(self, prompt: str = '', *, num_tokens: int = 100,
               temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int = 0,
               num_samples: int = 1) -> list[str]:
    """``num_samples`` continuations of ``prompt``
    (:func:`lstm_flax.inference.generate`)."""
    return inference_lib.generate(
        self.model, self.params, self.tokenizer, prompt, num_tokens=num_tokens,
        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
        num_samples=num_samples)


def load(workdir: str, checkpoint: str | int = 'latest') -> Generator:
  """The generator of ``workdir``'s checkpoint ('latest', 'best' or a step)."""
  restored = inference.restore(workdir, checkpoint, task_name=LanguageModelTask.name)
  tokenizer = inference.checkpoint_tokenizer(workdir, restored.meta,
                                             restored.step)
  return Generator(restored.model, restored.params(), tokenizer,
                   restored.step)
