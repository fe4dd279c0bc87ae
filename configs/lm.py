"""Quickstart: a word-level LSTM LM on the embedded corpus (no download).

The corpus is the Python language reference shipped with Python
(``pydoc_data.topics``, ~67k training tokens, 4.5k-word vocabulary). On 2
CPU cores it trains in 3.5-4.5 minutes to a validation perplexity of ~84
(a unigram model gets 206).

  python train.py --config=configs/lm.py --workdir=/tmp/lm
"""

from trainer import tasks


def get_config():
  """The quickstart config."""
  config = tasks.default_config()

  # Length: epochs over the ~67k training tokens.
  config.num_epochs = 16
  # Training metrics every this many steps.
  config.log_every_steps = 20
  # Validation loss / perplexity every epoch (0) and at the end.
  config.eval_every_steps = 0
  # Checkpoint every this many steps, at the end and on SIGTERM.
  config.checkpoint_every_steps = 100
  # Progress report (steps/s, ETA) every this many seconds.
  config.progress_every_secs = 30.0

  # A small two-layer LSTM with tied embeddings.
  config.model.embedding_size = 200
  config.model.hidden_size = 200
  config.model.num_layers = 2
  config.model.tie_weights = True
  # Regularisation for a small corpus.
  config.model.dropout_rate = 0.4
  config.model.output_dropout_rate = 0.4
  config.model.input_dropout_rate = 0.15

  # Adam with a short warm-up and cosine decay.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 3e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 50
  config.optimizer.end_lr_fraction = 0.05
  config.optimizer.max_grad_norm = 1.0

  # Data: the embedded corpus, word tokens, truncated-BPTT streams.
  config.data.source = 'embedded'
  config.data.tokenizer = 'word'
  # Words seen fewer than this many times in train become <unk>.
  config.data.min_count = 2
  # Streams per batch (global) and window length.
  config.data.batch_size = 32
  config.data.eval_batch_size = 16
  config.data.seq_len = 35
  return config
