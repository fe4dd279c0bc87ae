"""Multi30k De->En: attention LSTM encoder-decoder on 2 CPU cores.

The data are the Multi30k files ``train.de/en`` and ``val.de/en`` (29,000 and
1,014 sentence pairs) in ``data.data_dir`` (default ``../shared/data/multi30k``
beside the repository), with one joint SentencePiece vocabulary.

  python train.py --config=configs/multi30k.py --workdir=/tmp/multi30k
  python translate.py --workdir=/tmp/multi30k --input=sentences.de
  python train.py --config=configs/multi30k.py --workdir=/tmp/multi30k \
      --config.mode=evaluate --config.checkpoint=best

An epoch is 301 batches of ~1.5k target tokens. The full run (12 epochs,
3,612 steps, 13 validations with beam 5) took 94.6 min wall on 2 CPU cores
(0.6-0.95 steps/s on a noisy, partly shared machine; ~45 s per validation)
and reached validation BLEU 42.81 (chrF 62.45, perplexity 4.85); BLEU passed
36 at epoch 4 (33 min) and was 42.76 at 86 min. Curve: docs/multi30k_bleu.png.

``configs/multi30k.py:tiny`` is a seconds-long model on the same layout (the
tests use it on a toy corpus).
"""

import pathlib

from trainer import tasks

DATA_DIR = str(pathlib.Path(__file__).resolve().parents[2] / 'shared' /
               'data' / 'multi30k')


def get_config(variant: str = 'default'):
  """The Multi30k config; ``variant`` 'tiny' for smoke tests."""
  config = tasks.default_config('translation')

  # Length: epochs over the 29k training pairs.
  config.num_epochs = 12
  config.log_every_steps = 50
  # Validation loss / perplexity / BLEU / chrF every epoch (0) and at the end.
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 500
  config.progress_every_secs = 60.0

  # Bidirectional 1-layer encoder (2 x 256), 1-layer decoder (256) with Luong
  # general attention and input feeding; one embedding for both languages,
  # tied to the output projection.
  config.model.embedding_size = 256
  config.model.hidden_size = 256
  config.model.encoder_hidden_size = 256
  config.model.encoder_layers = 1
  config.model.decoder_layers = 1
  config.model.bidirectional_encoder = True
  config.model.attention = 'general'
  config.model.input_feeding = True
  config.model.share_embeddings = True
  config.model.tie_output = True
  config.model.dropout_rate = 0.3
  config.label_smoothing = 0.1

  # Adam, warm-up then cosine decay.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 3e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 200
  config.optimizer.end_lr_fraction = 0.02
  config.optimizer.max_grad_norm = 1.0

  # Beam search for validation BLEU (and translate.py's default).
  config.decode.method = 'beam'
  config.decode.beam_size = 5
  config.decode.alpha = 0.6

  # Data: Multi30k files, joint SentencePiece.
  config.data.source = 'parallel_text'
  config.data.data_dir = DATA_DIR
  config.data.train_prefix = 'train'
  config.data.eval_prefix = 'val'
  config.data.source_lang = 'de'
  config.data.target_lang = 'en'
  config.data.vocab_size = 8000
  config.data.max_length = 64
  # ~2k target tokens per batch (~120 sentence pairs).
  config.data.tokens_per_batch = 2048
  config.data.eval_tokens_per_batch = 4096
  config.data.batch_size_multiple = 8
  config.data.bucket_boundaries = (16, 24, 32, 48, 64)

  if variant == 'tiny':
    _tiny(config)
  elif variant != 'default':
    raise ValueError(f"Unknown variant {variant!r}; use 'default' or 'tiny'.")
  return config


def _tiny(config):
  """A seconds-long model (tests and smoke runs)."""
  config.num_train_steps = 40
  config.num_epochs = 0
  config.log_every_steps = 1
  config.eval_every_steps = 20
  config.checkpoint_every_steps = 10
  config.keep_checkpoints = 3
  config.progress_every_secs = 5.0
  config.model.embedding_size = 32
  config.model.hidden_size = 32
  config.model.encoder_hidden_size = 16
  config.model.encoder_layers = 1
  config.model.decoder_layers = 1
  config.model.tie_output = True
  config.model.dropout_rate = 0.1
  config.optimizer.learning_rate = 1e-2
  config.optimizer.schedule = 'constant'
  config.optimizer.warmup_steps = 0
  # Greedy decoding compiles fastest.
  config.decode.method = 'greedy'
  config.decode.max_length = 32
  # Multi30k's text has 106 distinct characters: SentencePiece needs at
  # least that many pieces (plus 4 special ones).
  config.data.vocab_size = 256
  config.data.max_length = 24
  config.data.max_eval_length = 24
  config.data.tokens_per_batch = 256
  config.data.eval_tokens_per_batch = 256
  config.data.batch_size_multiple = 4
  # One bucket: one compiled training step.
  config.data.bucket_boundaries = (24,)
