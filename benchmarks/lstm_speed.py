"""Training-step speed of LSTM language models, side by side in one process.

For each shape, the training step (forward, backward, SGD update) of
embedding -> 2-layer LSTM -> softmax over the vocabulary (``--mode=lm``), and of
the LSTM alone (``--mode=lstm``: loss = <outputs, fixed random cotangent>), for

  * ``lstm_flax``          this library (gate-axis weights, hoisted input projection,
                           hand-written backward pass);
  * ``lstm_flax_unrollN``  the same with ``lax.scan(unroll=N)`` (the default,
                           ``lstm_flax``, unrolls 1 step on CPU, 8 on GPU/TPU);
  * ``lstm_flax_autodiff`` the same kernel with its custom VJP switched off;
  * ``lstm_flax_lm``       (``--mode=lm`` only) the library's own
                           ``lstm_flax.models.LanguageModel`` with
                           ``targets=``: output layer and softmax
                           cross-entropy fused (``lstm_flax.losses``), the
                           form the trainer runs;
  * ``minimal_scan``       the floor: a minimal LSTM written here (about 60
                           lines), time-major, input projection hoisted, a
                           plain ``lax.scan`` over ``h @ W_h`` and the gate
                           arithmetic, a custom VJP whose backward computes
                           ``dW_h`` as one whole-sequence product; no masks,
                           dropout or projection. The library must never be
                           slower than it;
  * ``flax_rnn``           stock Flax ``nn.RNN(nn.OptimizedLSTMCell)``;
  * ``torch``              ``torch.nn.LSTM`` (CPU: oneDNN; GPU: cuDNN), when
                           torch is installed (else printed as ``skipped``);
  * ``jax_cudnn``          ``jax.experimental.rnn`` (cuDNN), on GPU only.

Timing: after compilation and warm-up, ``--rounds`` rounds; in each round every
implementation runs ``--steps`` steps in turn (interleaved, so machine noise
hits all alike). Reported: median tokens/s over rounds, the ratio to
``lstm_flax``, and model FLOPs utilisation (MFU): model FLOPs per second over
the float32 matrix-product rate measured here on the same device. Every
implementation allocates under ``train.py``'s ``malloc`` settings
(``trainer/host_memory.py``), or glibc's defaults with ``--glibc_malloc``.

  python benchmarks/lstm_speed.py                    # all shapes, both modes
  python benchmarks/lstm_speed.py --shapes=medium --mode=lm

Only jax, flax and numpy are needed (torch optional); no TensorFlow. On a
machine whose cores are shared with other jobs, run with
``OMP_WAIT_POLICY=PASSIVE``: torch's spinning OpenMP threads otherwise slow
it down up to 100x (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import lstm_flax  # noqa: E402
from trainer import host_memory  # noqa: E402  (ctypes only; no TensorFlow)


@dataclasses.dataclass(frozen=True)
class Shape:
  name: str
  vocab: int
  hidden: int
  batch: int
  time: int
  layers: int = 2


SHAPES = {
    'small': Shape('PTB-small', 10000, 200, 20, 35),
    'medium': Shape('PTB-medium', 10000, 650, 20, 35),
    'wide': Shape('wide', 10000, 1024, 64, 35),
}
LEARNING_RATE = 0.1


def model_flops_per_step(shape: Shape, with_softmax: bool) -> float:
  """Matrix-product FLOPs of one training step (forward + backward = 3x forward)."""
  h = shape.hidden
  lstm = shape.layers * 2 * (h + h) * 4 * h  # x W_x + h W_h per token per layer
  softmax = 2 * h * shape.vocab if with_softmax else 0
  return 3.0 * (lstm + softmax) * shape.batch * shape.time


def matmul_flops_per_second(n: int = 2048, repeats: int = 20) -> float:
  """Measured float32 [n, n] x [n, n] rate on the default JAX device.

  The best of ``repeats`` timings: the rate the device reaches when nothing
  else competes for it, the fair denominator of a utilisation.
  """
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - t0)
  return 2.0 * n**3 / min(times)


# ---------------------------------------------------------------------------
# JAX implementations.
# ---------------------------------------------------------------------------


class _FlaxRNNStack(nn.Module):
  hidden: int
  layers: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.layers):
      x = nn.RNN(nn.OptimizedLSTMCell(self.hidden))(x)
    return x


# The floor (``minimal_scan``): the least an LSTM layer on ``lax.scan`` does.


@jax.custom_vjp
def _minimal_recurrence(gates_x, w_h):  # [T, B, 4H], [H, 4H] -> hs [T, B, H]
  return _minimal_forward(gates_x, w_h)[0]


def _minimal_forward(gates_x, w_h):
  batch, hidden = gates_x.shape[1], w_h.shape[0]

  def step(carry, gx):
    h, c = carry
    i, f, g, o = jnp.split(gx + h @ w_h, 4, axis=-1)  # [B, H] each
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=-1))

  zeros = jnp.zeros((batch, hidden), gates_x.dtype)
  _, (hs, cs, acts) = jax.lax.scan(step, (zeros, zeros), gates_x)
  return hs, (hs, cs, acts, w_h)


def _minimal_backward(residuals, d_hs):
  hs, cs, acts, w_h = residuals
  zeros = jnp.zeros_like(hs[0])
  h_prev = jnp.concatenate([zeros[None], hs[:-1]])  # [T, B, H]
  c_prev = jnp.concatenate([zeros[None], cs[:-1]])

  def step(carry, xs):
    dh, dc = carry
    d_out, act, c, c_p = xs
    dh = dh + d_out
    i, f, g, o = jnp.split(act, 4, axis=-1)
    tanh_c = jnp.tanh(c)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_p * f * (1.0 - f),
                          dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)], axis=-1)
    return (dz @ w_h.T, dc * f), dz  # dz: [B, 4H]

  _, d_gates = jax.lax.scan(step, (zeros, zeros), (d_hs, acts, cs, c_prev), reverse=True)
  return d_gates, jnp.einsum('tbh,tbg->hg', h_prev, d_gates)  # whole-sequence dW_h


_minimal_recurrence.defvjp(_minimal_forward, _minimal_backward)


class _MinimalLSTMStack(nn.Module):
  hidden: int
  layers: int

  @nn.compact
  def __call__(self, x):  # [T, B, in] -> [T, B, H]
    for layer in range(self.layers):
      init = nn.initializers.uniform(2 / self.hidden**0.5)
      w_x = self.param(f'w_x{layer}', init, (x.shape[-1], 4 * self.hidden))
      w_h = self.param(f'w_h{layer}', init, (self.hidden, 4 * self.hidden))
      b = self.param(f'b{layer}', nn.initializers.zeros, (4 * self.hidden,))
      x = _minimal_recurrence(x @ w_x + b, w_h)  # input projection hoisted
    return x


class _LanguageModel(nn.Module):
  shape: Shape
  impl: str
  with_softmax: bool

  @nn.compact
  def __call__(self, tokens):  # [batch, time] int32
    s = self.shape
    embed = nn.Embed(s.vocab, s.hidden)
    if self.impl == 'minimal_scan':  # time-major throughout
      y = _MinimalLSTMStack(s.hidden, s.layers)(embed(tokens.T)).swapaxes(0, 1)
    elif self.impl == 'flax_rnn':
      x = embed(tokens)  # [batch, time, H]
      y = _FlaxRNNStack(s.hidden, s.layers)(x)
    else:
      x = embed(tokens)  # [batch, time, H]
      y, _ = lstm_flax.LSTM(
          s.hidden,
          num_layers=s.layers,
          use_custom_vjp=self.impl != 'lstm_flax_autodiff',
          unroll=int(self.impl[len('lstm_flax_unroll'):])
          if self.impl.startswith('lstm_flax_unroll') else None,
      )(x)
    if not self.with_softmax:
      return y  # [batch, time, H]
    return nn.Dense(s.vocab)(y)  # [batch, time, V]


def _sgd_runner(loss_fn: Callable, params) -> tuple[Callable[[], None], Callable[[], None]]:
  """(run one jit-compiled SGD step in place, wait for it) for a JAX loss."""

  def train_step(params):
    grads = jax.grad(loss_fn)(params)
    return jax.tree_util.tree_map(lambda p, g: p - LEARNING_RATE * g, params, grads)

  train_step = jax.jit(train_step, donate_argnums=0)
  state = {'params': params}

  def run():
    state['params'] = train_step(state['params'])

  def sync():
    jax.block_until_ready(state['params'])

  return run, sync


def _jax_step(shape: Shape, impl: str, with_softmax: bool) -> Callable[[], None]:
  model = _LanguageModel(shape, impl, with_softmax)
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, shape.vocab, (shape.batch, shape.time)), jnp.int32)
  targets = jnp.asarray(rng.integers(0, shape.vocab, (shape.batch, shape.time)), jnp.int32)
  cotangent = jnp.asarray(
      rng.standard_normal((shape.batch, shape.time, shape.hidden)), jnp.float32
  )
  params = model.init(jax.random.key(0), tokens)['params']

  def loss_fn(params):
    out = model.apply({'params': params}, tokens)
    if with_softmax:
      logp = jax.nn.log_softmax(out)
      return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))
    return jnp.sum(out * cotangent)

  return _sgd_runner(loss_fn, params)


def _library_lm_step(shape: Shape) -> tuple[Callable[[], None], Callable[[], None]]:
  """``lstm_flax.models.LanguageModel`` with its fused output loss."""
  from lstm_flax import models  # pylint: disable=g-import-not-at-top

  model = models.LanguageModel(shape.vocab, shape.hidden, shape.hidden, shape.layers)
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, shape.vocab, (shape.batch, shape.time)), jnp.int32)
  targets = jnp.asarray(rng.integers(0, shape.vocab, (shape.batch, shape.time)), jnp.int32)
  params = model.init(jax.random.key(0), tokens)['params']

  def loss_fn(params):
    loss_sum, _ = model.apply({'params': params}, tokens, targets=targets)
    return loss_sum / (shape.batch * shape.time)

  return _sgd_runner(loss_fn, params)


def _jax_cudnn_step(shape: Shape, with_softmax: bool):
  """``jax.experimental.rnn.lstm`` (cuDNN); GPU only."""
  from jax.experimental import rnn  # pylint: disable=g-import-not-at-top

  h, layers = shape.hidden, shape.layers
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, shape.vocab, (shape.batch, shape.time)), jnp.int32)
  targets = jnp.asarray(rng.integers(0, shape.vocab, (shape.batch, shape.time)), jnp.int32)
  cotangent = jnp.asarray(rng.standard_normal((shape.batch, shape.time, h)), jnp.float32)
  n_weights = rnn.get_num_params_in_lstm(h, h, layers, False)
  params = {
      'embed': jax.random.normal(jax.random.key(0), (shape.vocab, h)) * 0.05,
      'lstm': jax.random.uniform(jax.random.key(1), (n_weights,), minval=-0.05, maxval=0.05),
      'out': jax.random.normal(jax.random.key(2), (h, shape.vocab)) * 0.05,
  }
  lengths = jnp.full((shape.batch,), shape.time, jnp.int32)

  def loss_fn(params):
    x = params['embed'][tokens]
    zeros = jnp.zeros((layers, shape.batch, h))
    y, _, _ = rnn.lstm(x, zeros, zeros, params['lstm'], lengths, h, h, layers, 0.0, False)
    if not with_softmax:
      return jnp.sum(y * cotangent)
    logp = jax.nn.log_softmax(y @ params['out'])
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))

  return _sgd_runner(loss_fn, params)


def _torch_step(shape: Shape, with_softmax: bool, device: str):
  import torch  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)

  class TorchLM(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.embed = torch.nn.Embedding(shape.vocab, shape.hidden)
      self.lstm = torch.nn.LSTM(shape.hidden, shape.hidden, shape.layers, batch_first=True)
      self.out = torch.nn.Linear(shape.hidden, shape.vocab)

    def forward(self, tokens):
      y, _ = self.lstm(self.embed(tokens))
      return self.out(y) if with_softmax else y

  model = TorchLM().to(device)
  optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
  gen = torch.Generator().manual_seed(0)
  tokens = torch.randint(0, shape.vocab, (shape.batch, shape.time), generator=gen).to(device)
  targets = torch.randint(0, shape.vocab, (shape.batch, shape.time), generator=gen).to(device)
  cotangent = torch.randn(shape.batch, shape.time, shape.hidden, generator=gen).to(device)

  def run():
    optimizer.zero_grad(set_to_none=True)
    out = model(tokens)
    if with_softmax:
      loss = torch.nn.functional.cross_entropy(out.reshape(-1, shape.vocab), targets.reshape(-1))
    else:
      loss = (out * cotangent).sum()
    loss.backward()
    optimizer.step()

  def sync():
    if device == 'cuda':
      torch.cuda.synchronize()

  return run, sync


def build(impl: str, shape: Shape, with_softmax: bool, on_gpu: bool):
  """Returns (run, sync) or a string saying why the implementation is skipped."""
  if impl == 'torch':
    try:
      import torch  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      return 'skipped (torch not installed; pip install torch)'
    torch.set_num_threads(int(os.environ.get('BENCH_THREADS', '2')))
    if on_gpu and not torch.cuda.is_available():
      return 'skipped (torch has no CUDA here)'
    return _torch_step(shape, with_softmax, 'cuda' if on_gpu else 'cpu')
  if impl == 'jax_cudnn':
    if not on_gpu:
      return 'skipped (GPU only)'
    try:
      return _jax_cudnn_step(shape, with_softmax)
    except Exception as e:  # pylint: disable=broad-except
      return f'skipped ({type(e).__name__}: {e})'.splitlines()[0][:100]
  if impl == 'lstm_flax_lm':
    if not with_softmax:
      return 'skipped (--mode=lm only)'
    return _library_lm_step(shape)
  return _jax_step(shape, impl, with_softmax)


def benchmark(shape: Shape, impls: list[str], with_softmax: bool, on_gpu: bool,
              rounds: int, steps: int, warmup: int) -> dict[str, object]:
  runners = {impl: build(impl, shape, with_softmax, on_gpu) for impl in impls}
  live = {k: v for k, v in runners.items() if not isinstance(v, str)}
  for run, sync in live.values():  # compile + warm up
    for _ in range(warmup):
      run()
    sync()
  per_round: dict[str, list[float]] = {k: [] for k in live}
  for _ in range(rounds):
    for name, (run, sync) in live.items():
      sync()
      t0 = time.perf_counter()
      for _ in range(steps):
        run()
      sync()
      per_round[name].append(shape.batch * shape.time * steps / (time.perf_counter() - t0))
  results: dict[str, object] = {k: v for k, v in runners.items() if isinstance(v, str)}
  for name, rates in per_round.items():
    results[name] = statistics.median(rates)
  return results


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--shapes', default='small,medium,wide')
  parser.add_argument('--mode', default='lm,lstm', help='lm (with softmax), lstm (alone)')
  parser.add_argument(
      '--impls',
      default='lstm_flax,minimal_scan,flax_rnn,torch,lstm_flax_autodiff,lstm_flax_lm,'
      'jax_cudnn',
      help='also lstm_flax_unrollN for an explicit lax.scan unroll',
  )
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--glibc_malloc', action='store_true',
                      help="keep glibc's malloc defaults instead of train.py's "
                           'settings (trainer/host_memory.py), for every implementation')
  args = parser.parse_args(argv)
  if not args.glibc_malloc:
    host_memory.retain_freed_memory()

  on_gpu = jax.default_backend() == 'gpu'
  impls = args.impls.split(',')
  matmul_rate = matmul_flops_per_second(4096 if on_gpu else 2048)
  device = jax.devices()[0].device_kind
  print(f'device: {jax.default_backend()} ({device}), jax {jax.__version__}, '
        f'threads: {os.environ.get("BENCH_THREADS", "2")}, malloc: '
        f'{"glibc defaults" if args.glibc_malloc else "train.py settings"}')
  print(f'measured float32 matmul rate: {matmul_rate / 1e9:.1f} GFLOP/s')
  print('| shape | mode | implementation | tokens/s (median) | vs lstm_flax | MFU |')
  print('|---|---|---|---|---|---|')
  for shape_key in args.shapes.split(','):
    shape = SHAPES[shape_key]
    for mode in args.mode.split(','):
      with_softmax = mode == 'lm'
      results = benchmark(shape, impls, with_softmax, on_gpu, args.rounds, args.steps,
                          args.warmup)
      reference = results.get('lstm_flax')
      flops = model_flops_per_step(shape, with_softmax) / (shape.batch * shape.time)
      for name in impls:
        value = results[name]
        if isinstance(value, str):
          print(f'| {shape.name} | {mode} | {name} | {value} | | |')
          continue
        ratio = f'{value / reference:.2f}x' if isinstance(reference, float) else ''
        mfu = value * flops / matmul_rate
        print(f'| {shape.name} | {mode} | {name} | {value:,.0f} | {ratio} | {mfu:.0%} |')
      sys.stdout.flush()


if __name__ == '__main__':
  main()
