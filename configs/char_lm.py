"""Character LM on Tiny Shakespeare (Karpathy's char-rnn data), in bits/char.

  # TFDS (tiny_shakespeare prepared or downloadable):
  python train.py --config=configs/char_lm.py --workdir=/tmp/char
  # A local copy of input.txt, split as TFDS does (90 / 5 / 5 %):
  python tools/split_text.py --input=../shared/data/tiny_shakespeare/input.txt \
      --output_dir=/tmp/tiny_shakespeare
  python train.py --config=configs/char_lm.py:local --workdir=/tmp/char \
      --config.data.data_dir=/tmp/tiny_shakespeare
"""

from trainer import tasks


def get_config(source='tfds'):
  """char-rnn-sized 2-layer LSTM over characters."""
  if source not in ('tfds', 'local'):
    raise ValueError(f"char_lm source {source!r}: use 'tfds' or 'local'.")
  config = tasks.default_config()

  # Epochs over the ~1M training characters (~245 steps of 32 x 128 each).
  config.num_epochs = 20
  config.log_every_steps = 100
  # Validation (loss, perplexity, bits per character) every 1000 steps.
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000

  # 2 layers of 512 units over 64-d character embeddings.
  config.model.embedding_size = 64
  config.model.hidden_size = 512
  config.model.num_layers = 2
  # Dropout between the layers and on the outputs. Measured on the TFDS
  # validation slice (H200, 20 epochs; README Results): 0.2 overfits after
  # epoch 8 (best 2.016 bits/char, last 2.109); 0.5 is best at epoch 16
  # (1.992) and ends at 1.999.
  config.model.dropout_rate = 0.5
  config.model.output_dropout_rate = 0.5

  # Adam 2e-3 with warm-up and cosine decay.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 2e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 200
  config.optimizer.end_lr_fraction = 0.05
  config.optimizer.max_grad_norm = 5.0

  if source == 'tfds':
    # TFDS tiny_shakespeare: train / validation / test of one string each.
    config.data.source = 'tfds'
    config.data.tfds_name = 'tiny_shakespeare'
  else:
    # train.txt / valid.txt / test.txt from `python tools/split_text.py`.
    config.data.source = 'text_files'
    config.data.data_dir = '/tmp/tiny_shakespeare'
  # One id per character (newline is the end-of-line token).
  config.data.tokenizer = 'char'
  # 32 streams, 128-character windows.
  config.data.batch_size = 32
  config.data.eval_batch_size = 16
  config.data.seq_len = 128
  return config
