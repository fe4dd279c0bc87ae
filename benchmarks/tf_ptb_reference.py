"""An independent TensorFlow reference for the Zaremba et al. PTB recipe.

A port of the TensorFlow tutorial's ``ptb_word_lm.py`` (TF 1.x) to TF 2
eager + ``tf.function``, written from the tutorial, not from this library,
so that ``configs/ptb.py`` can be checked against it at a size that trains
on a CPU:

  python benchmarks/tf_ptb_reference.py --hidden=200 --epochs=8 \
      --decay_after=4 --out=/tmp/tf_ref.jsonl

What it keeps from the tutorial (and from Zaremba's Lua code):

* the reader: ``text.replace('\\n', '<eos>').split()``, ``batch_size``
  streams of ``len // batch_size`` tokens, ``(stream_len - 1) // num_steps``
  windows an epoch, the state carried from window to window and zeroed at
  the start of every epoch (training and validation);
* every variable uniform in ``[-init_scale, init_scale]`` (``--zero_lstm_bias``
  keeps the tutorial's zero LSTM biases instead of the Lua code's uniform
  ones), no forget bias;
* dropout (``tf.nn.dropout``, a new mask every step) on the embeddings and
  on every layer's output (the tutorial's ``DropoutWrapper``);
* the cost summed over the window and averaged over the batch, gradients
  clipped by ``tf.clip_by_global_norm`` (the embedding's gradient is
  ``IndexedSlices``, as in the tutorial) and plain SGD at
  ``lr / lr_decay_factor ** max(0, epoch + 1 - decay_after)``.

It prints and (``--out``) writes one JSON line an epoch: training perplexity
(with dropout, averaged over the epoch, as the tutorial prints it),
validation perplexity and the mean global gradient norm. It needs
TensorFlow, which this project's input pipeline already installs.
"""

from __future__ import annotations

import collections
import json
import math
import os
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DATA = os.path.normpath(os.path.join(_REPO, '..', 'shared', 'data', 'ptb'))

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (not at import, so tests can import this file)."""
  flags.DEFINE_string('data_dir', _DATA, 'Directory with ptb.train.txt and ptb.valid.txt.')
  flags.DEFINE_integer('hidden', 650, 'LSTM units and embedding size.')
  flags.DEFINE_integer('layers', 2, 'LSTM layers.')
  flags.DEFINE_integer('batch_size', 20, 'Parallel streams.')
  flags.DEFINE_integer('num_steps', 35, 'Truncated-BPTT window.')
  flags.DEFINE_float('init_scale', 0.05, 'Uniform init range.')
  flags.DEFINE_float('keep_prob', 0.5, 'Dropout keep probability.')
  flags.DEFINE_float('learning_rate', 1.0, 'SGD learning rate.')
  flags.DEFINE_integer('decay_after', 6, 'Epochs at the full learning rate.')
  flags.DEFINE_float('lr_decay_factor', 1.2, 'Divisor of the learning rate every later epoch.')
  flags.DEFINE_integer('epochs', 39, 'Epochs.')
  flags.DEFINE_float('max_grad_norm', 5.0, 'Global-norm clip of the summed cost.')
  flags.DEFINE_bool('zero_lstm_bias', False, "The tutorial's zero LSTM biases.")
  flags.DEFINE_integer('seed', 0, 'TF global seed.')
  flags.DEFINE_string('out', '', 'JSON-lines file for the per-epoch figures.')
  flags.DEFINE_bool('xla', True, 'Compile the steps with XLA.')
  flags.DEFINE_integer('max_windows', 0, 'Windows an epoch (0: all); for smoke runs.')


def read_words(path: str) -> list[str]:
  with tf.io.gfile.GFile(path, 'r') as f:
    return f.read().replace('\n', '<eos>').split()


def build_vocab(words: list[str]) -> dict[str, int]:
  counts = collections.Counter(words)
  ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  return {word: i for i, (word, _) in enumerate(ordered)}


def streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
  """``[batch_size, len // batch_size]`` int32, the tutorial's ptb_producer."""
  stream_len = len(ids) // batch_size
  return ids[:batch_size * stream_len].reshape(batch_size, stream_len)


class ReferenceLM(tf.Module):
  """Embedding -> LSTM layers -> softmax, the tutorial's PTBModel."""

  def __init__(self, vocab_size: int, hidden: int, layers: int,
               init_scale: float, zero_lstm_bias: bool):
    super().__init__()
    init = tf.random_uniform_initializer(-init_scale, init_scale)
    self.hidden = hidden
    self.embedding = tf.Variable(init([vocab_size, hidden]), name='embedding')
    self.kernels = [tf.Variable(init([2 * hidden, 4 * hidden]), name=f'kernel_{l}')
                    for l in range(layers)]
    self.biases = [tf.Variable(tf.zeros([4 * hidden]) if zero_lstm_bias
                               else init([4 * hidden]), name=f'bias_{l}')
                   for l in range(layers)]
    self.softmax_w = tf.Variable(init([hidden, vocab_size]), name='softmax_w')
    self.softmax_b = tf.Variable(init([vocab_size]), name='softmax_b')

  def cost(self, x, y, state, keep_prob: float):
    """Summed-over-time, batch-mean cross-entropy and the final state.

    x, y: int32 [batch, time]; state: [layers, 2, batch, hidden] (c, h).
    """
    batch, num_steps = x.shape
    training = keep_prob < 1.0
    inputs = tf.nn.embedding_lookup(self.embedding, x)  # [batch, time, hidden]
    if training:
      inputs = tf.nn.dropout(inputs, rate=1.0 - keep_prob)
    new_state = []
    for layer, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
      c, h = state[layer][0], state[layer][1]
      w_x, w_h = kernel[:self.hidden], kernel[self.hidden:]
      # x @ W_x for every step at once (BasicLSTMCell's concat([x, h]) @ W
      # split in two; the same sum).
      projected = tf.reshape(
          tf.matmul(tf.reshape(inputs, [-1, self.hidden]), w_x),
          [batch, num_steps, 4 * self.hidden]) + bias
      outputs = []
      for t in range(num_steps):
        gates = projected[:, t] + tf.matmul(h, w_h)
        i, j, f, o = tf.split(gates, 4, axis=1)
        c = c * tf.sigmoid(f) + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
        outputs.append(h)
      new_state.append(tf.stack([c, h]))
      inputs = tf.stack(outputs, axis=1)  # [batch, time, hidden]
      if training:
        inputs = tf.nn.dropout(inputs, rate=1.0 - keep_prob)
    logits = tf.matmul(tf.reshape(inputs, [-1, self.hidden]), self.softmax_w) + self.softmax_b
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.reshape(y, [-1]), logits=logits)  # [batch * time]
    return tf.reduce_sum(losses) / batch, tf.stack(new_state)


def main(argv):
  del argv
  tf.random.set_seed(FLAGS.seed)
  train_words = read_words(os.path.join(FLAGS.data_dir, 'ptb.train.txt'))
  vocab = build_vocab(train_words)
  to_ids = lambda words: np.array([vocab[w] for w in words], np.int32)
  train = streams(to_ids(train_words), FLAGS.batch_size)
  valid = streams(to_ids(read_words(os.path.join(FLAGS.data_dir, 'ptb.valid.txt'))),
                  FLAGS.batch_size)
  model = ReferenceLM(len(vocab), FLAGS.hidden, FLAGS.layers, FLAGS.init_scale,
                      FLAGS.zero_lstm_bias)
  variables = model.trainable_variables
  state_shape = [FLAGS.layers, 2, FLAGS.batch_size, FLAGS.hidden]
  print(f'vocab {len(vocab)}, parameters {sum(int(np.prod(v.shape)) for v in variables):,}')

  @tf.function(jit_compile=FLAGS.xla)
  def train_step(x, y, state, lr):
    with tf.GradientTape() as tape:
      cost, state = model.cost(x, y, state, FLAGS.keep_prob)
    grads = tape.gradient(cost, variables)
    grads, norm = tf.clip_by_global_norm(grads, FLAGS.max_grad_norm)
    for var, grad in zip(variables, grads):
      if isinstance(grad, tf.IndexedSlices):
        var.scatter_sub(tf.IndexedSlices(lr * grad.values, grad.indices))
      else:
        var.assign_sub(lr * grad)
    return cost, state, norm

  @tf.function(jit_compile=FLAGS.xla)
  def eval_step(x, y, state):
    return model.cost(x, y, state, 1.0)

  def run_epoch(data, step_fn, *args):
    num_windows = (data.shape[1] - 1) // FLAGS.num_steps
    if FLAGS.max_windows:
      num_windows = min(num_windows, FLAGS.max_windows)
    state = tf.zeros(state_shape)
    cost_sum, norms = 0.0, []
    for i in range(num_windows):
      s = i * FLAGS.num_steps
      x = data[:, s:s + FLAGS.num_steps]
      y = data[:, s + 1:s + FLAGS.num_steps + 1]
      cost, state, *norm = step_fn(x, y, state, *args)
      cost_sum += float(cost)
      norms += [float(n) for n in norm]
    return math.exp(cost_sum / (num_windows * FLAGS.num_steps)), norms

  out = tf.io.gfile.GFile(FLAGS.out, 'w') if FLAGS.out else None
  start = time.time()
  for epoch in range(FLAGS.epochs):
    lr = FLAGS.learning_rate / FLAGS.lr_decay_factor ** max(0, epoch + 1 - FLAGS.decay_after)
    train_ppl, norms = run_epoch(train, train_step, tf.constant(lr, tf.float32))
    valid_ppl, _ = run_epoch(valid, eval_step)
    row = dict(epoch=epoch + 1, learning_rate=lr, train_perplexity=train_ppl,
               valid_perplexity=valid_ppl, grad_norm=float(np.mean(norms)),
               seconds=time.time() - start)
    print(json.dumps(row), flush=True)
    if out:
      out.write(json.dumps(row) + '\n')
      out.flush()


if __name__ == '__main__':
  define_flags()
  app.run(main)
