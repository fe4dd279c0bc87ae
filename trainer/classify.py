"""Sentence classification with a trained classification run's checkpoint.

``load(workdir, checkpoint)`` restores the latest (or best, or a given
step's) checkpoint of a sentence-classification run, its tokenizer and its
label names (both saved in the workdir); :meth:`Classifier.classify` encodes
raw lines as the training data were (``lstm_flax.inference.TextEncoding``:
lower-casing, truncation to ``max_length``, length buckets)
and returns, per line, the predicted label and the class probabilities.
Blank lines are not classified (``None``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from input_pipeline import classification as classification_data
from lstm_flax import inference as inference_lib
from trainer import errors, inference
from trainer.tasks.classification import ClassificationTask


Prediction = inference_lib.Prediction  # The class of one line.


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
    self._probabilities = inference_lib.class_probabilities(self.model)

  def classify(self, lines: Sequence[str], *, batch_size: int = 64
               ) -> list[Prediction | None]:
    """The prediction of each line (``None`` for blank lines), in order
    (:func:`lstm_flax.inference.classify`)."""
    try:
      return inference_lib.classify(
          self.model, self.params, self.tokenizer, lines, self.label_names,
          inference_lib.TextEncoding.from_mapping(self.data_config),
          batch_size=batch_size, probabilities_fn=self._probabilities)
    except inference_lib.SettingError as e:
      raise errors.ConfigError(str(e)) from None


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
