"""Input pipelines for LSTM language and translation models.

Text (files, or TFDS read with ``tf.data``) is tokenised once, in chunks and
in parallel across processes, into memory-mapped ``.npy`` cache shards;
batches are planned with numpy and prepared ahead on a Python thread
(:mod:`input_pipeline.prefetch`). Knows nothing about models (it does not
import ``lstm_flax``). Entry points:

* :func:`get_lm_datasets` -> :class:`LMDatasets` (``train_batches``,
  ``eval_batches``), batches ``{'inputs', 'targets', 'mask'}`` (plus
  ``'segment_ids'``, ``'positions'`` when packed).
* :func:`get_translation_datasets` -> :class:`TranslationDatasets`, batches
  ``{'source', 'target_input', 'target_output', 'source_mask',
  'target_mask', 'example_index'}``.
* :func:`get_classification_datasets` -> :class:`ClassificationDatasets`
  (labelled sentences, files or TFDS), batches ``{'tokens', 'lengths',
  'labels', 'example_index'}``; :func:`load_label_names` and
  :func:`load_tokenizer` read what a run saved in its workdir.

See :func:`default_lm_config` / :func:`default_translation_config` /
:func:`default_classification_config` for the data config keys.
"""

from input_pipeline import errors
from input_pipeline.classification import ClassificationDatasets
from input_pipeline.classification import default_classification_config
from input_pipeline.classification import get_classification_datasets
from input_pipeline.classification import load_label_names
from input_pipeline.classification import load_tokenizer
from input_pipeline.pipelines import default_lm_config
from input_pipeline.pipelines import default_translation_config
from input_pipeline.pipelines import get_lm_datasets
from input_pipeline.pipelines import get_translation_datasets
from input_pipeline.pipelines import LMDatasets
from input_pipeline.pipelines import TranslationDatasets

__all__ = [
    'errors', 'default_lm_config', 'default_translation_config',
    'get_lm_datasets', 'get_translation_datasets', 'LMDatasets',
    'TranslationDatasets', 'ClassificationDatasets',
    'default_classification_config', 'get_classification_datasets',
    'load_label_names', 'load_tokenizer',
]
