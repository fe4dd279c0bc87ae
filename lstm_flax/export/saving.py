"""Writing an export directory (``lstm_flax.export.save``), atomically.

A temporary directory beside the target is filled and renamed at the end; an
existing non-empty directory is never overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from flax.core import meta
import jax
import numpy as np

from lstm_flax import param_paths, tokenizer as tokenizer_lib
from lstm_flax.export import arguments, card, serving as serving_lib
from lstm_flax.export.files import (
    CARD_FILE, CONFIG_FILE, FORMAT, FORMAT_VERSION, MODEL_FILE, PARAMS_FILE, SERVING_FILE,
    TOKENIZER_DIR, TORCH_FILE)


def check_target(directory: str | os.PathLike[str], name: str = '') -> Path:
  """``directory`` as a path, refused when it holds anything (export never
  overwrites); ``name`` (e.g. ``'--out=DIR'``) names it in the message.

  Raises:
    FileExistsError: ``directory`` exists and is not an empty directory.
  """
  path = Path(directory)
  if path.exists() and (not path.is_dir() or any(path.iterdir())):
    raise FileExistsError(
        f'{name or path} already exists and is not an empty directory; export never '
        'overwrites: choose a new directory or remove it first.')
  return path


def save(directory: str | os.PathLike[str], module: Any, variables: Mapping[str, Any], *,
         tokenizer_dir: str | os.PathLike[str] | None = None,
         config: Optional[Mapping[str, Any]] = None,
         inference_settings: Optional[Mapping[str, Any]] = None,
         metadata: Optional[Mapping[str, Any]] = None,
         card_title: str = '', card_sections: Sequence[tuple[str, str]] = (),
         torch: bool = False, serving: Optional[serving_lib.ServingOptions] = None) -> Path:
  """Writes ``module`` and ``variables`` as an export directory (see the
  module docstring); returns its path.

  Args:
    directory: where to write; must not exist or be empty.
    module: an exportable model (its class has ``export_kind`` and
      ``dummy_inputs()``: ``LanguageModel``, ``Seq2Seq``, ``SequenceClassifier``...).
    variables: ``{'params': ...}`` (or the params themselves), any arrays.
    tokenizer_dir: a directory of tokenizer files (``tokenizer.json``, a
      SentencePiece model, ``labels.json``) to copy into ``tokenizer/``.
    config: the training config (written as ``config.json``).
    inference_settings: JSON settings of inference, kept in ``model.json``:
      ``decode`` (``lstm_flax.inference.DecodeOptions`` fields) for
      translation; ``label_names`` and ``encoding``
      (``lstm_flax.inference.TextEncoding`` fields) for a classifier.
    metadata: JSON facts to keep in ``model.json`` (``source``: where the
      model came from, ``metrics``...).
    card_title, card_sections: the model card's title and extra sections.
    torch: also write ``torch_state_dict.safetensors`` (language models;
      ``lstm_flax.torch_lm``).
    serving: also write ``generate.jax_exported``, a ``jax.export``
      generation function with these settings (language models;
      :class:`ServingOptions`, :func:`load_generation`).

  Raises:
    FileExistsError: ``directory`` exists and is not an empty directory.
    ValueError: a module that cannot be exported (or not to torch), or
      parameters that do not fit it, named.
  """
  from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top
  directory = check_target(directory)
  kind = arguments.kind_of(module)
  params = meta.unbox(variables.get('params', variables))
  flat = {k: np.asarray(jax.device_get(v)) for k, v in param_paths.flatten(params).items()}
  expected = arguments.param_shapes(module)
  arguments.check_params(flat, expected, f'the parameters given for {type(module).__name__}')
  torch_dict = None
  if torch:
    if kind != 'language_model':
      raise ValueError(f'Only language models export to PyTorch; this is a {kind}.')
    from lstm_flax import torch_lm  # pylint: disable=g-import-not-at-top
    torch_dict = torch_lm.to_torch_state_dict(module, params)
  serialized = None
  if serving is not None:
    if kind != 'language_model':
      raise ValueError(f'Only language models export a generation function; this is a {kind}.')
    serialized = serving_lib.serialize_generation(module, param_paths.unflatten(flat), serving)
  if tokenizer_dir is not None:
    tokenizer_lib.load(tokenizer_dir)  # Readable, or fail before writing.
  module_name, class_name = arguments.class_path(module)
  info = {
      'format': FORMAT, 'format_version': FORMAT_VERSION, 'kind': kind,
      'module': module_name, 'class': class_name, 'arguments': arguments.module_arguments(module),
      'params': {k: {'dtype': v.dtype.name, 'shape': list(v.shape)} for k, v in flat.items()},
      'num_params': int(sum(v.size for v in flat.values())),
      'inference': dict(inference_settings or {}),
      'tokenizer': TOKENIZER_DIR if tokenizer_dir is not None else None,
      'torch_file': TORCH_FILE if torch_dict is not None else None,
      'serving': None if serialized is None else {
          'file': SERVING_FILE, **dataclasses.asdict(serving),
          'inputs': 'prompt [batch_size, T] int32, key_data of jax.random.PRNGKey(seed)',
          'outputs': 'tokens [batch_size, num_tokens] int32'},
  }
  clashes = sorted(set(metadata or {}) & set(info))
  if clashes:
    raise ValueError(f'metadata keys {clashes} are model.json\'s own; use other names.')
  info.update(metadata or {})
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f'.{directory.name}.tmp-', dir=directory.parent))
  try:
    st_numpy.save_file({k: np.ascontiguousarray(v) for k, v in flat.items()},
                       str(tmp / PARAMS_FILE), metadata={'format': FORMAT})
    if serialized is not None:
      (tmp / SERVING_FILE).write_bytes(serialized)
    if torch_dict is not None:
      st_numpy.save_file({k: np.ascontiguousarray(v) for k, v in torch_dict.items()},
                         str(tmp / TORCH_FILE), metadata={'format': 'pt'})
    if tokenizer_dir is not None:
      shutil.copytree(tokenizer_dir, tmp / TOKENIZER_DIR)
    if config is not None:
      (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1, ensure_ascii=False), 'utf-8')
    (tmp / MODEL_FILE).write_text(json.dumps(info, indent=1, ensure_ascii=False), 'utf-8')
    (tmp / CARD_FILE).write_text(
        card.model_card(info, title=card_title, sections=card_sections), 'utf-8')
    for path in [tmp, *tmp.rglob('*')]:  # mkdtemp and safetensors make them private.
      os.chmod(path, 0o755 if path.is_dir() else 0o644)
    check_target(directory)
    if directory.exists():
      directory.rmdir()  # Empty (checked): the rename takes its place.
    os.rename(tmp, directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return directory
