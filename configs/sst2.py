"""SST-2 sentence-level sentiment: a (bi)LSTM classifier on 2 CPU cores.

The data are ``stsa.binary.train`` (6,920 sentences) and ``stsa.binary.dev``
(872) in ``data.data_dir`` (default ``../shared/data/sst2`` beside the
repository), one ``LABEL SENTENCE`` per line; the test split is held out, so
validation is the dev split.

  python train.py --config=configs/sst2.py --workdir=/tmp/sst2
  python classify.py --workdir=/tmp/sst2 --input=sentences.txt
  python train.py --config=configs/sst2.py --workdir=/tmp/sst2 \
      --config.mode=evaluate --config.checkpoint=best

``configs/sst2.py:pretrained`` starts the embedding and the forward LSTM
from a language model trained with this project's PTB config (ULMFiT-style
transfer; the classifier takes the language model's sizes, and maps its
embedding rows onto its own vocabulary by word):

  python train.py --config=configs/ptb.py:small --workdir=/tmp/ptb_small \
      --config.num_epochs=6
  python train.py --config=configs/sst2.py:pretrained --workdir=/tmp/sst2_lm \
      --config.init_from=/tmp/ptb_small
"""

import pathlib

from ml_collections import config_dict

from trainer import tasks

DATA_DIR = str(pathlib.Path(__file__).resolve().parents[2] / 'shared' /
               'data' / 'sst2')


def get_config(variant: str = 'scratch'):
  """The SST-2 config: 'scratch' (default) or 'pretrained'."""
  if variant not in ('scratch', 'pretrained'):
    raise ValueError(f"Unknown sst2 variant {variant!r}; use 'scratch' or "
                     "'pretrained'.")
  config = tasks.default_config('classification')

  # Epochs over the 6,920 training sentences (216 batches each).
  config.num_epochs = 10
  config.log_every_steps = 50
  # Validation accuracy on dev every epoch (0) and at the end; the best
  # checkpoint is the one with the highest dev accuracy.
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 1000
  config.progress_every_secs = 60.0

  # Bidirectional LSTM (2 x 128) over 300-d word embeddings, max-pooled over
  # time.
  config.model.embedding_size = 300
  config.model.hidden_size = 128
  config.model.num_layers = 1
  config.model.bidirectional = True
  config.model.pooling = 'max'
  # Dropout on the embeddings, and on the pooled features before the output.
  # (Measured on dev: word dropout 0.25 and dropout 0.5 beat 0.1 / 0.3.)
  config.model.embedding_dropout_rate = 0.25
  config.model.input_dropout_rate = 0.5
  config.model.output_dropout_rate = 0.5

  # Adam, constant learning rate after a short warm-up; clipped gradients.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 2e-3
  config.optimizer.schedule = 'constant'
  config.optimizer.warmup_steps = 100
  config.optimizer.max_grad_norm = 5.0

  # SST-2 files: lower-cased, tokenized; every training word is in the
  # vocabulary (dev words never seen in training are <unk>).
  config.data.source = 'labelled_text'
  config.data.data_dir = DATA_DIR
  config.data.files = {'train': 'stsa.binary.train', 'valid': 'stsa.binary.dev'}
  config.data.tokenizer = 'word'
  config.data.min_count = 1
  config.data.batch_size = 32
  config.data.eval_batch_size = 128
  config.data.max_length = 64

  if variant == 'pretrained':
    # The language model's workdir (--config.init_from=...) gives the
    # tokenizer, the embedding and the forward LSTM; the sizes are those of
    # configs/ptb.py:small (2 x 200).
    config.init_from = config_dict.placeholder(str)  # Required.
    config.init_from_checkpoint = 'best'
    # This run's own vocabulary (PTB's 10k words miss 27% of SST-2's tokens);
    # words PTB knows start from the language model's rows. Dev accuracy,
    # best epoch: 78.2% against 76.0% with the language model's vocabulary.
    config.init_from_vocabulary = 'data'
    config.model.embedding_size = 200
    config.model.hidden_size = 200
    config.model.num_layers = 2
    config.model.dropout_rate = 0.5
    config.optimizer.learning_rate = 1e-3
  return config
