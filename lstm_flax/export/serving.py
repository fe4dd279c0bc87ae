"""A language model's sampling loop as a ``jax.export`` function (``generate.jax_exported``).

The serialised function holds the parameters as constants and runs with jax
alone: no lstm_flax or model code (:func:`load_generation`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp

from lstm_flax.export.files import SERVING_FILE


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
