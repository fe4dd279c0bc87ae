"""Penn Treebank word LM: Zaremba et al. 2014's small / medium / large.

  python train.py --config=configs/ptb.py:medium --workdir=/tmp/ptb_medium

The data directory defaults to ``../shared/data/ptb`` beside the repository
(``ptb.train.txt``, ``ptb.valid.txt``; the test file is held out). Reported
validation perplexities (Zaremba et al., Table 1): small ~120, medium 86.2,
large 82.2.
"""

import os

from trainer import tasks

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.normpath(os.path.join(_REPO, '..', 'shared', 'data', 'ptb'))

# preset: (hidden size, window, init scale, dropout, decay after epochs,
#          lr divisor, epochs, max grad norm)
_PRESETS = {
    'small': (200, 20, 0.1, 0.0, 4, 2.0, 13, 5.0),
    'medium': (650, 35, 0.05, 0.5, 6, 1.2, 39, 5.0),  # TF's tutorial: 1.25.
    'large': (1500, 35, 0.04, 0.65, 14, 1.15, 55, 10.0),
}


def get_config(preset='medium'):
  """Zaremba et al. 2014, 'Recurrent Neural Network Regularization'."""
  if preset not in _PRESETS:
    raise ValueError(f'Unknown ptb preset {preset!r}; use one of {list(_PRESETS)}.')
  (hidden, window, init_scale, dropout, decay_after, divisor, epochs,
   max_norm) = _PRESETS[preset]
  config = tasks.default_config()

  # Epochs over the 929k training tokens.
  config.num_epochs = epochs
  # Training metrics every this many steps.
  config.log_every_steps = 200
  # Validation every epoch (0) and at the end.
  config.eval_every_steps = 0
  # Checkpoint every this many steps (an epoch is ~1300-2300 steps).
  config.checkpoint_every_steps = 1000

  # Two LSTM layers of `hidden` units, embeddings of the same size, untied.
  config.model.embedding_size = hidden
  config.model.hidden_size = hidden
  config.model.num_layers = 2
  config.model.tie_weights = False
  # Dropout on the embeddings, between the layers and on the outputs
  # (non-recurrent connections only).
  config.model.input_dropout_rate = dropout
  config.model.dropout_rate = dropout
  config.model.output_dropout_rate = dropout
  # Every parameter uniform in [-init_scale, init_scale].
  config.model.init_scale = init_scale

  # Plain SGD at learning rate 1, divided by `divisor` every epoch after
  # `decay_after` epochs; gradients clipped to global norm `max_norm`.
  # Zaremba's cost is summed over the `window` steps of a batch (averaged over
  # the batch); ours is the mean per token, whose gradient is `window` times
  # smaller. lr * clip(window * g, max_norm) == (lr * window) *
  # clip(g, max_norm / window), so these two lines are the paper's update.
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 1.0 * window
  config.optimizer.schedule = 'zaremba'
  config.optimizer.decay_after_epochs = decay_after
  config.optimizer.lr_decay_factor = divisor
  config.optimizer.max_grad_norm = max_norm / window

  # PTB text files: 10k words (<unk> is in the text), <eos> at line ends.
  config.data.source = 'text_files'
  config.data.data_dir = DATA_DIR
  config.data.files = {'train': 'ptb.train.txt', 'valid': 'ptb.valid.txt',
                       'test': 'ptb.test.txt'}
  config.data.tokenizer = 'word'
  # 20 streams, truncated BPTT over `window` steps.
  config.data.batch_size = 20
  # Validation also over 20 streams, as in Zaremba's code and the TF tutorial
  # (fewer streams score a little better: 120.03 with 10 against 120.11 with
  # 20, PTB small).
  config.data.eval_batch_size = 20
  config.data.seq_len = window
  return config
