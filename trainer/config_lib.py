"""The training config: every key with its default, and validation.

``default_config()`` is the schema: each config file in ``configs/`` starts
from it and changes the fields it needs. ``validate(config)`` checks a config
(from a file plus command-line overrides) against it and raises
:class:`ConfigError` naming the key at fault: unknown keys (usually typos),
non-positive sizes, rates outside ``[0, 1)``, unknown choices.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import ml_collections

import input_pipeline
from trainer import errors

ConfigError = errors.ConfigError

TASKS = ('lm', 'translation')
MODES = ('train', 'evaluate')
OPTIMIZERS = ('sgd', 'adam', 'adamw')
SCHEDULES = ('constant', 'zaremba', 'cosine', 'inverse_sqrt')
DTYPES = ('float32', 'bfloat16', 'float16')
ATTENTIONS = ('dot', 'general', 'additive')
DECODE_METHODS = ('beam', 'greedy', 'sample')


def default_config(task: str = 'lm') -> ml_collections.ConfigDict:
  """Every training config key with its default value.

  Args:
    task: 'lm' (language model, the default) or 'translation' (attention
      encoder-decoder); the model, data and decoding keys depend on it.
  """
  if task not in TASKS:
    raise ConfigError(f'task={task!r} is unknown; use one of {list(TASKS)}.')
  config = ml_collections.ConfigDict()

  # 'lm': lstm_flax.models.LanguageModel with truncated BPTT;
  # 'translation': lstm_flax.seq2seq.Seq2Seq with teacher forcing.
  config.task = task

  # What to run: 'train' (resumes from the workdir's latest checkpoint) or
  # 'evaluate' (scores a checkpoint on `eval_split` and prints perplexity).
  config.mode = 'train'
  # evaluate: the split to score ('valid' or 'test').
  config.eval_split = 'valid'
  # evaluate / generate: 'latest', 'best' or a step number.
  config.checkpoint = 'latest'
  # Seed of parameter initialisation and dropout.
  config.seed = 0

  # Length of training: num_train_steps if > 0, else num_epochs epochs.
  config.num_train_steps = 0
  # Epochs (passes over the training split) when num_train_steps is 0.
  config.num_epochs = 1
  # Write training metrics every this many steps.
  config.log_every_steps = 50
  # Evaluate on the validation split every this many steps (0: every epoch),
  # and always at the end.
  config.eval_every_steps = 0
  # Save a checkpoint every this many steps (and at the end, and on SIGTERM).
  config.checkpoint_every_steps = 500
  # Keep the last this many checkpoints ...
  config.keep_checkpoints = 3
  # ... and the best this many by validation perplexity.
  config.keep_best_checkpoints = 1
  # Write checkpoints in the background while training goes on.
  config.async_checkpoints = True
  # Report progress (steps/s, ETA) every this many seconds.
  config.progress_every_secs = 60.0

  if task == 'translation':
    _translation_model_config(config)
  else:
    _lm_model_config(config)
  _optimizer_config(config)

  # Devices: the 'model' mesh axis size (shards the LSTM's 4H dimension and
  # the vocabulary); the 'data' axis takes the remaining devices.
  config.model_parallelism = 1

  if task == 'translation':
    # Data: input_pipeline.default_translation_config() (every key documented
    # there).
    config.data = input_pipeline.default_translation_config()
  else:
    # Data: input_pipeline.default_lm_config() (every key documented there).
    config.data = input_pipeline.default_lm_config()
  return config


def _translation_model_config(config: ml_collections.ConfigDict) -> None:
  """Model, loss and decoding keys of the translation task."""
  # Model: lstm_flax.seq2seq.Seq2Seq on the joint SentencePiece vocabulary.
  config.model = ml_collections.ConfigDict()
  # Embedding size E (source and target).
  config.model.embedding_size = 256
  # Decoder hidden size H.
  config.model.hidden_size = 256
  # Encoder hidden size per direction (0: hidden_size).
  config.model.encoder_hidden_size = 0
  config.model.encoder_layers = 2
  config.model.decoder_layers = 2
  config.model.bidirectional_encoder = True
  # 'dot', 'general' (Luong) or 'additive' (Bahdanau).
  config.model.attention = 'general'
  # additive: key size (0: hidden_size).
  config.model.attention_size = 0
  # Feed the previous attentional state to the decoder (Luong).
  config.model.input_feeding = True
  # One embedding for both sides (the vocabulary is joint).
  config.model.share_embeddings = True
  # The target embedding is the output projection (needs E == H).
  config.model.tie_output = False
  # Dropout on embeddings, between layers and on the attentional state.
  config.model.dropout_rate = 0.1
  # Compute dtype: 'float32', 'bfloat16' (TPU) or 'float16'.
  config.model.dtype = 'float32'
  # lax.scan unroll of the encoder and the teacher-forced decoder (0: 1 on
  # CPU, 8 on accelerators).
  config.model.unroll = 0

  # Label smoothing of the training loss (the reported losses and
  # perplexities are plain cross-entropy).
  config.label_smoothing = 0.1

  # Decoding: validation BLEU / chrF during training, evaluate mode and the
  # default of translate.py.
  config.decode = ml_collections.ConfigDict()
  # 'beam', 'greedy' or 'sample'.
  config.decode.method = 'beam'
  config.decode.beam_size = 4
  # GNMT length penalty exponent.
  config.decode.alpha = 0.6
  # Output limit per sentence: min(max_length, length_ratio * source tokens
  # + length_offset).
  config.decode.max_length = 256
  config.decode.length_ratio = 1.5
  config.decode.length_offset = 10
  # Compute BLEU / chrF at every validation (else loss / perplexity only).
  config.decode.eval_bleu = True
  # Translate only the first this many validation pairs for BLEU (0: all).
  config.decode.max_bleu_examples = 0


def _lm_model_config(config: ml_collections.ConfigDict) -> None:
  """Model keys of the language-model task."""
  # Model: lstm_flax.models.LanguageModel. The vocabulary size comes from the
  # tokenizer.
  config.model = ml_collections.ConfigDict()
  # Word embedding size E.
  config.model.embedding_size = 200
  # LSTM hidden size H of every layer.
  config.model.hidden_size = 200
  # Stacked LSTM layers.
  config.model.num_layers = 2
  # LSTMP projection size P of each layer's output (0: none).
  config.model.proj_size = 0
  # Units of the last layer instead of H (0: H); AWD-LSTM's 1150-1150-400.
  config.model.last_layer_size = 0
  # Share the embedding with the softmax weights (needs the output size == E).
  config.model.tie_weights = False
  # AWD-LSTM embedding dropout (drops whole words).
  config.model.embedding_dropout_rate = 0.0
  # Dropout on the embedded inputs.
  config.model.input_dropout_rate = 0.0
  # Dropout between LSTM layers.
  config.model.dropout_rate = 0.0
  # Dropout on the last LSTM layer's outputs.
  config.model.output_dropout_rate = 0.0
  # DropConnect on the recurrent kernels (AWD-LSTM weight drop).
  config.model.weight_dropout_rate = 0.0
  # One dropout mask per sequence (locked / variational dropout).
  config.model.variational_dropout = False
  # Initial forget-gate bias.
  config.model.forget_bias = 0.0
  # Uniform init in [-init_scale, init_scale] (Zaremba); 0: Flax defaults.
  config.model.init_scale = 0.0
  # Compute dtype: 'float32', 'bfloat16' (TPU) or 'float16'.
  config.model.dtype = 'float32'
  # lax.scan unroll factor of the recurrence.
  config.model.unroll = 1
  # The LSTM's hand-written backward pass (else JAX autodiff).
  config.model.use_custom_vjp = True


def _optimizer_config(config: ml_collections.ConfigDict) -> None:
  # Optimiser (optax).
  config.optimizer = ml_collections.ConfigDict()
  # 'sgd', 'adam' or 'adamw'.
  config.optimizer.name = 'sgd'
  # Peak learning rate.
  config.optimizer.learning_rate = 1.0
  # 'constant', 'zaremba' (constant, then divided by lr_decay_factor every
  # epoch after decay_after_epochs), 'cosine' or 'inverse_sqrt' (both after
  # warmup_steps of linear warm-up).
  config.optimizer.schedule = 'constant'
  # Linear warm-up steps (cosine / inverse_sqrt / constant).
  config.optimizer.warmup_steps = 0
  # zaremba: epochs at the full learning rate.
  config.optimizer.decay_after_epochs = 4
  # zaremba: divide the learning rate by this every later epoch.
  config.optimizer.lr_decay_factor = 2.0
  # cosine: final learning rate as a fraction of the peak.
  config.optimizer.end_lr_fraction = 0.0
  # sgd: momentum (0: plain SGD).
  config.optimizer.momentum = 0.0
  # adam / adamw: moment decay rates and epsilon.
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  # adamw: decoupled weight decay; sgd / adam: L2 added to the gradient.
  config.optimizer.weight_decay = 0.0
  # Clip gradients to this global norm (0: no clipping).
  config.optimizer.max_grad_norm = 5.0
  # Accumulate gradients over this many batches per update (optax.MultiSteps).
  config.optimizer.grad_accum_steps = 1
  # AWD-LSTM averaged SGD: average the parameters from this update on and
  # evaluate / checkpoint the average as the eval parameters (-1: off).
  config.optimizer.averaging_start_step = -1


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping) and value and name not in _DICT_VALUED:
      out.update(_flatten(value, name + '.'))
    else:
      out[name] = value
  return out


# Keys whose values are dicts with free keys (split name -> file).
_DICT_VALUED = ('data.files', 'data.tfds_splits')


def _as_dict(config: Any) -> dict[str, Any]:
  if isinstance(config, ml_collections.ConfigDict):
    return config.to_dict()
  if isinstance(config, Mapping):
    return {k: _as_dict(v) if isinstance(v, (Mapping, ml_collections.ConfigDict))
            else v for k, v in config.items()}
  raise ConfigError(f'A config must be a ConfigDict or dict; got {type(config)}.')


def resolve(config: Any) -> ml_collections.ConfigDict:
  """The validated config: ``default_config()`` updated with ``config``.

  Raises:
    ConfigError: an unknown key or an invalid value.
  """
  given = _flatten(_as_dict(config))
  task = given.get('task', 'lm')
  if task not in TASKS:
    raise ConfigError(f'task={task!r} is unknown; use one of {list(TASKS)}.')
  defaults = _flatten(default_config(task).to_dict())
  for key in given:
    if key not in defaults and not any(
        key.startswith(d + '.') for d in _DICT_VALUED):
      close = difflib.get_close_matches(key, list(defaults), n=1)
      hint = f' Did you mean {close[0]!r}?' if close else ''
      other = 'translation' if task == 'lm' else 'lm'
      if key in _flatten(default_config(other).to_dict()):
        hint += (f' ({key!r} is a key of task={other!r}; this config has '
                 f'task={task!r}.)')
      raise ConfigError(f'Unknown config key {key!r}.{hint}')
  resolved = default_config(task)
  resolved.update(ml_collections.ConfigDict(_as_dict(config)))
  validate(resolved)
  return resolved


def _positive(key: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ConfigError(f'{key} must be a positive integer; got {value!r}.')


def _non_negative(key: str, value: Any) -> None:
  if not isinstance(value, (int, float)) or value < 0:
    raise ConfigError(f'{key} must be >= 0; got {value!r}.')


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ConfigError(f'{key}={value!r} is unknown; use one of {list(choices)}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first invalid value, naming its key."""
  c = config
  positive, non_negative, choice = _positive, _non_negative, _choice
  choice('mode', c.mode, MODES)
  if not c.eval_split:
    raise ConfigError('eval_split must name a split, e.g. valid or test.')
  checkpoint_choice(c.checkpoint)
  for key in ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
              'model_parallelism'):
    positive(key, c[key])
  for key in ('num_train_steps', 'num_epochs', 'eval_every_steps',
              'keep_best_checkpoints'):
    non_negative(key, c[key])
  if c.num_train_steps <= 0 and c.num_epochs <= 0:
    raise ConfigError('Set num_train_steps or num_epochs to a positive value.')
  _validate_optimizer(c)
  if c.task == 'translation':
    _validate_translation(c)
    return
  m = c.model
  for key in ('embedding_size', 'hidden_size', 'num_layers', 'unroll'):
    positive(f'model.{key}', m[key])
  non_negative('model.proj_size', m.proj_size)
  non_negative('model.last_layer_size', m.last_layer_size)
  non_negative('model.init_scale', m.init_scale)
  for key in ('embedding_dropout_rate', 'input_dropout_rate', 'dropout_rate',
              'output_dropout_rate', 'weight_dropout_rate'):
    if not 0.0 <= m[key] < 1.0:
      raise ConfigError(f'model.{key} must be in [0, 1); got {m[key]!r}.')
  choice('model.dtype', m.dtype, DTYPES)
  output_size = m.last_layer_size or m.proj_size or m.hidden_size
  if m.tie_weights and output_size != m.embedding_size:
    raise ConfigError(
        'model.tie_weights needs the LSTM output size (model.last_layer_size, '
        f'model.proj_size or model.hidden_size = {output_size}) to equal '
        f'model.embedding_size ({m.embedding_size}).')
  d = c.data
  for key in ('batch_size', 'eval_batch_size'):
    positive(f'data.{key}', d[key])
  if d.batching == 'stream':
    positive('data.seq_len', d.seq_len)


def _validate_translation(c: ml_collections.ConfigDict) -> None:
  positive, non_negative, choice = _positive, _non_negative, _choice
  m = c.model
  for key in ('embedding_size', 'hidden_size', 'encoder_layers',
              'decoder_layers'):
    positive(f'model.{key}', m[key])
  for key in ('encoder_hidden_size', 'attention_size', 'unroll'):
    non_negative(f'model.{key}', m[key])
  choice('model.attention', m.attention, ATTENTIONS)
  choice('model.dtype', m.dtype, DTYPES)
  if not 0.0 <= m.dropout_rate < 1.0:
    raise ConfigError(f'model.dropout_rate must be in [0, 1); got {m.dropout_rate!r}.')
  if m.tie_output and m.embedding_size != m.hidden_size:
    raise ConfigError(
        f'model.tie_output needs model.embedding_size ({m.embedding_size}) '
        f'to equal model.hidden_size ({m.hidden_size}).')
  if m.attention == 'dot' and (
      (m.encoder_hidden_size or m.hidden_size) *
      (2 if m.bidirectional_encoder else 1) != m.hidden_size):
    raise ConfigError(
        "model.attention='dot' needs the encoder output size (model."
        'encoder_hidden_size x directions) to equal model.hidden_size; use '
        "'general' or 'additive', or set model.encoder_hidden_size.")
  if not 0.0 <= c.label_smoothing < 1.0:
    raise ConfigError(
        f'label_smoothing must be in [0, 1); got {c.label_smoothing!r}.')
  d = c.decode
  choice('decode.method', d.method, DECODE_METHODS)
  for key in ('beam_size', 'max_length'):
    positive(f'decode.{key}', d[key])
  for key in ('alpha', 'length_ratio', 'length_offset', 'max_bleu_examples'):
    non_negative(f'decode.{key}', d[key])
  for key in ('tokens_per_batch', 'eval_tokens_per_batch', 'max_length',
              'batch_size_multiple', 'vocab_size'):
    positive(f'data.{key}', c.data[key])


def _validate_optimizer(c: ml_collections.ConfigDict) -> None:
  positive, non_negative, choice = _positive, _non_negative, _choice
  o = c.optimizer
  choice('optimizer.name', o.name, OPTIMIZERS)
  choice('optimizer.schedule', o.schedule, SCHEDULES)
  if not o.learning_rate > 0:
    raise ConfigError(f'optimizer.learning_rate must be > 0; got {o.learning_rate!r}.')
  for key in ('warmup_steps', 'momentum', 'weight_decay', 'max_grad_norm',
              'end_lr_fraction'):
    non_negative(f'optimizer.{key}', o[key])
  positive('optimizer.grad_accum_steps', o.grad_accum_steps)
  positive('optimizer.decay_after_epochs', o.decay_after_epochs)
  if not o.lr_decay_factor >= 1.0:
    raise ConfigError(
        f'optimizer.lr_decay_factor divides the learning rate; it must be >= 1, '
        f'got {o.lr_decay_factor!r}.')
  if o.schedule == 'inverse_sqrt' and o.warmup_steps <= 0:
    raise ConfigError('optimizer.schedule=inverse_sqrt needs warmup_steps > 0.')


def checkpoint_choice(value: Any) -> str | int:
  """'latest', 'best' or a step number (int or digit string)."""
  if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
    return value
  if isinstance(value, str):
    if value in ('latest', 'best'):
      return value
    if value.isdigit():
      return int(value)
  raise ConfigError(
      f"checkpoint={value!r} must be 'latest', 'best' or a step number.")
