"""A trained model as a self-contained directory, and back in one call.

``save(directory, module, variables, ...)`` writes (atomically: a temporary
directory beside it, renamed at the end; an existing non-empty directory is
never overwritten)::

  directory/
    model.json              format, version, kind, module class and its
                            constructor arguments, parameter dtypes/shapes,
                            inference settings (decoding, labels, encoding)
    params.safetensors      the parameters, '/'-joined paths ('lstm/layer_0/bias')
    tokenizer/              the run's tokenizer files (lstm_flax.tokenizer)
    config.json             the training config (when given)
    MODEL_CARD.md           what the model is, its metrics and how to load it
    torch_state_dict.safetensors   (language models, torch=True) PyTorch
                            word_language_model RNNModel weights
    generate.jax_exported   (language models, serving=ServingOptions(...)) the
                            sampling loop as a jax.export function, parameters
                            inside (load_generation; needs only jax)

``load(directory)`` returns an :class:`ExportedModel`: the rebuilt module,
its ``{'params': ...}``, the tokenizer and the metadata, with
``generate`` / ``translate`` / ``classify`` (``lstm_flax.inference``). It
needs jax, flax, numpy and safetensors only (and sentencepiece for a
SentencePiece tokenizer): no trainer, TensorFlow or Orbax.

Kinds: a model class is exportable when it has ``export_kind`` (a class
attribute) and ``dummy_inputs()`` (``init``'s arguments for one token);
``model.json`` records the class by import path, so a new model class
exports and reloads with no edit here. Today: ``'language_model'``
(``lstm_flax.models.LanguageModel``), ``'translation'``
(``lstm_flax.seq2seq.Seq2Seq``), ``'classifier'``
(``lstm_flax.models.SequenceClassifier``), ``'feature_classifier'``
(``lstm_flax.feature_models.FeatureSequenceClassifier``: ``classify`` takes
``.wav`` paths, samples or frames; the audio front end and its statistics
are in ``model.json``'s inference settings).

Modules: ``files`` (the directory layout), ``arguments`` (class and
constructor arguments as JSON, parameter shapes), ``saving``, ``loading``
(``ExportedModel``), ``serving`` (the ``jax.export`` generation function)
and ``card`` (the model card); everything public is re-exported here.
"""

from lstm_flax.export.arguments import (
    build_module, check_params, class_path, kind_of, module_arguments, module_class,
    param_shapes)
from lstm_flax.export.card import loading_instructions, model_card
from lstm_flax.export.files import (
    CARD_FILE, CONFIG_FILE, FORMAT, FORMAT_VERSION, MODEL_FILE, PARAMS_FILE, SERVING_FILE,
    TOKENIZER_DIR, TORCH_FILE)
from lstm_flax.export.loading import ExportedModel, load
from lstm_flax.export.saving import check_target, save
from lstm_flax.export.serving import ServingOptions, load_generation, serialize_generation
from lstm_flax.param_paths import flatten, unflatten

__all__ = [
    'CARD_FILE', 'CONFIG_FILE', 'FORMAT', 'FORMAT_VERSION', 'MODEL_FILE', 'PARAMS_FILE',
    'SERVING_FILE', 'TOKENIZER_DIR', 'TORCH_FILE', 'ExportedModel', 'ServingOptions',
    'build_module', 'check_params', 'check_target', 'class_path', 'flatten', 'kind_of',
    'load', 'load_generation', 'loading_instructions', 'model_card', 'module_arguments',
    'module_class', 'param_shapes', 'save', 'serialize_generation', 'unflatten',
]
