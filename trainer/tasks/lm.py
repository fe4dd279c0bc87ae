"""Language modelling: ``lstm_flax.models.LanguageModel`` with truncated BPTT.

The LSTM state at the end of one training batch starts the next (gradient
stopped) and is reset at every epoch (stream batching) or every batch
(sentence batching). The loss is the fused output layer + cross-entropy
(``LanguageModel(targets=...)``, ``lstm_flax.losses``), summed over unmasked
tokens. Metrics: loss, perplexity, bits per character for character models.
The best checkpoint has the lowest validation perplexity. Inference
(``generate.py``): :class:`Generator` samples continuations of a prompt.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

import input_pipeline
from lstm_flax import inference as inference_lib
from lstm_flax.models import LanguageModel
from trainer import config_lib, errors, inference, metrics
from trainer import task_base as base


@dataclasses.dataclass
class Generator:
  """A restored language model, its parameters and tokenizer (what
  ``generate.py`` uses)."""

  model: LanguageModel
  params: Any
  tokenizer: Any  # input_pipeline.tokenizers.Tokenizer
  step: int

  def generate(self, prompt: str = '', *, num_tokens: int = 100,
               temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int = 0,
               num_samples: int = 1) -> list[str]:
    """``num_samples`` continuations of ``prompt``
    (:func:`lstm_flax.inference.generate`, a jit-compiled ``lax.scan`` that
    carries the LSTM state)."""
    return inference_lib.generate(
        self.model, self.params, self.tokenizer, prompt, num_tokens=num_tokens,
        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
        num_samples=num_samples)


class LMDatasets(base.Datasets):
  """``input_pipeline.LMDatasets`` for the trainer: stream batches carry the
  LSTM state from batch to batch within an epoch; sentence batches do not."""

  @property
  def streams(self) -> bool:
    return self.source.config['batching'] == 'stream'

  def epoch_length(self):
    if self.streams and self.source.config['random_window']:
      batcher = self.source.batcher('train')
      return self.source.steps_per_epoch(), lambda e: len(batcher.windows(e))
    return self.source.steps_per_epoch(), None

  def resets_carry(self, is_epoch_start):
    return is_epoch_start or not self.streams

  def batch_tokens(self, local):
    return float(local['mask'].sum())

  def signature(self) -> dict[str, Any]:
    return {**super().signature(),
            'data.batch_size': self.config.data.batch_size}


class LanguageModelTask(base.Task):
  """Word / character / SentencePiece language models (``task='lm'``)."""

  name = 'lm'
  INFERENCE_KEYS = ('data.eval_batch_size',)
  USAGE = ('a language model (use generate.py, or train.py with '
           '--config.mode=evaluate and a language-model config)')
  COMMAND = 'generate.py'

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Model: the fields of lstm_flax.models.LanguageModel (documented there);
    # the vocabulary size comes from the tokenizer.
    config.model = config_lib.module_config(
        LanguageModel, exclude=('vocab_size',), embedding_size=200,
        hidden_size=200)
    # Data: input_pipeline.default_lm_config() (every key documented there).
    config.data = input_pipeline.default_lm_config()
    return config

  def validate(self) -> None:
    super().validate()
    d = self.config.data
    for key in ('batch_size', 'eval_batch_size'):
      config_lib.positive(f'data.{key}', d[key])
    if d.batching == 'stream':
      config_lib.positive('data.seq_len', d.seq_len)
    if d.batching == 'sentences' and d.packing:
      raise errors.ConfigError(
          'data.packing=True puts several sentences in one row, but the LSTM '
          'carry is not reset between them; use data.packing=False.')

  def placeholder_model_inputs(self) -> dict[str, int]:
    return {'vocab_size': 8}

  def check_batch_sizes(self, check) -> None:
    check(self.config.data.batch_size, 'data.batch_size')
    check(self.config.data.eval_batch_size, 'data.eval_batch_size')

  # ---------------------------------------------------------------- data --

  def load_datasets(self, workdir: str, eval_split: str | None = None
                    ) -> LMDatasets:
    """The splits of ``data.eval_splits``, or only ``eval_split``."""
    data = self.config.data
    if eval_split is not None:
      data = {**data.to_dict(), 'eval_splits': (eval_split,)}
    return LMDatasets(input_pipeline.get_lm_datasets(data, workdir),
                      self.config, eval_split)

  # --------------------------------------------------------------- model --

  def build_model(self, *, vocab_size: int) -> LanguageModel:
    return LanguageModel(vocab_size=vocab_size, **self.config.model.to_dict())

  def init_variables(self, model, rng):
    return model.init(rng, jnp.zeros((1, 1), jnp.int32))['params']

  def initial_carry(self, model, batch_size):
    return model.initialize_carry(batch_size)

  @staticmethod
  def start_carry(carry: Any, reset: jax.Array) -> Any:
    """The carry a batch starts from: zero where ``reset``, gradient stopped."""
    return jax.lax.stop_gradient(jax.tree.map(
        lambda c: jnp.where(reset, jnp.zeros_like(c), c), carry))

  # ---------------------------------------------------------------- loss --

  def loss_fn(self, model, params, carry, batch, reset, dropout_rng):
    carry = self.start_carry(carry, reset)
    loss_sum, new_carry = model.apply(
        {'params': params}, batch['inputs'], carry, mask=batch['mask'],
        targets=batch['targets'], deterministic=False,
        rngs={'dropout': dropout_rng})
    weight = jnp.sum(batch['mask'])
    sums = {'loss_sum': loss_sum, 'weight': weight}
    return loss_sum / jnp.maximum(weight, 1.0), (sums, new_carry)

  def eval_fn(self, model, params, carry, batch):
    loss_sum, carry = model.apply({'params': params}, batch['inputs'], carry,
                                  mask=batch['mask'], targets=batch['targets'],
                                  deterministic=True)
    return carry, {'loss_sum': loss_sum, 'weight': jnp.sum(batch['mask'])}

  # ------------------------------------------------------------- metrics --

  @property
  def best_metric(self) -> base.BestMetric:
    return base.BestMetric('valid_perplexity', 'min')

  def summarize(self, prefix: str, sums: Mapping[str, float]
                ) -> dict[str, float]:
    out = metrics.loss_and_perplexity(prefix, sums)
    if self.config.data.tokenizer == 'char':
      out[f'{prefix}_bits_per_char'] = out[f'{prefix}_loss'] / math.log(2.0)
    return out

  def evaluate(self, context, datasets, split):
    """Loss / perplexity of ``split``: every token once; with stream
    batching the carry flows from batch to batch as in training, with
    sentence batching every batch starts from zero."""
    if datasets.streams:
      return super().evaluate(context, datasets, split)
    sums = []
    for local in datasets.eval_batches(split):
      _, batch_sums = context.eval_step(
          context.zero_carry(), context.to_device(datasets.device_batch(local)))
      sums.append(batch_sums)
    return self.summarize(split, base.sum_metrics(sums))

  def predictor(self, restored: inference.Restored) -> Generator:
    return Generator(restored.model, restored.params(), restored.tokenizer,
                     restored.step)


TASK = LanguageModelTask
