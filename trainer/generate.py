"""Text generation from a run's checkpoint and saved tokenizer.

Loads the latest (or best, or a given step's) checkpoint of a workdir, the
model config saved with it and the tokenizer saved in the workdir, reads the
prompt once and samples with :func:`lstm_flax.sampling.sample` (a
jit-compiled ``lax.scan`` that carries the LSTM state).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline import tokenizers
from lstm_flax import sampling
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
    """``num_samples`` continuations of ``prompt`` (the generated text only).

    The prompt is preceded by the end-of-line token, so generation starts as
    at the beginning of a line. The same seed gives the same text.
    """
    if num_tokens < 1:
      raise ValueError(f'num_tokens must be >= 1; got {num_tokens}.')
    if num_samples < 1:
      raise ValueError(f'num_samples must be >= 1; got {num_samples}.')
    ids = [self.tokenizer.eos_id] + self.tokenizer.encode(prompt)
    prompt_ids = jnp.asarray(np.tile(np.asarray(ids, np.int32),
                                     (num_samples, 1)))
    tokens = sampling.sample(
        self.model, self.params, prompt_ids, jax.random.PRNGKey(seed),
        num_tokens, temperature=float(temperature), top_k=top_k or None,
        top_p=top_p if top_p is not None and top_p < 1.0 else None)
    return [self.tokenizer.decode(row) for row in np.asarray(tokens).tolist()]


def load(workdir: str, checkpoint: str | int = 'latest') -> Generator:
  """The generator of ``workdir``'s checkpoint ('latest', 'best' or a step)."""
  restored = inference.restore(workdir, checkpoint, task_name=LanguageModelTask.name)
  tokenizer = inference.checkpoint_tokenizer(workdir, restored.meta,
                                             restored.step)
  return Generator(restored.model, restored.params(), tokenizer,
                   restored.step)
