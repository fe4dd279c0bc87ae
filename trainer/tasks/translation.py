"""Translation: ``lstm_flax.seq2seq.Seq2Seq`` trained with teacher forcing.

The loss is label-smoothed cross-entropy over the target tokens; the
reported loss and perplexity are the plain cross-entropy. Validation also
translates (``config.decode``: beam, greedy or sampling) and scores corpus
BLEU and chrF (sacrebleu, 13a tokenisation) of the detokenised output
against the raw references; the best checkpoint has the highest validation
BLEU (the lowest perplexity with ``decode.eval_bleu=False``).

Inference (``translate.py``): :class:`Translator` translates text lines in
length-sorted batches (``lstm_flax.inference.translate``) and reports the
lines it had to change (empty lines are not translated, overlong ones are
truncated, characters the vocabulary lacks become ``<unk>``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import input_pipeline
from lstm_flax import inference as inference_lib
from lstm_flax.seq2seq import Seq2Seq
from trainer import config_lib, inference, metrics
from trainer import task_base as base

DECODE_METHODS = inference_lib.DECODE_METHODS
InputReport = inference_lib.InputReport  # What was changed in the input.


def label_smoothed_cross_entropy(logits: jax.Array, labels: jax.Array,
                                 smoothing: float) -> jax.Array:
  """Per-token cross-entropy against ``optax.smooth_labels`` of the one-hot
  labels: ``(1 - smoothing) * nll + smoothing * mean(-log_softmax(logits))``.

  Args:
    logits: ``[..., vocab]``.
    labels: ``[...]`` integer targets.
    smoothing: the probability mass spread uniformly over the vocabulary.

  Returns:
    ``[...]`` float32 losses.
  """
  one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  return optax.softmax_cross_entropy(
      logits.astype(jnp.float32), optax.smooth_labels(one_hot, smoothing))

class TranslationDatasets(base.Datasets):
  """``input_pipeline.TranslationDatasets`` for the trainer: one evaluation
  split is loaded ('valid', or the evaluate command's ``eval_split``), its
  raw references kept for BLEU / chrF."""

  def eval_batches(self, split: str):
    """One ordered pass over the loaded evaluation pairs (empty rows: index
    -1)."""
    loaded = self.eval_split or 'valid'
    if split != loaded:
      raise config_lib.ConfigError(
          f'Split {split!r} was not loaded (this run loaded {loaded!r}); '
          'evaluate it with --config.mode=evaluate '
          f'--config.eval_split={split}.')
    return self.source.eval_batches()

  def device_batch(self, local):
    return {k: local[k] for k in TranslationTask.BATCH_KEYS}

  def batch_tokens(self, local):
    return float(local['target_mask'].sum())

  def signature(self) -> dict[str, Any]:
    return {**super().signature(), **{
        f'data.{k}': self.config.data[k] for k in (
            'tokens_per_batch', 'batch_size_multiple', 'max_length')}}


class TranslationTask(base.Task):
  """Attention encoder-decoder on a joint vocabulary (``task='translation'``)."""

  name = 'translation'
  BATCH_KEYS = ('source', 'target_input', 'target_output', 'source_mask',
                'target_mask')
  INFERENCE_KEYS = ('decode', 'data.eval_tokens_per_batch')
  USAGE = ('a translation model (use translate.py, or train.py with '
           '--config.mode=evaluate and a translation config)')
  COMMAND = 'translate.py'

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Model: the fields of lstm_flax.seq2seq.Seq2Seq (documented there); the
    # joint SentencePiece vocabulary gives both vocabulary sizes.
    config.model = config_lib.module_config(
        Seq2Seq, exclude=('source_vocab_size', 'target_vocab_size'),
        share_embeddings=True, dropout_rate=0.1)
    # Label smoothing of the training loss (the reported losses and
    # perplexities are plain cross-entropy).
    config.label_smoothing = 0.1

    # Decoding: validation BLEU / chrF during training, evaluate mode and the
    # default of translate.py.
    config.decode = ml_collections.ConfigDict()
    # 'beam', 'greedy' or 'sample'.
    config.decode.method = 'beam'
    config.decode.beam_size = 4
    # GNMT length penalty exponent.
    config.decode.alpha = 0.6
    # Output limit per sentence: min(max_length, length_ratio * source tokens
    # + length_offset).
    config.decode.max_length = 256
    config.decode.length_ratio = 1.5
    config.decode.length_offset = 10
    # Compute BLEU / chrF at every validation (else loss / perplexity only).
    config.decode.eval_bleu = True
    # Translate only the first this many validation pairs for BLEU (0: all).
    config.decode.max_bleu_examples = 0

    # Data: input_pipeline.default_translation_config() (every key documented
    # there).
    config.data = input_pipeline.default_translation_config()
    return config

  def validate(self) -> None:
    super().validate()
    c = self.config
    if not 0.0 <= c.label_smoothing < 1.0:
      raise config_lib.ConfigError(
          f'label_smoothing must be in [0, 1); got {c.label_smoothing!r}.')
    d = c.decode
    config_lib.choice('decode.method', d.method, DECODE_METHODS)
    for key in ('beam_size', 'max_length'):
      config_lib.positive(f'decode.{key}', d[key])
    for key in ('alpha', 'length_ratio', 'length_offset', 'max_bleu_examples'):
      config_lib.non_negative(f'decode.{key}', d[key])
    for key in ('tokens_per_batch', 'eval_tokens_per_batch', 'max_length',
                'batch_size_multiple', 'vocab_size'):
      config_lib.positive(f'data.{key}', c.data[key])

  def placeholder_model_inputs(self) -> dict[str, int]:
    return {'vocab_size': 8}

  def check_batch_sizes(self, check) -> None:
    check(self.config.data.batch_size_multiple, 'data.batch_size_multiple')

  # ---------------------------------------------------------------- data --

  def load_datasets(self, workdir: str, eval_split: str | None = None
                    ) -> TranslationDatasets:
    """With ``eval_split``: 'valid' is the run's validation split; any other
    name is a file prefix (parallel text, e.g. 'test_2016_flickr') or a TFDS
    split."""
    data = self.config.data
    if eval_split not in (None, 'valid'):
      key = ('eval_prefix' if data.source == 'parallel_text' else
             'tfds_eval_split')
      data = {**data.to_dict(), key: eval_split}
    return TranslationDatasets(
        input_pipeline.get_translation_datasets(data, workdir), self.config,
        eval_split)

  def inference_settings(self, workdir: str) -> dict[str, Any]:
    """The run's decoding settings (``lstm_flax.inference.DecodeOptions``)."""
    del workdir
    return {'decode': dataclasses.asdict(decode_options(self.config.decode))}

  # --------------------------------------------------------------- model --

  def build_model(self, *, vocab_size: int) -> Seq2Seq:
    return Seq2Seq(source_vocab_size=vocab_size, target_vocab_size=vocab_size,
                   **self.config.model.to_dict())

  def init_variables(self, model, rng):
    tokens = jnp.zeros((1, 1), jnp.int32)
    return model.init(rng, tokens, tokens, jnp.ones((1, 1), jnp.float32),
                      deterministic=True)['params']

  # ---------------------------------------------------------------- loss --

  def _logits(self, model, params, batch, deterministic, rngs=None):
    return model.apply({'params': params}, batch['source'],
                       batch['target_input'], batch['source_mask'],
                       deterministic=deterministic, rngs=rngs)

  def loss_fn(self, model, params, carry, batch, reset, dropout_rng):
    """Label-smoothed cross-entropy over ``target_mask``; the returned sums
    are the plain cross-entropy (for loss / perplexity metrics)."""
    del reset
    logits = self._logits(model, params, batch, False,
                          {'dropout': dropout_rng})
    nll = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['target_output'])
    mask = batch['target_mask']
    smoothing = float(self.config.label_smoothing)
    objective = (label_smoothed_cross_entropy(logits, batch['target_output'],
                                              smoothing)
                 if smoothing > 0 else nll)
    weight = jnp.sum(mask)
    loss = jnp.sum(objective * mask) / jnp.maximum(weight, 1.0)
    return loss, ({'loss_sum': jnp.sum(nll * mask), 'weight': weight}, carry)

  def eval_fn(self, model, params, carry, batch):
    logits = self._logits(model, params, batch, True)
    nll = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['target_output'])
    mask = batch['target_mask']
    return carry, {'loss_sum': jnp.sum(nll * mask), 'weight': jnp.sum(mask)}

  # ------------------------------------------------------------- metrics --

  @property
  def best_metric(self) -> base.BestMetric:
    if self.config.decode.eval_bleu:
      return base.BestMetric('valid_bleu', 'max')
    return base.BestMetric('valid_perplexity', 'min')

  def summarize(self, prefix: str, sums: Mapping[str, float]
                ) -> dict[str, float]:
    return metrics.loss_and_perplexity(prefix, sums)

  def evaluate(self, context, datasets, split):
    """Loss / perplexity of the evaluation pairs, and corpus BLEU / chrF of
    their translations (``config.decode``) against the raw references
    (always for the evaluate command's datasets)."""
    d = self.config.decode
    eval_bleu = d.eval_bleu or datasets.eval_split is not None
    references = datasets.source.eval_references
    limit = min(int(d.max_bleu_examples) or len(references), len(references))
    hypotheses: dict[int, str] = {}
    sums = []
    for local in datasets.eval_batches(split):
      batch = context.to_device(datasets.device_batch(local))
      _, batch_sums = context.eval_step(None, batch)
      sums.append(batch_sums)
      if not eval_bleu:
        continue
      index = _gather_rows(local['example_index'])
      if not np.any((index >= 0) & (index < limit)):
        continue
      tokens = inference_lib.translate_batch(
          context.model, context.params, batch['source'], batch['source_mask'],
          decode_options(d), datasets.tokenizer)
      tokens = _gather_rows(tokens)
      for i, row in zip(index.tolist(), tokens):
        if 0 <= i < limit:
          hypotheses[i] = inference_lib.detokenize(datasets.tokenizer, row)
    out = self.summarize(split, base.sum_metrics(sums))
    if eval_bleu:
      out.update(bleu_and_chrf(
          split, [hypotheses.get(i, '') for i in range(limit)],
          references[:limit]))
    return out

  def predictor(self, restored: inference.Restored) -> Translator:
    return Translator(restored.model, restored.params(), restored.tokenizer,
                      restored.step, self.config)


@dataclasses.dataclass
class Translator:
  """A restored translation model, its parameters and tokenizer (what
  ``translate.py`` uses)."""

  model: Any  # lstm_flax.seq2seq.Seq2Seq
  params: Any
  tokenizer: Any  # input_pipeline.tokenizers.Tokenizer
  step: int
  config: ml_collections.ConfigDict  # The run's config (decode defaults).

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
    with inference.settings_as_config_errors():
      decode = decode_options(
          self.config.decode, method=method, beam_size=beam_size, alpha=alpha)
      return inference_lib.translate(
          self.model, self.params, self.tokenizer, lines, decode=decode,
          batch_size=batch_size, max_input_tokens=max_input_tokens,
          seed=seed)


def _gather_rows(x: Any) -> np.ndarray:
  """A global array (or this host's rows) -> all rows as numpy."""
  if jax.process_count() > 1 and (
      isinstance(x, np.ndarray) or
      (isinstance(x, jax.Array) and not x.is_fully_addressable)):
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def decode_options(decode: Any, **overrides: Any
                   ) -> inference_lib.DecodeOptions:
  """``config.decode`` (with ``overrides`` that are not None) as
  :class:`lstm_flax.inference.DecodeOptions`.

  Raises:
    lstm_flax.inference.SettingError: an invalid setting, named.
  """
  values = decode.to_dict() if hasattr(decode, 'to_dict') else dict(decode)
  return inference_lib.DecodeOptions.from_mapping(values, **overrides)


def bleu_and_chrf(prefix: str, hypotheses: list[str],
                  references: list[str]) -> dict[str, float]:
  """sacrebleu corpus BLEU (13a tokenisation) and chrF."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  return {f'{prefix}_bleu': float(sacrebleu.corpus_bleu(
              hypotheses, [references]).score),
          f'{prefix}_chrf': float(sacrebleu.corpus_chrf(
              hypotheses, [references]).score)}


TASK = TranslationTask
