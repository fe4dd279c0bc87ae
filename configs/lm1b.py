"""One Billion Word benchmark (TFDS lm1b) with SentencePiece, for a TPU pod.

  python train.py --config=configs/lm1b.py --workdir=gs://bucket/lm1b

A Jozefowicz et al. 2016-style LSTM with projection (LSTMP 8192 -> 1024)
over a 32k SentencePiece vocabulary, whole sentences per row (lm1b is
shuffled sentences, so the carry starts at zero in every batch), bfloat16
compute, Adam with warm-up and inverse-square-root decay. The 'model' mesh
axis splits the 4H = 32768 gate dimension and the vocabulary over 4 chips;
the 'data' axis takes the rest (global batch 1024 on e.g. a v4-128 pod).
"""

from trainer import tasks


def get_config():
  """lm1b sized for a TPU pod."""
  config = tasks.default_config()

  # Optimiser updates (~3 epochs of 30M sentences at batch 1024 = 90k/epoch).
  config.num_train_steps = 250_000
  config.log_every_steps = 100
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 2000
  config.keep_checkpoints = 3
  config.keep_best_checkpoints = 1

  # 2-layer LSTMP-8192-1024, tied 1024-d embeddings.
  config.model.embedding_size = 1024
  config.model.hidden_size = 8192
  config.model.proj_size = 1024
  config.model.num_layers = 2
  config.model.tie_weights = True
  config.model.dropout_rate = 0.1
  config.model.output_dropout_rate = 0.1
  config.model.dtype = 'bfloat16'

  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'inverse_sqrt'
  config.optimizer.warmup_steps = 4000
  config.optimizer.max_grad_norm = 1.0

  # Split 4H and the vocabulary over 4 chips per model replica.
  config.model_parallelism = 4

  config.data.source = 'tfds'
  config.data.tfds_name = 'lm1b'
  config.data.tfds_splits = {'train': 'train', 'valid': 'test', 'test': 'test'}
  # SentencePiece unigram model of 32k pieces, trained on 2M lines.
  config.data.tokenizer = 'sentencepiece'
  config.data.vocab_size = 32_000
  config.data.spm_max_training_lines = 2_000_000
  # Whole sentences (bucketed by length), at most 128 tokens.
  config.data.batching = 'sentences'
  config.data.max_length = 128
  config.data.batch_size = 1024
  config.data.eval_batch_size = 1024
  return config
