"""A seconds-long smoke-test run on a slice of the embedded corpus.

Used by the tests; also a quick check that an installation trains:

  python train.py --config=configs/tiny.py --workdir=/tmp/tiny
"""

from trainer import tasks


def get_config():
  """The tiny config."""
  config = tasks.default_config()

  # 30 steps (an epoch is ~12 steps, so the carry is reset twice).
  config.num_train_steps = 30
  # Every step's training loss is written.
  config.log_every_steps = 1
  # Validation every 10 steps and at the end.
  config.eval_every_steps = 10
  # A checkpoint every 4 steps.
  config.checkpoint_every_steps = 4
  # Keep the last 3 and the best checkpoint.
  config.keep_checkpoints = 3
  config.keep_best_checkpoints = 1
  config.progress_every_secs = 5.0

  # A tiny two-layer LSTM with dropout (so the RNG state matters).
  config.model.embedding_size = 16
  config.model.hidden_size = 16
  config.model.num_layers = 2
  config.model.dropout_rate = 0.1
  config.model.output_dropout_rate = 0.1

  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-2
  config.optimizer.schedule = 'constant'
  config.optimizer.max_grad_norm = 1.0

  # The first 100 lines of each split, at most 300 words.
  config.data.source = 'embedded'
  config.data.max_lines = 100
  config.data.vocab_size = 300
  config.data.batch_size = 8
  config.data.eval_batch_size = 8
  config.data.seq_len = 10
  return config
