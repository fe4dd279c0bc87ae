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

Kinds: ``'language_model'`` (``lstm_flax.models.LanguageModel``),
``'translation'`` (``lstm_flax.seq2seq.Seq2Seq``), ``'classifier'``
(``lstm_flax.models.SequenceClassifier``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from flax import traverse_util
from flax.core import meta
import jax
import jax.numpy as jnp
import numpy as np

from lstm_flax import inference, tokenizer as tokenizer_lib

FORMAT = 'lstm_flax.export'
FORMAT_VERSION = 1
MODEL_FILE = 'model.json'
PARAMS_FILE = 'params.safetensors'
CONFIG_FILE = 'config.json'
CARD_FILE = 'MODEL_CARD.md'
TOKENIZER_DIR = tokenizer_lib.TOKENIZER_DIR  # As in a run's workdir.
TORCH_FILE = 'torch_state_dict.safetensors'
SERVING_FILE = 'generate.jax_exported'

# kind -> (module, class) of the model.
KINDS = {
    'language_model': ('lstm_flax.models', 'LanguageModel'),
    'translation': ('lstm_flax.seq2seq', 'Seq2Seq'),
    'classifier': ('lstm_flax.models', 'SequenceClassifier'),
}
# Dataclasses that may appear in a module's fields (written by name).
_DATACLASSES = {'LSTMSpec': ('lstm_flax.spec', 'LSTMSpec'),
                'DropoutConfig': ('lstm_flax.spec', 'DropoutConfig')}
_SKIPPED_FIELDS = ('parent', 'name')


def _import(module_name: str, name: str) -> Any:
  return getattr(importlib.import_module(module_name), name)


def kind_of(module: Any) -> str:
  """The export kind of a module instance.

  Raises:
    ValueError: a module of no known kind.
  """
  for kind, (module_name, class_name) in KINDS.items():
    if type(module) is _import(module_name, class_name):
      return kind
  raise ValueError(f'Cannot export a {type(module).__name__}; exportable modules are '
                   f'{[c for _, c in KINDS.values()]}.')


# ------------------------------------------------------ module <-> JSON ----


def _to_json(value: Any, where: str) -> Any:
  """A module field value as JSON (dtypes by name, dataclasses by class)."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, (list, tuple)):
    return [_to_json(v, f'{where}[{i}]') for i, v in enumerate(value)]
  if isinstance(value, Mapping):
    return {str(k): _to_json(v, f'{where}.{k}') for k, v in value.items()}
  if dataclasses.is_dataclass(value) and type(value).__name__ in _DATACLASSES:
    fields = {f.name: _to_json(getattr(value, f.name), f'{where}.{f.name}')
              for f in dataclasses.fields(value) if f.init}
    return {'__dataclass__': type(value).__name__, 'fields': fields}
  try:
    return jnp.dtype(value).name  # jnp.float32, np.dtype('bfloat16'), ...
  except TypeError:
    pass
  raise ValueError(f'{where} = {value!r} cannot be written as JSON (supported: numbers, '
                   f'strings, lists, dtypes and {sorted(_DATACLASSES)}); export a module whose '
                   'fields are plain values.')


def _from_json(value: Any) -> Any:
  """The inverse of :func:`_to_json` (lists become tuples: hashable fields)."""
  if isinstance(value, list):
    return tuple(_from_json(v) for v in value)
  if isinstance(value, dict):
    if '__dataclass__' in value:
      name = value['__dataclass__']
      if name not in _DATACLASSES:
        raise ValueError(f'Unknown dataclass {name!r} in {MODEL_FILE}; known: '
                         f'{sorted(_DATACLASSES)}.')
      fields = {k: _from_json(v) for k, v in value['fields'].items()}
      return _import(*_DATACLASSES[name])(**fields)
    return {k: _from_json(v) for k, v in value.items()}
  return value


def module_arguments(module: Any) -> dict[str, Any]:
  """The constructor arguments of a Flax module as JSON (its dataclass fields
  but ``parent`` and ``name``).

  Raises:
    ValueError: a field that cannot be written as JSON, named.
  """
  owner = type(module).__name__
  return {f.name: _to_json(getattr(module, f.name), f'{owner}.{f.name}')
          for f in dataclasses.fields(module) if f.init and f.name not in _SKIPPED_FIELDS}


def build_module(kind: str, arguments: Mapping[str, Any]) -> Any:
  """The module of ``kind`` built from :func:`module_arguments`' JSON.

  Raises:
    ValueError: an unknown kind or an invalid field (the module's own check).
  """
  if kind not in KINDS:
    raise ValueError(f'kind={kind!r} is unknown; expected one of {list(KINDS)}.')
  cls = _import(*KINDS[kind])
  return cls(**{k: _from_json(v) for k, v in arguments.items()})


def _dummy_inputs(kind: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
  """(args, kwargs) of ``module.init`` for one token."""
  tokens = jnp.zeros((1, 1), jnp.int32)
  if kind == 'language_model':
    return (tokens,), {}
  if kind == 'translation':
    return (tokens, tokens, jnp.ones((1, 1), jnp.float32)), {'deterministic': True}
  return (tokens, jnp.ones((1,), jnp.int32)), {'deterministic': True}


def param_shapes(module: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """``{'/'-joined path: (shape, dtype name)}`` of the module's parameters
  (abstract: nothing is computed)."""
  args, kwargs = _dummy_inputs(kind_of(module))
  abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
  params = meta.unbox(abstract['params'])
  return {k: (tuple(v.shape), jnp.dtype(v.dtype).name) for k, v in flatten(params).items()}


# ---------------------------------------------------------- parameters ----


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
  """Nested ``{'lstm': {'layer_0': {'bias': x}}}`` -> ``{'lstm/layer_0/bias': x}``."""
  return traverse_util.flatten_dict(params, sep='/')


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of :func:`flatten`."""
  return traverse_util.unflatten_dict(flat, sep='/')


# ------------------------------------------------------------- serving ----


@dataclasses.dataclass(frozen=True)
class ServingOptions:
  """A ``jax.export`` serialised generation function (language models).

  The function ``(prompt [batch_size, T] int32, key_data) -> tokens
  [batch_size, num_tokens] int32`` holds the parameters as constants and runs
  without lstm_flax or the Python model code (any prompt length ``T >= 1``;
  ``key_data``: ``jax.random.key_data(jax.random.PRNGKey(seed))``). It is
  ``lstm_flax.sampling.sample`` with these settings.
  """

  num_tokens: int = 100
  batch_size: int = 1
  temperature: float = 1.0
  top_k: Optional[int] = None
  top_p: Optional[float] = None

  def __post_init__(self):
    for name in ('num_tokens', 'batch_size'):
      if int(getattr(self, name)) < 1:
        raise ValueError(f'ServingOptions.{name} must be >= 1; got {getattr(self, name)}.')


def serialize_generation(module: Any, params: Any, options: ServingOptions) -> bytes:
  """``jax.export`` of ``lstm_flax.sampling.sample`` for ``module`` (a
  ``LanguageModel``) with ``params`` embedded (see :class:`ServingOptions`)."""
  from jax import export as jax_export  # pylint: disable=g-import-not-at-top
  from lstm_flax import sampling  # pylint: disable=g-import-not-at-top
  sampling.filter_logits(jnp.zeros((1, 1)), options.temperature, options.top_k,
                         options.top_p)  # Validates the settings.
  params = jax.tree.map(jnp.asarray, params)

  def generate(prompt: jax.Array, key_data: jax.Array) -> jax.Array:
    return sampling.sample(module, params, prompt, jax.random.wrap_key_data(key_data),
                           options.num_tokens, temperature=float(options.temperature),
                           top_k=options.top_k, top_p=options.top_p)

  (time,) = jax_export.symbolic_shape('prompt_length')
  key_data = jax.eval_shape(lambda: jax.random.key_data(jax.random.PRNGKey(0)))
  exported = jax_export.export(jax.jit(generate))(
      jax.ShapeDtypeStruct((options.batch_size, time), jnp.int32), key_data)
  return bytes(exported.serialize())


def load_generation(directory: str | os.PathLike[str]) -> Any:
  """The serialised generation function of an export, deserialised:
  ``fn.call(prompt [batch_size, T] int32, key_data) -> tokens [batch_size,
  num_tokens]`` (``jax.export.Exported``; needs only jax).

  Raises:
    FileNotFoundError: the export has none (export with ``serving=``).
  """
  from jax import export as jax_export  # pylint: disable=g-import-not-at-top
  path = Path(directory) / SERVING_FILE
  if not path.is_file():
    raise FileNotFoundError(f'{path} is missing: export the language model with serving '
                            '(export.py --serving_tokens=N) to get one.')
  return jax_export.deserialize(bytearray(path.read_bytes()))


# ------------------------------------------------------------ model card ----


def loading_instructions(kind: str, directory: str = 'DIR',
                         torch_tie_weights: Optional[bool] = None,
                         serving: Optional[Mapping[str, Any]] = None) -> str:
  """Markdown: how to load an export of ``kind`` (and, unless
  ``torch_tie_weights`` is None, its PyTorch weights of an ``RNNModel``
  with that ``tie_weights``; unless ``serving`` is None, its serialised
  generation function with those settings)."""
  use = {
      'language_model': "model.generate('The', num_tokens=50, temperature=0.8, top_k=40, "
                        'seed=0)',
      'translation': "translations, report = model.translate(['Ein Hund läuft.'], "
                     'beam_size=4)',
      'classifier': "predictions = model.classify(['a gorgeous , witty movie .'])",
  }[kind]
  text = (
      f'`{directory}` is this directory. With jax, flax, numpy and safetensors '
      '(`pip install lstm-flax`; no trainer, TensorFlow or Orbax):\n\n'
      '```python\nfrom lstm_flax import export\n\n'
      f"model = export.load('{directory}')\n"
      'module, variables = model.module, model.variables  # a Flax module and its '
      "{'params': ...}\n"
      f'{use}\n```\n')
  if serving is not None:
    text += (
        f'\n`{SERVING_FILE}` samples {serving["num_tokens"]} tokens for '
        f'{serving["batch_size"]} prompt(s) (temperature {serving["temperature"]}, top_k '
        f'{serving["top_k"]}, top_p {serving["top_p"]}) with jax alone (no lstm_flax or '
        'model code; the parameters are inside):\n\n```python\nimport jax\n'
        'import numpy as np\nfrom jax import export as jax_export\n\n'
        f"with open('{directory}/{SERVING_FILE}', 'rb') as f:\n"
        '  generate = jax_export.deserialize(bytearray(f.read()))\n'
        f"prompt = np.array([[eos_id, *prompt_ids]] * {serving['batch_size']}, np.int32)"
        '  # ids of tokenizer/ (lstm_flax.tokenizer)\n'
        'tokens = generate.call(prompt, jax.random.key_data(jax.random.PRNGKey(seed)))\n'
        '```\n')
  if torch_tie_weights is not None:
    text += (
        '\nPyTorch (`torch_state_dict.safetensors`, the weights of pytorch/examples\' '
        'word_language_model `RNNModel`):\n\n```python\nimport torch\n'
        'from safetensors.torch import load_file\n\n'
        f"state_dict = load_file('{directory}/{TORCH_FILE}')\n"
        "vocab, emb = state_dict['encoder.weight'].shape\n"
        "hidden = state_dict['rnn.weight_hh_l0'].shape[1]\n"
        "layers = sum(k.startswith('rnn.weight_ih_l') for k in state_dict)\n"
        "model = RNNModel('LSTM', vocab, emb, hidden, layers, dropout=0.0, "
        f'tie_weights={torch_tie_weights})\n'
        'model.load_state_dict(state_dict)\n'
        '# or by hand: nn.Embedding(vocab, emb) -> nn.LSTM(emb, hidden, layers) -> '
        'nn.Linear(hidden, vocab)\n'
        '# ("encoder.", "rnn.", "decoder." prefixes); inputs are [time, batch] and\n'
        '# log_softmax(decoder(rnn(encoder(x))[0])) are the log-probabilities.\n```\n')
  return text


def model_card(model_info: Mapping[str, Any], *, title: str = '',
               sections: Sequence[tuple[str, str]] = ()) -> str:
  """A README-like model card: what the model is, extra ``sections``
  (heading, markdown) such as training data and metrics, and how to load it."""
  kind = model_info['kind']
  args = model_info['arguments']
  lines = [f'# {title or model_info["class"]}', '',
           f'An exported `lstm_flax` {kind.replace("_", " ")} '
           f'(`{model_info["module"]}.{model_info["class"]}`), '
           f'{model_info["num_params"]:,} parameters.', '', '## Model', '']
  lines += [f'- `{k}`: `{json.dumps(v)}`' for k, v in args.items()]
  dtypes = sorted({p['dtype'] for p in model_info['params'].values()})
  lines += ['', f'Parameter dtypes: {", ".join(dtypes)}.', '']
  for heading, body in sections:
    lines += [f'## {heading}', '', body.rstrip(), '']
  lines += ['## How to load it', '',
            loading_instructions(kind, torch_tie_weights=bool(args.get('tie_weights'))
                                 if model_info.get('torch_file') else None,
                                 serving=model_info.get('serving'))]
  return '\n'.join(lines).rstrip() + '\n'


# ---------------------------------------------------------------- save ----


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
         torch: bool = False, serving: Optional[ServingOptions] = None) -> Path:
  """Writes ``module`` and ``variables`` as an export directory (see the
  module docstring); returns its path.

  Args:
    directory: where to write; must not exist or be empty.
    module: a ``LanguageModel``, ``Seq2Seq`` or ``SequenceClassifier``.
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
  kind = kind_of(module)
  params = meta.unbox(variables.get('params', variables))
  flat = {k: np.asarray(jax.device_get(v)) for k, v in flatten(params).items()}
  expected = param_shapes(module)
  _check_params(flat, expected, f'the parameters given for {type(module).__name__}')
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
    serialized = serialize_generation(module, unflatten(flat), serving)
  if tokenizer_dir is not None:
    tokenizer_lib.load(tokenizer_dir)  # Readable, or fail before writing.
  module_name, class_name = KINDS[kind]
  info = {
      'format': FORMAT, 'format_version': FORMAT_VERSION, 'kind': kind,
      'module': module_name, 'class': class_name, 'arguments': module_arguments(module),
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
        model_card(info, title=card_title, sections=card_sections), 'utf-8')
    for path in [tmp, *tmp.rglob('*')]:  # mkdtemp and safetensors make them private.
      os.chmod(path, 0o755 if path.is_dir() else 0o644)
    check_target(directory)
    if directory.exists():
      directory.rmdir()  # Empty (checked): the rename takes its place.
    os.rename(tmp, directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return directory


def _check_params(flat: Mapping[str, Any], expected: Mapping[str, tuple[tuple[int, ...], str]],
                  what: str) -> None:
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  wrong = [f'{k}: {tuple(np.shape(flat[k]))}, expected {expected[k][0]}'
           for k in sorted(set(flat) & set(expected))
           if tuple(np.shape(flat[k])) != expected[k][0]]
  if missing or unexpected or wrong:
    raise ValueError(
        f'{what} do not fit the module: ' + '; '.join(
            part for part in (f'missing {missing}' if missing else '',
                              f'unexpected {unexpected}' if unexpected else '',
                              f'wrong shapes ({", ".join(wrong)})' if wrong else '') if part)
        + '.')


# ---------------------------------------------------------------- load ----


@dataclasses.dataclass
class ExportedModel:
  """A loaded export: the module, its variables, tokenizer and metadata.

  Attributes:
    kind: ``'language_model'``, ``'translation'`` or ``'classifier'``.
    module: the Flax module (``LanguageModel``, ``Seq2Seq``,
      ``SequenceClassifier``).
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

  def classify(self, lines: Sequence[str], *, batch_size: int = 64
               ) -> list[Optional[inference.Prediction]]:
    """The prediction of each line (None for blank lines) (classifiers;
    :func:`lstm_flax.inference.classify`)."""
    tokenizer = self._need('classifier', 'classify()')
    encoding = self.info['inference'].get('encoding') or {'max_length': 1 << 30}
    if self._probabilities is None:
      self._probabilities = inference.class_probabilities(self.module)
    return inference.classify(self.module, self.params, tokenizer, lines, self.label_names,
                              inference.TextEncoding.from_mapping(encoding),
                              batch_size=batch_size, probabilities_fn=self._probabilities)


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
    module = build_module(info['kind'], info['arguments'])
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f'{model_path}: cannot build the module from "kind" / "arguments": '
                     f'{e}') from None
  params_path = directory / PARAMS_FILE
  if not params_path.is_file():
    raise FileNotFoundError(f'{params_path} is missing: the export is incomplete.')
  flat = st_numpy.load_file(str(params_path))
  for key, value in list(flat.items()):
    recorded = info.get('params', {}).get(key, {}).get('dtype')
    if recorded is not None and value.dtype.name != recorded:
      flat[key] = np.asarray(value).astype(jnp.dtype(recorded))
  _check_params(flat, param_shapes(module), f'The parameters in {params_path}')
  params = unflatten({k: jnp.asarray(v) for k, v in flat.items()})
  tokenizer = None
  if (directory / TOKENIZER_DIR).is_dir():
    tokenizer = tokenizer_lib.load(directory / TOKENIZER_DIR)
  config_path = directory / CONFIG_FILE
  config = _read_json(config_path) if config_path.is_file() else None
  return ExportedModel(info['kind'], module, {'params': params}, tokenizer, info, config,
                       directory)
