"""What differs between the trainer's tasks: language modelling and translation.

``train_lib`` runs one loop (sharded step, Orbax checkpoints, exact resume,
clu metrics) for every task; a :class:`Task` supplies the rest:

* the datasets (``input_pipeline.get_lm_datasets`` /
  ``get_translation_datasets``) and the model built from ``config.model``;
* the initial parameters and the carry between batches (the LM's LSTM state
  for truncated BPTT; nothing for translation);
* the per-batch loss as (objective, masked cross-entropy *sum*, token count),
  so metrics aggregate exactly over steps and devices;
* the evaluation of a split: loss / perplexity, plus corpus BLEU and chrF
  (sacrebleu, detokenised beam or greedy output against the raw references)
  for translation;
* the run signature a checkpoint must share with the config to be resumed.

``get_task(config)`` picks the task from ``config.task`` ('lm' or
'translation').
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import input_pipeline
from lstm_flax import decoding
from lstm_flax.models import LanguageModel
from lstm_flax.seq2seq import Seq2Seq
from trainer import errors, optimizers

PyTree = Any
Batch = dict[str, jax.Array]
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16,
          'float16': jnp.float16}


def summarize(prefix: str, loss_sum: float, weight: float,
              tokenizer_kind: str) -> dict[str, float]:
  """Loss, perplexity (and bits per char for char models) of loss sums."""
  loss = loss_sum / max(weight, 1.0)
  out = {f'{prefix}_loss': loss,
         # inf beyond float32 (TensorBoard stores float32 scalars).
         f'{prefix}_perplexity': math.exp(loss) if loss < 88.0 else math.inf}
  if tokenizer_kind == 'char':
    out[f'{prefix}_bits_per_char'] = loss / math.log(2.0)
  return out


def loss_sums(logits: jax.Array, targets: jax.Array, mask: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """(sum of masked token cross-entropies, number of tokens)."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(losses * mask), jnp.sum(mask)


def has_averaging(opt_state: PyTree) -> bool:
  return any(isinstance(s, optimizers.AveragingState) for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, optimizers.AveragingState)))


def eval_params(steps: Any, state: Any) -> PyTree:
  """The parameters to evaluate (the average under averaged SGD)."""
  if steps.optimizer is not None and has_averaging(state.opt_state):
    return steps.eval_params(state.params, state.opt_state)
  return state.params


def _sum_metrics(sums: Iterable[Mapping[str, Any]]) -> tuple[float, float]:
  sums = jax.device_get(list(sums))
  return (float(sum(np.float64(m['loss_sum']) for m in sums)),
          float(sum(np.float64(m['weight']) for m in sums)))


class Task:
  """The task-specific parts of a run (see the module docstring)."""

  name: str

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  # Subclasses implement these.
  def load_datasets(self, workdir: str) -> Any:
    raise NotImplementedError

  def build_model(self, vocab_size: int) -> Any:
    raise NotImplementedError

  def init_params(self, model: Any, rng: jax.Array) -> PyTree:
    raise NotImplementedError

  def initial_carry(self, model: Any, batch_size: int) -> PyTree:
    """The carry between training batches (``None``: no carry)."""
    raise NotImplementedError

  def train_loss(self, model: Any, params: PyTree, carry: PyTree,
                 batch: Batch, reset: jax.Array, dropout_rng: jax.Array):
    """(objective, (loss_sum, weight, new_carry))."""
    raise NotImplementedError

  def eval_loss(self, model: Any, params: PyTree, carry: PyTree,
                batch: Batch) -> tuple[PyTree, jax.Array, jax.Array]:
    """(new_carry, loss_sum, weight), deterministic."""
    raise NotImplementedError

  def check_config(self, partitioner: Any) -> None:
    raise NotImplementedError

  def signature(self, tokenizer: Any) -> dict[str, Any]:
    raise NotImplementedError

  def epoch_length(self, datasets: Any):
    """(batches in the first epoch, ``fn(epoch) -> batches`` when epochs
    differ in length, else ``None``)."""
    raise NotImplementedError

  def resets_carry(self, datasets: Any, is_epoch_start: bool) -> bool:
    return True

  def device_batch(self, local: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of a local batch that the jit-compiled steps take."""
    return dict(local)

  def batch_tokens(self, local: Mapping[str, np.ndarray]) -> float:
    raise NotImplementedError

  def evaluate(self, steps: Any, state: Any, datasets: Any,
               split: str) -> dict[str, float]:
    raise NotImplementedError

  def common_signature(self, tokenizer: Any) -> dict[str, Any]:
    o = self.config.optimizer
    return {
        'vocab_size': tokenizer.vocab_size,
        'tokenizer_fingerprint': tokenizer.fingerprint(),
        'optimizer.name': o.name,
        'optimizer.momentum': o.momentum > 0,
        'optimizer.weight_decay': o.weight_decay > 0,
        'optimizer.max_grad_norm': o.max_grad_norm > 0,
        'optimizer.grad_accum_steps': o.grad_accum_steps,
        'optimizer.averaging': o.averaging_start_step >= 0,
    }


# ------------------------------------------------------------------ LM ------


class LMTask(Task):
  """LSTM language model with truncated BPTT (``LanguageModel``)."""

  name = 'lm'

  def load_datasets(self, workdir: str) -> input_pipeline.LMDatasets:
    return input_pipeline.get_lm_datasets(self.config.data, workdir)

  def build_model(self, vocab_size: int) -> LanguageModel:
    m = self.config.model
    return LanguageModel(
        vocab_size=vocab_size,
        embedding_size=m.embedding_size,
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        proj_size=m.proj_size or None,
        last_layer_size=m.last_layer_size or None,
        tie_weights=m.tie_weights,
        embedding_dropout_rate=m.embedding_dropout_rate,
        input_dropout_rate=m.input_dropout_rate,
        dropout_rate=m.dropout_rate,
        output_dropout_rate=m.output_dropout_rate,
        weight_dropout_rate=m.weight_dropout_rate,
        variational_dropout=m.variational_dropout,
        forget_bias=m.forget_bias,
        init_scale=m.init_scale or None,
        dtype=DTYPES[m.dtype],
        unroll=m.unroll,
        use_custom_vjp=m.use_custom_vjp,
    )

  def init_params(self, model, rng):
    return model.init(rng, jnp.zeros((1, 1), jnp.int32))['params']

  def initial_carry(self, model, batch_size):
    return model.initialize_carry(batch_size)

  @staticmethod
  def start_carry(carry, reset):
    """The carry a batch starts from: zero where ``reset``, gradient stopped."""
    return jax.lax.stop_gradient(jax.tree.map(
        lambda c: jnp.where(reset, jnp.zeros_like(c), c), carry))

  def train_loss(self, model, params, carry, batch, reset, dropout_rng):
    carry = self.start_carry(carry, reset)
    # The fused output layer and cross-entropy (lstm_flax.losses).
    loss_sum, new_carry = model.apply(
        {'params': params}, batch['inputs'], carry, mask=batch['mask'],
        targets=batch['targets'], deterministic=False,
        rngs={'dropout': dropout_rng})
    weight = jnp.sum(batch['mask'])
    return loss_sum / jnp.maximum(weight, 1.0), (loss_sum, weight, new_carry)

  def eval_loss(self, model, params, carry, batch):
    loss_sum, carry = model.apply({'params': params}, batch['inputs'], carry,
                                  mask=batch['mask'], targets=batch['targets'],
                                  deterministic=True)
    return carry, loss_sum, jnp.sum(batch['mask'])

  def check_config(self, partitioner):
    config = self.config
    partitioner.check_batch_size(config.data.batch_size, 'data.batch_size')
    partitioner.check_batch_size(config.data.eval_batch_size,
                                 'data.eval_batch_size')
    if config.data.batching == 'sentences' and config.data.packing:
      raise errors.ConfigError(
          'data.packing=True puts several sentences in one row, but the LSTM '
          'carry is not reset between them; use data.packing=False.')

  def signature(self, tokenizer):
    m = self.config.model
    out = self.common_signature(tokenizer)
    out.update({
        'model.embedding_size': m.embedding_size,
        'model.hidden_size': m.hidden_size,
        'model.num_layers': m.num_layers,
        'model.proj_size': m.proj_size,
        'model.tie_weights': m.tie_weights,
        'data.batch_size': self.config.data.batch_size,
    })
    if m.last_layer_size:  # Absent (0) in checkpoints of older versions.
      out['model.last_layer_size'] = m.last_layer_size
    return out

  def epoch_length(self, datasets):
    cfg = datasets.config
    if cfg['batching'] == 'stream' and cfg['random_window']:
      batcher = datasets.batcher('train')
      return datasets.steps_per_epoch(), lambda e: len(batcher.windows(e))
    return datasets.steps_per_epoch(), None

  def resets_carry(self, datasets, is_epoch_start):
    return is_epoch_start or datasets.config['batching'] != 'stream'

  def batch_tokens(self, local):
    return float(local['mask'].sum())

  def evaluate(self, steps, state, datasets, split):
    """Loss / perplexity of ``split`` (every token once, the carry flowing
    from batch to batch as in training); bits per char for char models."""
    params = eval_params(steps, state)
    stream = datasets.config['batching'] == 'stream'
    step_fn = steps.eval if stream else steps.eval_reset
    carry = steps.eval_carry()
    sums = []
    for local in datasets.eval_batches(split):
      carry, m = step_fn(params, carry, steps.partitioner.global_batch(local))
      sums.append(m)
    loss_sum, weight = _sum_metrics(sums)
    return summarize(split, loss_sum, weight, datasets.tokenizer.kind)


# --------------------------------------------------------- translation ------


class TranslationTask(Task):
  """Attention encoder-decoder (``Seq2Seq``) trained with teacher forcing."""

  name = 'translation'
  BATCH_KEYS = ('source', 'target_input', 'target_output', 'source_mask',
                'target_mask')

  def load_datasets(self, workdir: str) -> input_pipeline.TranslationDatasets:
    return input_pipeline.get_translation_datasets(self.config.data, workdir)

  def build_model(self, vocab_size: int) -> Seq2Seq:
    m = self.config.model
    return Seq2Seq(
        source_vocab_size=vocab_size,
        target_vocab_size=vocab_size,
        embedding_size=m.embedding_size,
        hidden_size=m.hidden_size,
        encoder_hidden_size=m.encoder_hidden_size or None,
        encoder_layers=m.encoder_layers,
        decoder_layers=m.decoder_layers,
        bidirectional_encoder=m.bidirectional_encoder,
        attention=m.attention,
        attention_size=m.attention_size or None,
        input_feeding=m.input_feeding,
        share_embeddings=m.share_embeddings,
        tie_output=m.tie_output,
        dropout_rate=m.dropout_rate,
        dtype=DTYPES[m.dtype],
        unroll=m.unroll or None,
    )

  def init_params(self, model, rng):
    tokens = jnp.zeros((1, 1), jnp.int32)
    return model.init(rng, tokens, tokens, jnp.ones((1, 1), jnp.float32),
                      deterministic=True)['params']

  def initial_carry(self, model, batch_size):
    return None

  def _logits(self, model, params, batch, deterministic, rngs=None):
    return model.apply({'params': params}, batch['source'],
                       batch['target_input'], batch['source_mask'],
                       deterministic=deterministic, rngs=rngs)

  def train_loss(self, model, params, carry, batch, reset, dropout_rng):
    """Label-smoothed cross-entropy over ``target_mask``; the returned sums
    are the plain cross-entropy (for loss / perplexity metrics)."""
    logits = self._logits(model, params, batch, False,
                          {'dropout': dropout_rng})
    log_probs = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(
        log_probs, batch['target_output'][..., None], axis=-1)[..., 0]
    mask = batch['target_mask']
    smoothing = float(self.config.label_smoothing)
    objective = nll
    if smoothing > 0:
      objective = (1.0 - smoothing) * nll - smoothing * jnp.mean(
          log_probs, axis=-1)
    weight = jnp.sum(mask)
    loss = jnp.sum(objective * mask) / jnp.maximum(weight, 1.0)
    return loss, (jnp.sum(nll * mask), weight, carry)

  def eval_loss(self, model, params, carry, batch):
    logits = self._logits(model, params, batch, True)
    loss_sum, weight = loss_sums(logits, batch['target_output'],
                                 batch['target_mask'])
    return carry, loss_sum, weight

  def check_config(self, partitioner):
    partitioner.check_batch_size(self.config.data.batch_size_multiple,
                                 'data.batch_size_multiple')

  def signature(self, tokenizer):
    m = self.config.model
    out = self.common_signature(tokenizer)
    out.update({f'model.{k}': m[k] for k in (
        'embedding_size', 'hidden_size', 'encoder_hidden_size',
        'encoder_layers', 'decoder_layers', 'bidirectional_encoder',
        'attention', 'attention_size', 'input_feeding', 'share_embeddings',
        'tie_output')})
    out.update({f'data.{k}': self.config.data[k] for k in (
        'tokens_per_batch', 'batch_size_multiple', 'max_length')})
    return out

  def epoch_length(self, datasets):
    batcher = datasets.batcher('train')
    return len(batcher.plan(0)), lambda e: len(batcher.plan(e))

  def device_batch(self, local):
    return {k: local[k] for k in self.BATCH_KEYS}

  def batch_tokens(self, local):
    return float(local['target_mask'].sum())

  def evaluate(self, steps, state, datasets, split):
    """Loss / perplexity of the evaluation pairs, and corpus BLEU / chrF of
    their translations (``config.decode``) against the raw references."""
    params = eval_params(steps, state)
    d = self.config.decode
    limit = int(d.max_bleu_examples) or len(datasets.eval_references)
    limit = min(limit, len(datasets.eval_references))
    hypotheses: dict[int, str] = {}
    sums = []
    for local in datasets.eval_batches():
      batch = steps.partitioner.global_batch(self.device_batch(local))
      _, m = steps.eval(params, None, batch)
      sums.append(m)
      if not d.eval_bleu:
        continue
      index = _gather_rows(local['example_index'])
      if not np.any((index >= 0) & (index < limit)):
        continue
      tokens = translate_batch(steps.model, params, batch['source'],
                               batch['source_mask'], d, datasets.tokenizer)
      tokens = _gather_rows(tokens)
      for i, row in zip(index.tolist(), tokens):
        if 0 <= i < limit:
          hypotheses[i] = detokenize(datasets.tokenizer, row)
    loss_sum, weight = _sum_metrics(sums)
    out = summarize(split, loss_sum, weight, datasets.tokenizer.kind)
    if d.eval_bleu:
      out.update(bleu_and_chrf(
          split, [hypotheses.get(i, '') for i in range(limit)],
          datasets.eval_references[:limit]))
    return out


def _gather_rows(x: Any) -> np.ndarray:
  """A global array (or this host's rows) -> all rows as numpy."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  if isinstance(x, np.ndarray) and jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def output_length(source_length: int, decode: Any) -> int:
  """The static output length of a batch whose sources have ``source_length``
  (padded) positions."""
  return max(1, min(int(decode.max_length), int(
      decode.length_ratio * source_length + decode.length_offset)))


def translate_batch(model: Seq2Seq, params: PyTree, source: jax.Array,
                    source_mask: jax.Array, decode: Any, tokenizer: Any,
                    rng: jax.Array | None = None) -> jax.Array:
  """Token ids ``[B, max_length]`` of the translations of one batch."""
  return decoding.translate(
      model, params, source, source_mask, method=decode.method,
      beam_size=int(decode.beam_size), alpha=float(decode.alpha),
      max_length=output_length(source.shape[1], decode),
      length_ratio=float(decode.length_ratio),
      length_offset=int(decode.length_offset), bos_id=tokenizer.bos_id,
      eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, rng=rng)


def detokenize(tokenizer: Any, ids: Iterable[int]) -> str:
  """The text of output ids up to the first EOS."""
  ids = [int(i) for i in ids]
  if tokenizer.eos_id in ids:
    ids = ids[:ids.index(tokenizer.eos_id)]
  return tokenizer.decode(ids).strip('\n')


def bleu_and_chrf(prefix: str, hypotheses: list[str],
                  references: list[str]) -> dict[str, float]:
  """sacrebleu corpus BLEU (13a tokenisation) and chrF."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  return {f'{prefix}_bleu': float(sacrebleu.corpus_bleu(
              hypotheses, [references]).score),
          f'{prefix}_chrf': float(sacrebleu.corpus_chrf(
              hypotheses, [references]).score)}


TASKS = {'lm': LMTask, 'translation': TranslationTask}


def get_task(config: ml_collections.ConfigDict) -> Task:
  """The task of a resolved config (``config.task``)."""
  return TASKS[config.get('task', 'lm')](config)
