"""AWD-LSTM-style word LM (Merity et al. 2018) on PTB or WikiText-2.

  python train.py --config=configs/awd_lstm.py:ptb --workdir=/tmp/awd_ptb
  python train.py --config=configs/awd_lstm.py:wikitext2 --workdir=/tmp/awd_wt2

AWD-LSTM's three LSTM layers of 1150, 1150 and 400 units (the last one's
bounded outputs feed the tied 400-d embedding), its dropouts (embedding,
locked input / hidden / output dropout, DropConnect on the recurrent
weights), random BPTT windows and averaged SGD. The data directories default
to ``../shared/data/ptb`` and ``../shared/data/wikitext-2`` beside the
repository. The paper trains 500 (PTB) / 750 (WikiText-2) epochs and reaches
validation perplexity 60.0 / 68.6 before its fine-tuning and cache stages.
"""

import os

from trainer import tasks

_DATA = os.path.normpath(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..',
    'shared', 'data'))
# dataset: (data dir, files, batch size, input dropout, hidden dropout,
#           epochs)
_DATASETS = {
    'ptb': (os.path.join(_DATA, 'ptb'),
            {'train': 'ptb.train.txt', 'valid': 'ptb.valid.txt',
             'test': 'ptb.test.txt'}, 20, 0.4, 0.25, 500),
    'wikitext2': (os.path.join(_DATA, 'wikitext-2'),
                  {'train': 'train.txt', 'valid': 'valid.txt',
                   'test': 'test.txt'}, 80, 0.65, 0.2, 750),
}


def get_config(dataset: str = 'ptb'):
  """AWD-LSTM's PTB / WikiText-2 hyper-parameters (the paper's README)."""
  if dataset not in _DATASETS:
    raise ValueError(f'Unknown awd_lstm dataset {dataset!r}; use one of '
                     f'{list(_DATASETS)}.')
  data_dir, files, batch_size, dropouti, dropouth, epochs = _DATASETS[dataset]
  config = tasks.default_config()
  # Epochs over the training tokens (PTB ~660 steps each, WikiText-2 ~370).
  config.num_epochs = epochs
  config.log_every_steps = 100
  # Validation every epoch (0) and at the end.
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 2000
  # 400-d tied embeddings; 3 layers: 1150, 1150, then 400 units.
  config.model.embedding_size = 400
  config.model.hidden_size = 1150
  config.model.last_layer_size = 400
  config.model.num_layers = 3
  config.model.tie_weights = True
  # AWD-LSTM dropouts: dropoute, dropouti, dropouth, dropout, wdrop.
  config.model.embedding_dropout_rate = 0.1
  config.model.input_dropout_rate = dropouti
  config.model.dropout_rate = dropouth
  config.model.output_dropout_rate = 0.4
  config.model.weight_dropout_rate = 0.5
  # One mask per sequence (locked dropout).
  config.model.variational_dropout = True
  config.model.init_scale = 0.1
  # SGD at lr 30, clip 0.25, L2 1.2e-6 (AWD-LSTM's loss is a per-token mean,
  # like ours); averaged SGD from update 35000 (AWD-LSTM switches when
  # validation stops improving, in its ~50th-100th epoch).
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 30.0
  config.optimizer.schedule = 'constant'
  config.optimizer.max_grad_norm = 0.25
  config.optimizer.weight_decay = 1.2e-6
  config.optimizer.averaging_start_step = 35000
  # Word-level token files (<unk> in the text, <eos> at line ends).
  config.data.source = 'text_files'
  config.data.data_dir = data_dir
  config.data.files = files
  config.data.tokenizer = 'word'
  # `batch_size` streams, random BPTT windows around 70 tokens.
  config.data.batch_size = batch_size
  config.data.eval_batch_size = 10
  config.data.seq_len = 70
  config.data.random_window = True
  return config
