"""WMT17 De->En (TFDS wmt17_translate/de-en) on accelerators.

Sized like Flax's examples/wmt: a 32k joint SentencePiece vocabulary trained
on the training split, pairs up to 256 tokens, ~16k target tokens per global
batch, 100k steps, validation (newstest2016) loss and BLEU every 5k steps
with beam 4 / alpha 0.6. The model is a GNMT-style LSTM: a 2-layer
bidirectional encoder (2 x 512) and a 2-layer 1024 decoder with Luong
attention and input feeding, bfloat16 matmuls.

  python train.py --config=configs/mt.py --workdir=gs://my-bucket/wmt17

TFDS must be able to prepare (or find in ``data.tfds_data_dir``) the
dataset. Scores on the test split afterwards:

  python train.py --config=configs/mt.py --workdir=gs://my-bucket/wmt17 \
      --config.mode=evaluate --config.eval_split=test --config.checkpoint=best
"""

from trainer import tasks


def get_config():
  """The WMT17 De->En config."""
  config = tasks.default_config('translation')

  config.num_train_steps = 100_000
  config.log_every_steps = 100
  config.eval_every_steps = 5_000
  config.checkpoint_every_steps = 5_000
  config.progress_every_secs = 120.0

  config.model.embedding_size = 512
  config.model.hidden_size = 1024
  config.model.encoder_hidden_size = 512
  config.model.encoder_layers = 2
  config.model.decoder_layers = 2
  config.model.bidirectional_encoder = True
  config.model.attention = 'general'
  config.model.input_feeding = True
  config.model.share_embeddings = True
  config.model.tie_output = False
  config.model.dropout_rate = 0.2
  config.model.dtype = 'bfloat16'
  config.label_smoothing = 0.1

  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'inverse_sqrt'
  config.optimizer.warmup_steps = 4_000
  config.optimizer.b2 = 0.98
  config.optimizer.max_grad_norm = 1.0

  config.decode.method = 'beam'
  config.decode.beam_size = 4
  config.decode.alpha = 0.6
  config.decode.max_length = 256

  config.data.source = 'tfds'
  config.data.tfds_name = 'wmt17_translate/de-en'
  config.data.tfds_train_split = 'train'
  config.data.tfds_eval_split = 'validation'
  config.data.source_lang = 'de'
  config.data.target_lang = 'en'
  config.data.vocab_size = 32_000
  config.data.spm_max_training_lines = 1_000_000
  config.data.max_length = 256
  config.data.tokens_per_batch = 16_384
  config.data.eval_tokens_per_batch = 16_384
  config.data.batch_size_multiple = 8
  return config
