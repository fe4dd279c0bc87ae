"""Text in, text out: generation, translation and classification of raw text.

The one implementation of the inference glue around the models, used both by
the trainer's commands (``generate.py``, ``translate.py``, ``classify.py``,
validation BLEU) and by an exported model (``lstm_flax.export``). Each
function takes a module, its ``params`` and a tokenizer: any object with
``encode(text) -> list[int]``, ``decode(ids) -> str`` and the ids
``pad_id``, ``unk_id``, ``bos_id``, ``eos_id`` (``lstm_flax.tokenizer``, which
the trainer's ``input_pipeline`` builds).

* :func:`generate`: a ``LanguageModel`` continues a prompt
  (``lstm_flax.sampling.sample``).
* :func:`translate`: a ``Seq2Seq`` translates lines in length-sorted
  batches (``lstm_flax.decoding.translate``) and reports the lines it had to
  change (:class:`InputReport`).
* :func:`classify`: a ``SequenceClassifier`` labels lines;
  :func:`classify_frames`: a ``FeatureSequenceClassifier`` labels frame
  sequences (audio features, image rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from lstm_flax import decoding, sampling
from lstm_flax.tokenizer import TextEncoding  # Re-exported: the classifier encoding.
from lstm_flax.tokenizer import Tokenizer

Array = jax.Array

# Translation sources are padded to a multiple of this, feature frames to a
# power of two of at least this (fewer compiles).
PAD_TO = 8
DECODE_METHODS = ('beam', 'greedy', 'sample')


class SettingError(ValueError):
  """An invalid inference setting (batch size, decoding method...), named."""


class TokenizerLike(Protocol):
  """What the functions here need of a tokenizer."""

  pad_id: int
  unk_id: int
  bos_id: int
  eos_id: int

  def encode(self, text: str) -> list[int]:
    ...

  def decode(self, ids: Iterable[int]) -> str:
    ...


# ------------------------------------------------------------ generation ----


def generate(model: Any, params: Any, tokenizer: TokenizerLike, prompt: str = '', *,
             num_tokens: int = 100, temperature: float = 1.0, top_k: Optional[int] = None,
             top_p: Optional[float] = None, seed: int = 0, num_samples: int = 1) -> list[str]:
  """``num_samples`` continuations of ``prompt`` (the generated text only).

  The prompt is preceded by the end-of-line id, so generation starts as at the
  beginning of a line. The same seed gives the same text. ``top_k`` 0 / None
  and ``top_p`` None / 1 mean no filtering.

  Raises:
    SettingError: ``num_tokens`` or ``num_samples`` below 1.
    ValueError: invalid sampling settings (``lstm_flax.sampling``).
  """
  if num_tokens < 1:
    raise SettingError(f'num_tokens must be >= 1; got {num_tokens}.')
  if num_samples < 1:
    raise SettingError(f'num_samples must be >= 1; got {num_samples}.')
  ids = [tokenizer.eos_id] + list(tokenizer.encode(prompt))
  prompt_ids = jnp.asarray(np.tile(np.asarray(ids, np.int32), (num_samples, 1)))  # [S, T]
  tokens = sampling.sample(
      model, params, prompt_ids, jax.random.PRNGKey(seed), num_tokens,
      temperature=float(temperature), top_k=top_k or None,
      top_p=top_p if top_p is not None and top_p < 1.0 else None)  # [S, num_tokens]
  return [tokenizer.decode(row) for row in np.asarray(tokens).tolist()]


# ----------------------------------------------------------- translation ----


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """How to decode translations.

  Attributes:
    method: ``'beam'``, ``'greedy'`` or ``'sample'``.
    beam_size: hypotheses kept by beam search.
    alpha: GNMT length penalty exponent.
    max_length: output tokens at most.
    length_ratio, length_offset: output limit per sentence ``min(max_length,
      length_ratio * source tokens + length_offset)``.
  """

  method: str = 'beam'
  beam_size: int = 4
  alpha: float = 0.6
  max_length: int = 256
  length_ratio: float = 1.5
  length_offset: int = 10

  def __post_init__(self):
    if self.method not in DECODE_METHODS:
      raise SettingError(f'method={self.method!r} is unknown; use one of {list(DECODE_METHODS)}.')
    for name in ('beam_size', 'max_length'):
      if int(getattr(self, name)) < 1:
        raise SettingError(f'{name} must be >= 1; got {getattr(self, name)}.')
    for name in ('alpha', 'length_ratio', 'length_offset'):
      if getattr(self, name) < 0:
        raise SettingError(f'{name} must be >= 0; got {getattr(self, name)}.')

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any], **overrides: Any) -> DecodeOptions:
    """The options among ``values`` (other keys ignored, e.g. a trainer's
    ``config.decode``), with ``overrides`` that are not None."""
    names = [f.name for f in dataclasses.fields(cls)]
    kw = {k: values[k] for k in names if k in values}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**kw)

  def output_length(self, source_length: int) -> int:
    """The static output length of a batch of ``source_length`` (padded) positions."""
    return max(1, min(int(self.max_length),
                      int(self.length_ratio * source_length + self.length_offset)))


@dataclasses.dataclass
class InputReport:
  """What was changed in the input (line numbers from 1)."""

  num_lines: int = 0
  max_input_tokens: int = 0
  empty: list[int] = dataclasses.field(default_factory=list)
  truncated: list[tuple[int, int]] = dataclasses.field(default_factory=list)
  unknown: list[tuple[int, str]] = dataclasses.field(default_factory=list)

  def messages(self) -> list[str]:
    """One human-readable warning per kind of change."""
    out = []
    if self.empty:
      out.append(f'{_lines(len(self.empty))} empty ({_numbers(self.empty)}): '
                 'not translated, written as empty lines.')
    if self.truncated:
      detail = ', '.join(f'line {n}: {t} tokens' for n, t in self.truncated[:5])
      more = ', ...' if len(self.truncated) > 5 else ''
      out.append(
          f'{_lines(len(self.truncated))} longer than max_input_tokens='
          f'{self.max_input_tokens} (with EOS) truncated ({detail}{more}).')
    if self.unknown:
      chars = sorted({c for _, s in self.unknown for c in s})
      out.append(
          f'{_lines(len(self.unknown))} with characters the vocabulary '
          f'lacks, translated as <unk> ({_numbers([n for n, _ in self.unknown])}'
          f'; characters: {"".join(chars)!r}).')
    return out


def _lines(n: int) -> str:
  return f'{n} line' if n == 1 else f'{n} lines'


def _numbers(numbers: Sequence[int]) -> str:
  shown = ', '.join(str(n) for n in numbers[:10])
  more = ', ...' if len(numbers) > 10 else ''
  return f'line{"s" if len(numbers) > 1 else ""} {shown}{more}'


def encode_sources(tokenizer: TokenizerLike, lines: Sequence[str], max_input_tokens: int
                   ) -> tuple[list[Optional[list[int]]], InputReport]:
  """Ids (with EOS) of each line (``None`` for blank lines), truncated to
  ``max_input_tokens``, and the report of changes.

  Raises:
    SettingError: ``max_input_tokens`` below 2 (a token and EOS).
  """
  if max_input_tokens < 2:
    raise SettingError(f'max_input_tokens must be >= 2 (a token and EOS); got {max_input_tokens}.')
  report = InputReport(num_lines=len(lines), max_input_tokens=max_input_tokens)
  unk = tokenizer.unk_id
  char_is_unknown: dict[str, bool] = {}
  encoded: list[Optional[list[int]]] = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      report.empty.append(number)
      encoded.append(None)
      continue
    ids = list(tokenizer.encode(line)) + [tokenizer.eos_id]
    if unk in ids:
      missing = []
      for c in dict.fromkeys(line):
        if c.isspace():
          continue
        if c not in char_is_unknown:
          char_is_unknown[c] = unk in tokenizer.encode(c)
        if char_is_unknown[c]:
          missing.append(c)
      report.unknown.append((number, ''.join(missing)))
    if len(ids) > max_input_tokens:
      report.truncated.append((number, len(ids)))
      ids = ids[:max_input_tokens - 1] + [tokenizer.eos_id]
    encoded.append(ids)
  return encoded, report


def translate_batch(model: Any, params: Any, source: Array, source_mask: Array,
                    decode: DecodeOptions, tokenizer: TokenizerLike,
                    rng: Optional[Array] = None) -> Array:
  """Token ids ``[batch, output_length]`` of the translations of one batch
  (``source [batch, S]`` int, ``source_mask [batch, S]``)."""
  return decoding.translate(
      model, params, source, source_mask, method=decode.method,
      beam_size=int(decode.beam_size), alpha=float(decode.alpha),
      max_length=decode.output_length(source.shape[1]),
      length_ratio=float(decode.length_ratio), length_offset=int(decode.length_offset),
      bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, rng=rng)


def detokenize(tokenizer: TokenizerLike, ids: Iterable[int]) -> str:
  """The text of output ids up to the first EOS."""
  ids = [int(i) for i in ids]
  if tokenizer.eos_id in ids:
    ids = ids[:ids.index(tokenizer.eos_id)]
  return tokenizer.decode(ids).strip('\n')


def translate(model: Any, params: Any, tokenizer: TokenizerLike, lines: Sequence[str], *,
              decode: DecodeOptions = DecodeOptions(), batch_size: int = 32,
              max_input_tokens: Optional[int] = None, seed: int = 0
              ) -> tuple[list[str], InputReport]:
  """Translations of ``lines`` (in order) and the report of changes.

  Blank lines give empty translations; lines longer than
  ``max_input_tokens`` (default ``decode.max_length``) tokens with EOS are
  truncated; both are counted in the report, as are lines with characters
  the vocabulary lacks. Lines are translated longest first in batches of
  ``batch_size`` rows, padded to a multiple of ``PAD_TO`` positions.

  Raises:
    SettingError: ``batch_size`` below 1 or ``max_input_tokens`` below 2.
  """
  if batch_size < 1:
    raise SettingError(f'batch_size must be >= 1; got {batch_size}.')
  encoded, report = encode_sources(tokenizer, lines, int(max_input_tokens or decode.max_length))
  outputs = [''] * len(lines)
  todo = sorted((i for i, ids in enumerate(encoded) if ids is not None),
                key=lambda i: -len(encoded[i]))
  rng = jax.random.PRNGKey(seed)
  for begin in range(0, len(todo), batch_size):
    chunk = todo[begin:begin + batch_size]
    length = -(-max(len(encoded[i]) for i in chunk) // PAD_TO) * PAD_TO
    source = np.full((batch_size, length), tokenizer.pad_id, np.int32)  # [batch, S]
    mask = np.zeros((batch_size, length), np.float32)  # [batch, S]
    source[:, 0], mask[:, 0] = tokenizer.eos_id, 1.0  # Filler rows: just EOS.
    for r, i in enumerate(chunk):
      ids = encoded[i]
      source[r], mask[r] = tokenizer.pad_id, 0.0
      source[r, :len(ids)], mask[r, :len(ids)] = ids, 1.0
    tokens = translate_batch(model, params, source, mask, decode, tokenizer,
                             rng=jax.random.fold_in(rng, begin))
    tokens = np.asarray(jax.device_get(tokens))
    for r, i in enumerate(chunk):
      outputs[i] = detokenize(tokenizer, tokens[r])
  return outputs, report


# -------------------------------------------------------- classification ----


@dataclasses.dataclass
class Prediction:
  """The class of one line."""

  label: str  # The most probable class's name.
  probabilities: dict[str, float]  # Class name -> probability.


def class_probabilities(model: Any) -> Any:
  """``jit(params, tokens [B, T] (or features [B, T, F]), lengths [B]) ->
  probabilities [B, C]``."""
  return jax.jit(lambda params, tokens, lengths: jax.nn.softmax(
      model.apply({'params': params}, tokens, lengths, deterministic=True)))


def classify(model: Any, params: Any, tokenizer: Tokenizer, lines: Sequence[str],
             label_names: Sequence[str], encoding: TextEncoding, *, batch_size: int = 64,
             probabilities_fn: Any = None) -> list[Optional[Prediction]]:
  """The prediction of each line (``None`` for blank lines), in order.

  ``tokenizer``: a :class:`lstm_flax.tokenizer.Tokenizer` (the texts are
  encoded with its ``encode_lines``, as the training data were).

  ``probabilities_fn``: a :func:`class_probabilities` of ``model`` to reuse
  (one compiled function per model, not per call).

  Raises:
    SettingError: ``batch_size`` below 1, or ``label_names`` not one per class.
  """
  if batch_size < 1:
    raise SettingError(f'batch_size must be >= 1; got {batch_size}.')
  try:
    encoding.widths()
  except ValueError as e:
    raise SettingError(str(e)) from None
  probabilities_fn = probabilities_fn or class_probabilities(model)
  todo = [i for i, line in enumerate(lines) if line.strip()]
  out: list[Optional[Prediction]] = [None] * len(lines)
  for begin in range(0, len(todo), batch_size):
    chunk = todo[begin:begin + batch_size]
    tokens, lengths = encoding.encode(tokenizer, [lines[i] for i in chunk])
    _predict(out, chunk, probabilities_fn(params, tokens, lengths), label_names)
  return out


def _predict(out: list[Optional[Prediction]], chunk: Sequence[int], probs: Any,
             label_names: Sequence[str]) -> None:
  """Sets ``out[chunk[r]]`` from ``probs [rows, classes]`` row ``r``."""
  probs = np.asarray(probs)
  if probs.shape[-1] != len(label_names):
    raise SettingError(f'The model has {probs.shape[-1]} classes but {len(label_names)} label '
                       f'names were given: {list(label_names)}.')
  for row, i in enumerate(chunk):
    p = probs[row]
    out[i] = Prediction(label_names[int(np.argmax(p))],
                        {name: float(v) for name, v in zip(label_names, p)})


def classify_frames(model: Any, params: Any, frames: Sequence[Optional[np.ndarray]],
                    label_names: Sequence[str], *, batch_size: int = 64,
                    probabilities_fn: Any = None) -> list[Optional[Prediction]]:
  """The prediction of each frame sequence (``None`` stays ``None``), in
  order, for a model taking ``(features [B, T, F] float32, lengths [B])``
  (``lstm_flax.feature_models.FeatureSequenceClassifier``).

  ``frames``: normalised ``[T_i, F]`` arrays (e.g.
  ``lstm_flax.features.FeatureSettings.featurize``). Every batch has
  ``min(batch_size, len(frames))`` rows and is padded to the power of two
  (at least ``PAD_TO``) above its longest sequence, so calls with recordings
  of many lengths reuse a few compiled shapes.

  Raises:
    SettingError: ``batch_size`` below 1, an array that is not ``[T, F]``
      with ``T >= 1``, or ``label_names`` not one per class.
  """
  if batch_size < 1:
    raise SettingError(f'batch_size must be >= 1; got {batch_size}.')
  probabilities_fn = probabilities_fn or class_probabilities(model)
  todo = [i for i, x in enumerate(frames) if x is not None]
  for i in todo:
    if np.ndim(frames[i]) != 2 or not len(frames[i]):
      raise SettingError(f'Input {i} has shape {np.shape(frames[i])}; give [frames, features] '
                         'with at least one frame.')
  out: list[Optional[Prediction]] = [None] * len(frames)
  rows = min(batch_size, len(todo))
  for begin in range(0, len(todo), batch_size):
    chunk = todo[begin:begin + batch_size]
    lengths = np.ones(rows, np.int32)  # Rows past the chunk: one zero frame.
    lengths[:len(chunk)] = [len(frames[i]) for i in chunk]
    width = max(PAD_TO, 1 << (int(lengths.max()) - 1).bit_length())
    batch = np.zeros((rows, width, np.shape(frames[chunk[0]])[1]), np.float32)
    for row, i in enumerate(chunk):
      batch[row, :lengths[row]] = frames[i]
    _predict(out, chunk, probabilities_fn(params, batch, lengths), label_names)
  return out
