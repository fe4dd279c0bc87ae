"""Sentence classification with a trained classification run's checkpoint.

``load(workdir, checkpoint)`` restores the latest (or best, or a given
step's) checkpoint of a sentence-classification run, its tokenizer and its
label names (both saved in the workdir); :meth:`Classifier.classify` encodes
raw lines as the training data were (``input_pipeline.classification
.encode_texts``: lower-casing, truncation to ``max_length``, length buckets)
and returns, per line, the predicted label and the class probabilities.
Blank lines are not classified (``None``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from input_pipeline import classification as classification_data
from trainer import errors, inference
from trainer.tasks.classification import ClassificationTask


@dataclasses.dataclass
class Prediction:
  """The class of one line."""

  label: str  # The most probable class's name.
  probabilities: dict[str, float]  # Class name -> probability.


@dataclasses.dataclass
class Classifier:
  """A restored classifier, its parameters, tokenizer and label names."""

  model: Any  # lstm_flax.models.SequenceClassifier
  params: Any
  tokenizer: Any
  label_names: list[str]
  data_config: Any  # The run's config.data (encoding options).
  step: int

  def __post_init__(self):
    model = self.model
    self._probabilities = jax.jit(lambda params, tokens, lengths: jax.nn.softmax(
        model.apply({'params': params}, tokens, lengths, deterministic=True)))

  def classify(self, lines: Sequence[str], *, batch_size: int = 64
               ) -> list[Prediction | None]:
    """The prediction of each line (``None`` for blank lines), in order."""
    if batch_size < 1:
      raise errors.ConfigError(f'batch_size must be >= 1; got {batch_size}.')
    d = self.data_config
    todo = [i for i, line in enumerate(lines) if line.strip()]
    out: list[Prediction | None] = [None] * len(lines)
    for begin in range(0, len(todo), batch_size):
      chunk = todo[begin:begin + batch_size]
      batch = classification_data.encode_texts(
          self.tokenizer, [lines[i] for i in chunk],
          max_length=int(d.max_length), boundaries=tuple(d.bucket_boundaries),
          lowercase=bool(d.lowercase), add_eos=bool(d.add_eos))
      probs = np.asarray(self._probabilities(
          self.params, batch['tokens'], batch['lengths']))  # [rows, classes]
      for row, i in enumerate(chunk):
        p = probs[row]
        out[i] = Prediction(
            self.label_names[int(np.argmax(p))],
            {name: float(v) for name, v in zip(self.label_names, p)})
    return out


def load(workdir: str, checkpoint: str | int = 'latest') -> Classifier:
  """The classifier of ``workdir``'s checkpoint ('latest', 'best' or a step).

  Raises:
    CheckpointNotFoundError: no (such) checkpoint, or its tokenizer is
      missing.
    CheckpointMismatchError: the checkpoint is not a classifier.
  """
  restored = inference.restore(workdir, checkpoint,
                               task_name=ClassificationTask.name)
  tokenizer = inference.checkpoint_tokenizer(workdir, restored.meta,
                                             restored.step)
  return Classifier(restored.model, restored.params(), tokenizer,
                    classification_data.load_label_names(workdir),
                    restored.task.config.data, restored.step)
