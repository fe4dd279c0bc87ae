"""Reading an export directory back: ``load`` and the :class:`ExportedModel` it returns.

Needs jax, flax, numpy and safetensors only (and sentencepiece for a
SentencePiece tokenizer): no trainer, TensorFlow or Orbax.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np

from lstm_flax import features, inference, param_paths, tokenizer as tokenizer_lib
from lstm_flax.export import arguments
from lstm_flax.feature_models import FeatureSequenceClassifier
from lstm_flax.export.files import (
    CONFIG_FILE, FORMAT, FORMAT_VERSION, MODEL_FILE, PARAMS_FILE, TOKENIZER_DIR)

FEATURE_KIND = FeatureSequenceClassifier.export_kind


@dataclasses.dataclass
class ExportedModel:
  """A loaded export: the module, its variables, tokenizer and metadata.

  Attributes:
    kind: the class's ``export_kind`` (``'language_model'``,
      ``'translation'``, ``'classifier'``, ...).
    module: the Flax module (``LanguageModel``, ``Seq2Seq``,
      ``SequenceClassifier``, or any exportable class: ``model.json``
      names it by import path).
    variables: ``{'params': ...}`` for ``module.apply``.
    tokenizer: the ``lstm_flax.tokenizer.Tokenizer`` (None if none was saved).
    info: ``model.json`` (arguments, parameter dtypes, inference settings,
      source and metrics).
    config: ``config.json`` (the training config), or None.
    directory: where it was loaded from.
  """

  kind: str
  module: Any
  variables: dict[str, Any]
  tokenizer: Optional[tokenizer_lib.Tokenizer]
  info: dict[str, Any]
  config: Optional[dict[str, Any]]
  directory: Path

  def __post_init__(self):
    self._probabilities = None

  @property
  def params(self) -> Any:
    return self.variables['params']

  def _need(self, kind: str, what: str) -> tokenizer_lib.Tokenizer:
    if self.kind != kind:
      raise ValueError(f'{what} needs a {kind.replace("_", " ")} export; {self.directory} is a '
                       f'{self.kind.replace("_", " ")}.')
    if self.tokenizer is None:
      raise ValueError(f'{what} needs the tokenizer, and {self.directory} has no '
                       f'{TOKENIZER_DIR}/; use .module and .variables with token ids.')
    return self.tokenizer

  def generate(self, prompt: str = '', *, num_tokens: int = 100, temperature: float = 1.0,
               top_k: Optional[int] = None, top_p: Optional[float] = None, seed: int = 0,
               num_samples: int = 1) -> list[str]:
    """``num_samples`` continuations of ``prompt`` (language models;
    :func:`lstm_flax.inference.generate`)."""
    tokenizer = self._need('language_model', 'generate()')
    return inference.generate(self.module, self.params, tokenizer, prompt,
                              num_tokens=num_tokens, temperature=temperature, top_k=top_k,
                              top_p=top_p, seed=seed, num_samples=num_samples)

  def decode_options(self, **overrides: Any) -> inference.DecodeOptions:
    """The saved decoding settings, with ``overrides`` that are not None."""
    return inference.DecodeOptions.from_mapping(self.info['inference'].get('decode', {}),
                                                **overrides)

  def translate(self, lines: Sequence[str], *, method: Optional[str] = None,
                beam_size: Optional[int] = None, alpha: Optional[float] = None,
                batch_size: int = 32, max_input_tokens: Optional[int] = None, seed: int = 0
                ) -> tuple[list[str], inference.InputReport]:
    """Translations of ``lines`` and the report of changed lines
    (translation models; :func:`lstm_flax.inference.translate`); decoding
    settings default to the run's."""
    tokenizer = self._need('translation', 'translate()')
    decode = self.decode_options(method=method, beam_size=beam_size, alpha=alpha)
    return inference.translate(self.module, self.params, tokenizer, lines, decode=decode,
                               batch_size=batch_size, max_input_tokens=max_input_tokens,
                               seed=seed)

  @property
  def label_names(self) -> list[str]:
    """Class id -> name (classifiers)."""
    names = self.info['inference'].get('label_names')
    if names is None:
      return [str(i) for i in range(int(self.module.num_classes))]
    return list(names)

  def classify(self, lines: Sequence[Any], *, batch_size: int = 64
               ) -> list[Optional[inference.Prediction]]:
    """The prediction of each line (None for blank lines) (classifiers;
    :func:`lstm_flax.inference.classify`), or of each input of a feature
    classifier (:meth:`frames`; :func:`lstm_flax.inference.classify_frames`)."""
    if self._probabilities is None and self.kind in ('classifier', FEATURE_KIND):
      self._probabilities = inference.class_probabilities(self.module)
    if self.kind == FEATURE_KIND:
      return inference.classify_frames(self.module, self.params, [self.frames(x) for x in lines],
                                       self.label_names, batch_size=batch_size,
                                       probabilities_fn=self._probabilities)
    tokenizer = self._need('classifier', 'classify()')
    encoding = self.info['inference'].get('encoding') or {'max_length': 1 << 30}
    return inference.classify(self.module, self.params, tokenizer, lines, self.label_names,
                              inference.TextEncoding.from_mapping(encoding),
                              batch_size=batch_size, probabilities_fn=self._probabilities)


  @property
  def feature_settings(self) -> Optional[features.FeatureSettings]:
    """The audio front end with the training statistics (feature
    classifiers of audio), else None."""
    saved = self.info['inference'].get('features')
    if saved is None:
      return None
    try:
      return features.FeatureSettings(**saved)
    except (TypeError, ValueError) as e:
      raise ValueError(f'{self.directory / MODEL_FILE}: inference "features": {e}') from None

  def frames(self, x: Any) -> np.ndarray:
    """float32 ``[T, F]`` normalised frames of one feature-classifier input:
    a ``.wav`` path or samples ``[n]`` (audio exports, through
    :attr:`feature_settings`), or unnormalised frames ``[T, F]`` (e.g. an
    image's rows; scaled by the saved ``normalisation``)."""
    settings = self.feature_settings
    if isinstance(x, (str, os.PathLike)):
      if settings is None:
        raise ValueError(f'{self.directory} is not an audio model; give frames [T, F], not {x}.')
      x = features.read_wav(x, settings.sample_rate)[0]
    x = np.asarray(x)
    if x.ndim == 1 and settings is not None:
      return settings.featurize(x)
    if x.ndim != 2:
      raise ValueError(f'An input of shape {x.shape}: give a .wav path or samples [n] (audio) '
                       'or frames [T, F].')
    norm = self.info['inference'].get('normalisation') or {'mean': 0.0, 'std': 1.0}
    if settings is not None:
      norm = {'mean': np.asarray(settings.mean), 'std': np.asarray(settings.std)}
    return ((x.astype(np.float32) - norm['mean']) / norm['std']).astype(np.float32)


def _read_json(path: Path) -> dict[str, Any]:
  try:
    return json.loads(path.read_text('utf-8'))
  except FileNotFoundError:
    raise FileNotFoundError(
        f'{path} is missing: {path.parent} is not a complete lstm_flax export (write one with '
        '`python export.py --workdir=W --out=DIR` or lstm_flax.export.save).') from None
  except ValueError as e:
    raise ValueError(f'{path} is not valid JSON: {e}') from None


def load(directory: str | os.PathLike[str]) -> ExportedModel:
  """The module, variables, tokenizer and metadata of an export directory.

  Raises:
    FileNotFoundError: a missing file, named.
    ValueError: another format or a newer version, an invalid module field,
      or parameters that do not fit the module, named with file and key.
    ImportError: a SentencePiece tokenizer without sentencepiece installed.
  """
  from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top
  directory = Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f'No export directory at {directory}.')
  model_path = directory / MODEL_FILE
  info = _read_json(model_path)
  if info.get('format') != FORMAT:
    raise ValueError(f'{model_path}: "format" is {info.get("format")!r}, not {FORMAT!r}; this '
                     'is not an lstm_flax export.')
  version = info.get('format_version')
  if not isinstance(version, int) or version > FORMAT_VERSION:
    raise ValueError(f'{model_path}: "format_version" is {version!r}; this lstm_flax reads '
                     f'versions up to {FORMAT_VERSION}. Upgrade lstm_flax.')
  try:
    module = arguments.build_module(info)
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f'{model_path}: cannot build the module from "kind", "module", "class" '
                     f'and "arguments": {e}') from None
  params_path = directory / PARAMS_FILE
  if not params_path.is_file():
    raise FileNotFoundError(f'{params_path} is missing: the export is incomplete.')
  flat = st_numpy.load_file(str(params_path))
  for key, value in list(flat.items()):
    recorded = info.get('params', {}).get(key, {}).get('dtype')
    if recorded is not None and value.dtype.name != recorded:
      flat[key] = np.asarray(value).astype(jnp.dtype(recorded))
  arguments.check_params(flat, arguments.param_shapes(module), f'The parameters in {params_path}')
  params = param_paths.unflatten({k: jnp.asarray(v) for k, v in flat.items()})
  tokenizer = None
  if (directory / TOKENIZER_DIR).is_dir():
    tokenizer = tokenizer_lib.load(directory / TOKENIZER_DIR)
  config_path = directory / CONFIG_FILE
  config = _read_json(config_path) if config_path.is_file() else None
  return ExportedModel(info['kind'], module, {'params': params}, tokenizer, info, config,
                       directory)
