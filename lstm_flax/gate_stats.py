"""Statistics of recorded gates (``lstm_flax.gates``), in NumPy.

* Saturation (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and
  Understanding Recurrent Networks", Figure 3): for each unit, the fraction
  of valid steps at which a gate is left-saturated (``< 0.1``) and
  right-saturated (``> 0.9``).
* Mean forget-gate value per layer, and per-unit summaries.
* "Who does what": every unit's cell state correlated (Pearson, over the
  valid steps) with simple properties of the text at each token
  (:func:`text_properties`), ranked by absolute correlation.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

LEFT, RIGHT = 0.1, 0.9  # saturation thresholds
SIGMOID_GATES = ('i', 'f', 'o')
QUOTES = '"\u201c\u201d'
OPENING, CLOSING = '([{', ')]}'

PROPERTIES = {
    'line_position': 'tokens since the start of the line',
    'in_quotes': '1 from an opening to a closing double quote (both included)',
    'in_brackets': 'nesting depth of (), [] and {} (the brackets included)',
    'word_position': 'position inside the current run of letters/digits (0 outside)',
    'word_length': 'length of the run of letters/digits the token is in (0 outside)',
    'is_space': '1 at whitespace tokens',
    'is_upper': '1 at tokens starting with an upper-case letter',
    'is_punctuation': '1 at punctuation tokens',
}


def _steps(values: np.ndarray, mask: np.ndarray, row: int) -> np.ndarray:
  """``values [L*D, batch, time, H]`` -> ``[L*D, valid time, H]`` of ``row``."""
  return np.asarray(values)[:, row][:, np.asarray(mask)[row].astype(bool)]


def saturation(gates: Mapping[str, np.ndarray], row: int = 0
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """``{gate: (left [L*D, H], right [L*D, H])}`` for ``i``, ``f``, ``o``:
  the fraction of ``row``'s valid steps with the gate ``< 0.1`` / ``> 0.9``."""
  out = {}
  for name in SIGMOID_GATES:
    v = _steps(gates[name], gates['mask'], row)  # [L*D, T, H]
    out[name] = ((v < LEFT).mean(axis=1), (v > RIGHT).mean(axis=1))
  return out


def mean_forget(gates: Mapping[str, np.ndarray], row: int = 0) -> np.ndarray:
  """Mean forget-gate value per layer direction, ``[L*D]``."""
  return _steps(gates['f'], gates['mask'], row).mean(axis=(1, 2))


def unit_summaries(gates: Mapping[str, np.ndarray], layer: int, row: int = 0
                   ) -> dict[str, np.ndarray]:
  """Per-unit ``[H]`` summaries of layer direction ``layer``: the mean of
  each gate, the mean and standard deviation of ``c``, the largest ``|c|``."""
  v = {k: _steps(gates[k], gates['mask'], row)[layer] for k in ('i', 'f', 'g', 'o', 'c')}
  return {
      **{f'mean_{k}': v[k].mean(axis=0) for k in ('i', 'f', 'g', 'o')},
      'mean_c': v['c'].mean(axis=0),
      'std_c': v['c'].std(axis=0),
      'max_abs_c': np.abs(v['c']).max(axis=0),
  }


def text_properties(tokens: Sequence[str]) -> dict[str, np.ndarray]:
  """The :data:`PROPERTIES` of each token, ``{name: [T] float}``.

  ``tokens`` are the strings of the tokens (characters for a character
  model); a line ends at a token that is or ends with a newline.
  """
  n = len(tokens)
  props = {name: np.zeros(n) for name in PROPERTIES}
  line_pos, depth, quoted, word_start = 0, 0, False, None
  word = [False] * n
  for t, tok in enumerate(tokens):
    props['line_position'][t] = line_pos
    line_pos = 0 if tok.endswith('\n') or tok == '<eos>' else line_pos + 1
    if tok and tok[0] in OPENING:
      depth += 1
    props['in_brackets'][t] = depth  # the brackets themselves included
    if tok and tok[-1] in CLOSING:
      depth = max(depth - 1, 0)
    is_quote = bool(tok) and tok[0] in QUOTES
    props['in_quotes'][t] = float(quoted or is_quote)
    if is_quote:
      quoted = not quoted
    word[t] = tok.isalnum() or (len(tok) > 1 and any(ch.isalnum() for ch in tok))
    props['is_space'][t] = float(tok.isspace())
    props['is_upper'][t] = float(bool(tok) and tok[0].isupper())
    props['is_punctuation'][t] = float(bool(tok) and not word[t] and not tok.isspace())
  t = 0
  while t < n:  # runs of word tokens
    if not word[t]:
      t += 1
      continue
    word_start = t
    while t < n and word[t]:
      t += 1
    props['word_position'][word_start:t] = np.arange(1, t - word_start + 1)
    props['word_length'][word_start:t] = t - word_start
  return props


def correlations(values: np.ndarray, prop: np.ndarray) -> np.ndarray:
  """Pearson correlation of each unit ``values [T, H]`` with ``prop [T]``
  (0 where either is constant), ``[H]``."""
  v = values - values.mean(axis=0)
  p = prop - prop.mean()
  denom = np.sqrt((v * v).sum(axis=0) * (p * p).sum())
  with np.errstate(invalid='ignore', divide='ignore'):
    r = (v * p[:, None]).sum(axis=0) / denom
  return np.where(denom > 0, r, 0.0)


@dataclasses.dataclass(frozen=True)
class UnitRole:
  """A unit whose cell state tracks a text property."""

  layer: int  # layer direction index (0 .. L*D-1)
  unit: int
  prop: str
  correlation: float


def rank_units(gates: Mapping[str, np.ndarray], tokens: Sequence[str], *, row: int = 0,
               top: int = 10) -> list[UnitRole]:
  """The ``top`` (layer, unit, property) triples by ``|corr(c, property)|``
  over ``row``'s valid steps, one per unit (its best property). ``tokens``
  are the valid steps' token strings."""
  c = _steps(gates['c'], gates['mask'], row)  # [L*D, T, H]
  if c.shape[1] != len(tokens):
    raise ValueError(f'rank_units: {len(tokens)} tokens for {c.shape[1]} valid steps; pass '
                     'the token strings of the recorded sequence.')
  props = text_properties(tokens)
  best: dict[tuple[int, int], UnitRole] = {}
  for name, prop in props.items():
    if np.ptp(prop) == 0:
      continue
    for layer in range(c.shape[0]):
      for unit, r in enumerate(correlations(c[layer], prop)):
        key = (layer, unit)
        if key not in best or abs(r) > abs(best[key].correlation):
          best[key] = UnitRole(layer, unit, name, float(r))
  return sorted(best.values(), key=lambda u: -abs(u.correlation))[:top]
