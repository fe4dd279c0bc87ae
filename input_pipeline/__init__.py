"""Input pipelines for LSTM language, translation and classification models
(text, and feature frames: speech, image rows).

Text is read from files or TFDS (``tf.data``, TensorFlow imported only
then), tokenised once, in chunks and in parallel across processes, into
memory-mapped ``.npy`` cache shards (:mod:`input_pipeline.cache`); batches
are planned with numpy from lengths alone and prepared ahead on a Python
thread (:mod:`input_pipeline.prefetch`). Knows no model: of ``lstm_flax`` it
imports only the saved input formats, :mod:`lstm_flax.tokenizer` (which it
builds, :mod:`input_pipeline.tokenizers`) and :mod:`lstm_flax.features`
(the audio front end, :mod:`input_pipeline.audio`). Entry points:

* Language models: :func:`get_lm_datasets` -> :class:`LMDatasets`
  (``train_batches``, ``eval_batches``), batches ``{'inputs', 'targets',
  'mask'}`` (plus ``'segment_ids'``, ``'positions'`` when packed); text from
  the embedded corpus, PTB / WikiText split files or TFDS.
* Translation: :func:`get_translation_datasets` ->
  :class:`TranslationDatasets`, batches ``{'source', 'target_input',
  'target_output', 'source_mask', 'target_mask', 'example_index'}``; pairs
  from Multi30k-layout files or TFDS translate datasets.
* Sentence classification: :func:`get_classification_datasets` ->
  :class:`ClassificationDatasets` (``LABEL TEXT`` files or a TFDS
  ``ClassLabel`` dataset), batches ``{'tokens', 'lengths', 'labels',
  'example_index'}``; :func:`load_label_names` and :func:`load_tokenizer`
  read what a run saved in its workdir.

Modules: readers by format (:mod:`~input_pipeline.text_lines`,
:mod:`~input_pipeline.text_corpora`, :mod:`~input_pipeline.parallel_text`,
:mod:`~input_pipeline.labelled_text`, :mod:`~input_pipeline.tfds_data`), the
tokenizer builder (:mod:`~input_pipeline.tokenizers`), the cache and its
sharded encoding (:mod:`~input_pipeline.cache`,
:mod:`~input_pipeline.sharded_encoding`), batching
(:mod:`~input_pipeline.lm`, :mod:`~input_pipeline.translation`,
:mod:`~input_pipeline.classification_batching`) and the entry points
(:mod:`~input_pipeline.lm_data`, :mod:`~input_pipeline.translation_data`,
:mod:`~input_pipeline.classification`). See :func:`default_lm_config` /
:func:`default_translation_config` / :func:`default_classification_config`
for the data config keys.
"""

from input_pipeline import errors
from input_pipeline.classification import ClassificationDatasets
from input_pipeline.classification import default_classification_config
from input_pipeline.classification import get_classification_datasets
from input_pipeline.classification import load_label_names
from input_pipeline.lm_data import default_lm_config
from input_pipeline.lm_data import get_lm_datasets
from input_pipeline.lm_data import LMDatasets
from input_pipeline.tokenizers import load_tokenizer
from input_pipeline.translation_data import default_translation_config
from input_pipeline.translation_data import get_translation_datasets
from input_pipeline.translation_data import TranslationDatasets

__all__ = [
    'errors', 'default_lm_config', 'default_translation_config',
    'get_lm_datasets', 'get_translation_datasets', 'LMDatasets',
    'TranslationDatasets', 'ClassificationDatasets',
    'default_classification_config', 'get_classification_datasets',
    'load_label_names', 'load_tokenizer',
]
