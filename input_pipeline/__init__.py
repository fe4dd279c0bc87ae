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

See :func:`default_lm_config` / :func:`default_translation_config` for the
data config keys.
"""

from input_pipeline import errors
from input_pipeline.pipelines import default_lm_config
from input_pipeline.pipelines import default_translation_config
from input_pipeline.pipelines import get_lm_datasets
from input_pipeline.pipelines import get_translation_datasets
from input_pipeline.pipelines import LMDatasets
from input_pipeline.pipelines import TranslationDatasets

__all__ = [
    'errors', 'default_lm_config', 'default_translation_config',
    'get_lm_datasets', 'get_translation_datasets', 'LMDatasets',
    'TranslationDatasets',
]
