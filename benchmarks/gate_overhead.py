"""Training-step cost of the gate recording (lstm_flax.gates) when it is off.

Times a jit-compiled language-model loss + gradient step (PTB-small shapes
by default) in two forms, interleaved so that machine noise hits both alike:

  * ``plain``        ``model.apply`` as the trainer calls it;
  * ``recorder_off`` the same apply traced under
                     ``flax.linen.intercept_methods(gates.interceptor)``
                     with the ``'gates'`` collection not mutable (the
                     recorder installed but off).

Also reports whether the two compiled programs are the same text (HLO):
recording off adds nothing to the step. Reported: median ms/step over
``--rounds`` rounds and the ratio to ``plain``.

  python benchmarks/gate_overhead.py
  python benchmarks/gate_overhead.py --hidden=650 --rounds=10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402

from lstm_flax import gates, models  # noqa: E402


def make_steps(vocab: int, hidden: int, layers: int, batch: int, time_steps: int):
  """(variables, tokens, {variant: jitted loss+grad step})."""
  model = models.LanguageModel(vocab_size=vocab, embedding_size=hidden, hidden_size=hidden,
                               num_layers=layers)
  tokens = jax.random.randint(jax.random.key(0), (batch, time_steps), 0, vocab)
  variables = model.init(jax.random.key(1), tokens)

  def loss(params, tokens):
    loss_sum, _ = model.apply({'params': params}, tokens, targets=tokens)
    return loss_sum / tokens.size

  def loss_recorder_off(params, tokens):
    with nn.intercept_methods(gates.interceptor):
      return loss(params, tokens)

  steps = {'plain': jax.jit(jax.value_and_grad(loss)),
           'recorder_off': jax.jit(jax.value_and_grad(loss_recorder_off))}
  return variables['params'], tokens, steps


def same_program(steps, params, tokens) -> bool:
  """Whether the variants compile to the same HLO text (names aside)."""
  texts = [s.lower(params, tokens).as_text() for s in steps.values()]
  strip = lambda t: '\n'.join(l for l in t.splitlines() if not l.startswith('module'))  # noqa: E731
  return len({strip(t) for t in texts}) == 1


def benchmark(vocab=10000, hidden=200, layers=2, batch=20, time_steps=35, rounds=5,
              steps_per_round=10) -> tuple[dict[str, float], bool]:
  """Median ms/step of each variant, and whether their programs are the same."""
  params, tokens, steps = make_steps(vocab, hidden, layers, batch, time_steps)
  for step in steps.values():  # compile and warm up
    jax.block_until_ready(step(params, tokens))
  times = {name: [] for name in steps}
  for _ in range(rounds):
    for name, step in steps.items():
      start = time.perf_counter()
      for _ in range(steps_per_round):
        out = step(params, tokens)
      jax.block_until_ready(out)
      times[name].append(1e3 * (time.perf_counter() - start) / steps_per_round)
  return {n: statistics.median(t) for n, t in times.items()}, same_program(steps, params, tokens)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--vocab', type=int, default=10000)
  parser.add_argument('--hidden', type=int, default=200)
  parser.add_argument('--layers', type=int, default=2)
  parser.add_argument('--batch', type=int, default=20)
  parser.add_argument('--time', type=int, default=35)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--steps', type=int, default=10)
  a = parser.parse_args()
  medians, same = benchmark(a.vocab, a.hidden, a.layers, a.batch, a.time, a.rounds, a.steps)
  print(f'{jax.default_backend()} {jax.devices()[0].device_kind}; vocab {a.vocab}, hidden '
        f'{a.hidden} x {a.layers}, batch {a.batch} x {a.time}')
  print('| variant | ms/step | vs plain |\n|---|---|---|')
  for name, ms in medians.items():
    print(f'| {name} | {ms:.1f} | {ms / medians["plain"]:.2f}x |')
  print(f'same compiled program: {same}')


if __name__ == '__main__':
  main()
