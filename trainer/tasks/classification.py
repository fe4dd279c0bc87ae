"""Sentence classification (sentiment): ``lstm_flax.models.SequenceClassifier``.

Embedding -> (bi)LSTM over the valid tokens -> max / mean / last-state
pooling -> dropout -> dense. The loss is the softmax cross-entropy per
sentence; metrics are loss and accuracy (sums of correct predictions over
the real rows), and the best checkpoint has the highest validation accuracy.

Transfer from a language model (ULMFiT-style): with ``init_from`` set to the
workdir of a ``task='lm'`` run, the classifier uses that run's tokenizer,
and its embedding and LSTM layers start from the language model's
parameters of the same paths (the backward direction and the classifier
head stay freshly initialised). A parameter whose shape differs is an error
that names it.

Inference (``classify.py``): :class:`Classifier` encodes raw lines as the
training data were (``lstm_flax.inference.TextEncoding``) and returns, per
line, the predicted label and the class probabilities (``None`` for blank
lines).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import input_pipeline
from input_pipeline import classification as classification_data
from lstm_flax import inference as inference_lib, param_paths
from lstm_flax.models import SequenceClassifier
from trainer import config_lib, errors, inference, tasks
from trainer import task_base as base

Prediction = inference_lib.Prediction  # The class of one line.


EMBEDDING = 'embed/embedding'  # [vocab, embedding] in both models.
VOCABULARY_CHOICES = ('language_model', 'data')


class ClassificationDatasets(base.Datasets):
  """``input_pipeline.classification.ClassificationDatasets`` for the
  trainer: every labelled split is loaded; no carry between batches."""

  def model_inputs(self) -> dict[str, int]:
    return {'vocab_size': int(self.source.vocab_size),
            'num_classes': int(self.source.num_classes)}

  def device_batch(self, local):
    return {k: local[k] for k in ('tokens', 'lengths', 'labels',
                                  'example_index')}

  def batch_tokens(self, local):
    return float(local['lengths'].sum())


class ClassificationTask(base.Task):
  """Labelled sentences -> classes (``task='classification'``)."""

  name = 'classification'
  INFERENCE_KEYS = ('data.eval_batch_size',)
  USAGE = ('a sentence classifier (use classify.py, or train.py with '
           '--config.mode=evaluate and a classification config)')
  COMMAND = 'classify.py'

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    # init_from_vocabulary='data': this run's token strings, by id (set by
    # load_datasets).
    self._run_vocabulary: list[str] | None = None

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Model: the fields of lstm_flax.models.SequenceClassifier (documented
    # there); vocabulary size and classes come from the data.
    config.model = config_lib.module_config(
        SequenceClassifier, exclude=('vocab_size', 'num_classes'),
        embedding_size=128, hidden_size=128)
    # Workdir of a trained language model (task='lm') to start the embedding
    # and LSTM from, with its tokenizer ('': train from scratch).
    config.init_from = ''
    # Its checkpoint: 'latest', 'best' or a step number.
    config.init_from_checkpoint = 'best'
    # The vocabulary with init_from: 'language_model' (the language model's
    # tokenizer as is) or 'data' (built from this run's training data, as
    # without init_from; each word the language model knows starts from its
    # embedding row, the others from the mean of its rows, as in ULMFiT).
    config.init_from_vocabulary = 'language_model'
    # Data: input_pipeline.default_classification_config() (every key
    # documented there).
    config.data = input_pipeline.default_classification_config()
    return config

  def validate(self) -> None:
    super().validate()
    c = self.config
    for key in ('batch_size', 'eval_batch_size', 'max_length'):
      config_lib.positive(f'data.{key}', c.data[key])
    config_lib.checkpoint_choice(c.init_from_checkpoint)
    if c.init_from_vocabulary not in VOCABULARY_CHOICES:
      raise errors.ConfigError(
          f'init_from_vocabulary={c.init_from_vocabulary!r} is not one of '
          f'{VOCABULARY_CHOICES}.')
    if c.init_from is None:
      raise errors.ConfigError(
          'init_from must name the workdir of a trained language model '
          "(task='lm'), e.g. --config.init_from=/tmp/ptb_small.")
    if c.init_from and not os.path.isdir(c.init_from):
      raise errors.ConfigError(
          f'init_from={c.init_from!r} is not a directory; give the workdir '
          "of a trained language model (task='lm').")

  def placeholder_model_inputs(self) -> dict[str, int]:
    return {'vocab_size': 8, 'num_classes': 2}

  def check_batch_sizes(self, check) -> None:
    check(self.config.data.batch_size, 'data.batch_size')
    check(self.config.data.eval_batch_size, 'data.eval_batch_size')

  # ---------------------------------------------------------------- data --

  @functools.cached_property
  def _pretrained(self) -> inference.Restored:
    """The language model of ``init_from`` (restored on first use)."""
    return inference.restore(
        self.config.init_from, self.config.init_from_checkpoint,
        lookup=tasks.task_class, task_name='lm')

  def _maps_vocabulary(self) -> bool:
    return bool(self.config.init_from) and (
        self.config.init_from_vocabulary == 'data')

  def load_datasets(self, workdir: str, eval_split: str | None = None
                    ) -> ClassificationDatasets:
    tokenizer = None
    if self.config.init_from and not self._maps_vocabulary():
      tokenizer = self._pretrained.tokenizer
    datasets = classification_data.get_classification_datasets(
        self.config.data, workdir, tokenizer=tokenizer)
    if self._maps_vocabulary():
      self._run_vocabulary = _vocabulary(datasets.tokenizer, 'this run')
    return ClassificationDatasets(datasets, self.config, eval_split)

  # --------------------------------------------------------------- model --

  def build_model(self, *, vocab_size: int,
                  num_classes: int) -> SequenceClassifier:
    return SequenceClassifier(vocab_size=vocab_size, num_classes=num_classes,
                              **self.config.model.to_dict())

  def init_variables(self, model, rng):
    return model.init(rng, jnp.zeros((1, 1), jnp.int32),
                      jnp.ones((1,), jnp.int32), deterministic=True)['params']

  def transfer_params(self, params):
    """The language model's parameters of the same paths (``init_from``)."""
    if not self.config.init_from:
      return None
    pretrained = self._pretrained
    source = dict(_flat(pretrained.params()))
    flat = _flat(params)
    if self._maps_vocabulary() and EMBEDDING in source:
      source[EMBEDDING] = self._embedding_by_word(source[EMBEDDING])
    copied = []
    for path, value in flat:
      if path not in source:
        continue
      if source[path].shape != value.shape:
        raise errors.CheckpointMismatchError(
            f'Parameter {path} of the language model in '
            f'{self.config.init_from} has shape {source[path].shape}, the '
            f'classifier needs {value.shape}; set config.model to the '
            "language model's sizes (its config.json).")
      copied.append(path)
    if not any(p.startswith('embed') for p in copied) or len(copied) < 2:
      raise errors.CheckpointMismatchError(
          f'The language model in {self.config.init_from} shares no embedding '
          f'and LSTM parameters with the classifier (its parameters: '
          f'{sorted(source)[:8]}...; the classifier\'s: '
          f'{[p for p, _ in flat][:8]}...).')
    logging.info('Initialised %d parameters from the language model in %s '
                 '(step %d): %s', len(copied), self.config.init_from,
                 pretrained.step, copied)
    return jax.tree_util.tree_map_with_path(
        lambda p, v: np.asarray(source.get(param_paths.path_name(p), v), v.dtype), params)

  def _embedding_by_word(self, embedding: np.ndarray) -> np.ndarray:
    """The language model's ``[V_lm, E]`` rows for this run's vocabulary:
    ``[V, E]``, a word's own row where the language model knows it, else the
    mean row."""
    lm_ids = _vocabulary(self._pretrained.tokenizer,
                         f'the language model in {self.config.init_from}')
    lm_ids = {token: i for i, token in enumerate(lm_ids)}
    mean = embedding.mean(axis=0)
    found = [lm_ids.get(token) for token in self._run_vocabulary]
    rows = np.stack([mean if i is None else embedding[i] for i in found])
    known = sum(i is not None for i in found)
    logging.info('init_from_vocabulary=data: %d of the %d words of this run '
                 'start from the language model\'s embedding, the others from '
                 'its mean row.', known, len(found))
    return rows.astype(embedding.dtype)

  # ---------------------------------------------------------------- loss --

  def _sums(self, logits: jax.Array, batch) -> dict[str, jax.Array]:
    weights = (batch['example_index'] >= 0).astype(jnp.float32)  # [B]
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['labels'])
    correct = (jnp.argmax(logits, axis=-1) == batch['labels'])
    return {'loss_sum': jnp.sum(losses * weights),
            'weight': jnp.sum(weights),
            'correct': jnp.sum(correct.astype(jnp.float32) * weights)}

  def loss_fn(self, model, params, carry, batch, reset, dropout_rng):
    del reset
    logits = model.apply({'params': params}, batch['tokens'], batch['lengths'],
                         deterministic=False, rngs={'dropout': dropout_rng})
    sums = self._sums(logits, batch)
    return sums['loss_sum'] / jnp.maximum(sums['weight'], 1.0), (sums, carry)

  def eval_fn(self, model, params, carry, batch):
    logits = model.apply({'params': params}, batch['tokens'], batch['lengths'],
                         deterministic=True)
    return carry, self._sums(logits, batch)

  # ------------------------------------------------------------- metrics --

  @property
  def best_metric(self) -> base.BestMetric:
    return base.BestMetric('valid_accuracy', 'max')

  def inference_settings(self, workdir: str) -> dict[str, Any]:
    """The label names and the text encoding of the training data
    (``lstm_flax.inference.TextEncoding``)."""
    return {'label_names': classification_data.load_label_names(workdir),
            'encoding': dataclasses.asdict(inference_lib.TextEncoding.from_mapping(
                self.config.data.to_dict()))}

  def summarize(self, prefix: str, sums: Mapping[str, float]
                ) -> dict[str, float]:
    weight = max(sums['weight'], 1.0)
    return {f'{prefix}_loss': sums['loss_sum'] / weight,
            f'{prefix}_accuracy': sums['correct'] / weight}

  def predictor(self, restored: inference.Restored) -> Classifier:
    return Classifier(restored.model, restored.params(), restored.tokenizer,
                      classification_data.load_label_names(restored.workdir),
                      self.config.data, restored.step)


@dataclasses.dataclass
class Classifier:
  """A restored classifier, its parameters, tokenizer and label names (what
  ``classify.py`` uses)."""

  model: Any  # lstm_flax.models.SequenceClassifier
  params: Any
  tokenizer: Any
  label_names: list[str]
  data_config: Any  # The run's config.data (encoding options).
  step: int

  def __post_init__(self):
    self._probabilities = inference_lib.class_probabilities(self.model)

  def classify(self, lines: Sequence[str], *, batch_size: int = 64
               ) -> list[Prediction | None]:
    """The prediction of each line (``None`` for blank lines), in order
    (:func:`lstm_flax.inference.classify`)."""
    with inference.settings_as_config_errors():
      return inference_lib.classify(
          self.model, self.params, self.tokenizer, lines, self.label_names,
          inference_lib.TextEncoding.from_mapping(self.data_config),
          batch_size=batch_size, probabilities_fn=self._probabilities)


def _vocabulary(tokenizer: Any, whose: str
                ) -> list[str]:
  """The token strings of a word or character tokenizer, by id."""
  vocabulary = getattr(tokenizer, 'vocab', None)
  if vocabulary is None:
    raise errors.ConfigError(
        f"init_from_vocabulary='data' maps words between vocabularies, but "
        f'the {tokenizer.kind} tokenizer of {whose} has no word list; use '
        "init_from_vocabulary='language_model' (the language model's "
        'tokenizer as is).')
  return list(vocabulary)


def _flat(tree: Any) -> list[tuple[str, np.ndarray]]:
  return [(path, np.asarray(v)) for path, v in param_paths.flatten(tree).items()]


TASK = ClassificationTask
