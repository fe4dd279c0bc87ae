"""The trainer's language-model step with and without the fused output loss.

Times ``trainer.steps.train_step`` (forward, backward, clipping, SGD) as
``train.py`` compiles it for a config, in several forms, side by side:

  * ``fused``   the trainer's form: ``LanguageModel(..., targets=)`` with the
                output projection and softmax cross-entropy fused
                (``lstm_flax.losses``, hand-written backward pass);
  * ``logits``  logits from the model (the same 2-D output product), then
                ``optax.softmax_cross_entropy_with_integer_labels`` and
                autodiff: the loss as the trainer computed it before the
                fused form;
  * ``logits_3d`` as ``logits``, with the output layer applied to
                ``[batch, time, F]`` (``nn.Dense``) as the model did before
                it flattened to ``[batch*time, F]``. Untied models without
                dropout only (PTB small).

With ``--malloc``, also ``fused_glibc_malloc``: the fused step under glibc's
default ``malloc`` settings, which ``train.py`` changes
(``trainer.host_memory``); every other variant runs with ``train.py``'s.

After compilation and warm-up, ``--rounds`` rounds; in each round all run
``--steps`` steps in turn, so machine noise hits all alike. Reported: the
median step time over rounds and the ratio to ``fused``.

  python benchmarks/lm_step_speed.py                       # PTB small
  python benchmarks/lm_step_speed.py --config=configs/ptb.py:medium
  python benchmarks/lm_step_speed.py --malloc   # + glibc's malloc defaults
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import ml_collections  # noqa: E402

import lstm_flax  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests'))
import tiny_runs as testing  # noqa: E402
from trainer import compiled, host_memory, partitioning, tasks  # noqa: E402
from trainer import steps as steps_lib  # noqa: E402
from trainer.tasks import lm as language_model  # noqa: E402


class _LogitsLMTask(language_model.LanguageModelTask):
  """The LM task with the unfused loss: logits, then optax's cross-entropy."""

  def logits(self, model, params, carry, batch, dropout_rng):
    return model.apply({'params': params}, batch['inputs'], carry,
                       mask=batch['mask'], deterministic=False,
                       rngs={'dropout': dropout_rng})

  def loss_fn(self, model, params, carry, batch, reset, dropout_rng):
    carry = self.start_carry(carry, reset)
    logits, new_carry = self.logits(model, params, carry, batch, dropout_rng)
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['targets'])
    loss_sum, weight = jnp.sum(losses * batch['mask']), jnp.sum(batch['mask'])
    return (loss_sum / jnp.maximum(weight, 1.0),
            ({'loss_sum': loss_sum, 'weight': weight}, new_carry))


class _Logits3dLMTask(_LogitsLMTask):
  """Embedding -> LSTM -> ``nn.Dense`` over ``[batch, time, F]`` -> optax."""

  def logits(self, model, params, carry, batch, dropout_rng):
    del dropout_rng  # No dropout in the configs this variant is for.
    params = nn.meta.unbox(params)  # Logically partitioned boxes (lstm_flax.axes).
    x = jnp.take(params['embed']['embedding'], batch['inputs'], axis=0)
    lstm = lstm_flax.LSTM(model.hidden_size, num_layers=model.num_layers)
    y, new_carry = lstm.apply({'params': params['lstm']}, x, carry,
                              mask=batch['mask'])
    logits = nn.Dense(model.vocab_size).apply({'params': params['output']}, y)
    return logits, new_carry


def load_config(spec: str) -> ml_collections.ConfigDict:
  """``path/to/config.py[:preset]``, as ``train.py --config`` reads it."""
  path, _, preset = spec.partition(':')
  return testing.load_config(path, preset or None)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/ptb.py:small')
  parser.add_argument('--vocab', type=int, default=10000)
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--malloc', action='store_true',
                      help="also time the fused step with glibc's malloc defaults")
  args = parser.parse_args()
  task = tasks.build(load_config(args.config))
  config = task.config
  partitioner = partitioning.Partitioner(config.model_parallelism,
                                         config.logical_axis_rules)
  steps = compiled.compile_steps(task,
                                 {'vocab_size': args.vocab}, 1000, 10000,
                                 partitioner)
  batch_size, window = config.data.batch_size, config.data.seq_len
  rng = np.random.default_rng(0)
  batch = jax.device_put({
      'inputs': rng.integers(0, args.vocab, (batch_size, window), dtype=np.int32),
      'targets': rng.integers(0, args.vocab, (batch_size, window), dtype=np.int32),
      'mask': np.ones((batch_size, window), np.float32),
  })
  reset = jnp.asarray(False)

  def jit_step(task):
    return jax.jit(functools.partial(
        steps_lib.train_step, model=steps.model, optimizer=steps.optimizer,
        schedule=steps.schedule,
        grad_accum_steps=config.optimizer.grad_accum_steps, task=task),
        donate_argnums=0)

  variants = {'fused': jit_step(steps.task),
              'logits': jit_step(_LogitsLMTask(config))}
  m = config.model
  if not (m.tie_weights or m.proj_size or m.last_layer_size or m.input_dropout_rate
          or m.dropout_rate or m.output_dropout_rate or m.embedding_dropout_rate
          or m.weight_dropout_rate):
    variants['logits_3d'] = jit_step(_Logits3dLMTask(config))
  retain = {name: True for name in variants}
  if args.malloc:
    variants['fused_glibc_malloc'] = variants['fused']
    retain['fused_glibc_malloc'] = False
  states = {name: steps.init(jax.random.PRNGKey(0)) for name in variants}
  losses = {}
  for name, step in variants.items():  # Compile and warm up.
    host_memory.retain_freed_memory(retain[name])
    for _ in range(3):
      states[name], metrics = step(states[name], batch, reset)
    losses[name] = float(metrics['loss_sum'])
  print(f'{jax.devices()[0].device_kind}; config {args.config}; batch '
        f'{batch_size} x {window}; first loss sums {losses}')
  times = {name: [] for name in variants}
  for _ in range(args.rounds):
    for name, step in variants.items():
      host_memory.retain_freed_memory(retain[name])
      for _ in range(2):  # Under this variant's malloc settings.
        states[name], metrics = step(states[name], batch, reset)
      jax.block_until_ready(metrics)
      start = time.perf_counter()
      for _ in range(args.steps):
        states[name], metrics = step(states[name], batch, reset)
      jax.block_until_ready(metrics)
      times[name].append((time.perf_counter() - start) / args.steps)
  base = statistics.median(times['fused'])
  for name, values in times.items():
    median = statistics.median(values)
    print(f'{name:18s} {1e3 * median:8.1f} ms/step  x{median / base:5.2f} of fused  '
          f'(rounds: {", ".join(f"{1e3 * v:.0f}" for v in values)})')


if __name__ == '__main__':
  main()
