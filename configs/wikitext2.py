"""WikiText-2 word LM, AWD-LSTM style (Merity et al. 2018).

  python train.py --config=configs/wikitext2.py --workdir=/tmp/wt2

Three LSTM layers with a projection to the tied 400-d embedding (LSTMP
instead of AWD-LSTM's smaller last layer), AWD-LSTM's dropouts (embedding,
locked input / hidden / output dropout, DropConnect on the recurrent
weights), random BPTT windows and averaged SGD. The data directory defaults
to ``../shared/data/wikitext-2`` (``train.txt``, ``valid.txt``).
"""

import os

from trainer import config_lib

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.normpath(
    os.path.join(_REPO, '..', 'shared', 'data', 'wikitext-2'))


def get_config():
  """AWD-LSTM-style WikiText-2 config."""
  config = config_lib.default_config()

  # Epochs over the 2.09M training tokens (~370 steps each).
  config.num_epochs = 250
  config.log_every_steps = 100
  # Validation every epoch (0) and at the end.
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 2000

  # 400-d tied embeddings, 3 layers of 1150 units projected to 400.
  config.model.embedding_size = 400
  config.model.hidden_size = 1150
  config.model.proj_size = 400
  config.model.num_layers = 3
  config.model.tie_weights = True
  # AWD-LSTM dropouts: dropoute, dropouti, dropouth, dropout, wdrop.
  config.model.embedding_dropout_rate = 0.1
  config.model.input_dropout_rate = 0.65
  config.model.dropout_rate = 0.2
  config.model.output_dropout_rate = 0.4
  config.model.weight_dropout_rate = 0.5
  # One mask per sequence (locked dropout).
  config.model.variational_dropout = True
  config.model.init_scale = 0.1

  # SGD at lr 30, clip 0.25, L2 1.2e-6; averaged SGD from update 35000
  # (~epoch 95; AWD-LSTM switches when validation stops improving).
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 30.0
  config.optimizer.schedule = 'constant'
  config.optimizer.max_grad_norm = 0.25
  config.optimizer.weight_decay = 1.2e-6
  config.optimizer.averaging_start_step = 35000

  # WikiText-2 token files: 33,278 words.
  config.data.source = 'text_files'
  config.data.data_dir = DATA_DIR
  config.data.files = {'train': 'train.txt', 'valid': 'valid.txt',
                       'test': 'test.txt'}
  config.data.tokenizer = 'word'
  # 80 streams, random BPTT windows around 70 tokens.
  config.data.batch_size = 80
  config.data.eval_batch_size = 10
  config.data.seq_len = 70
  config.data.random_window = True
  return config
