"""The layout of an export directory: its format name, version and file names."""

from lstm_flax import tokenizer as tokenizer_lib

FORMAT = 'lstm_flax.export'
FORMAT_VERSION = 1
MODEL_FILE = 'model.json'
PARAMS_FILE = 'params.safetensors'
CONFIG_FILE = 'config.json'
CARD_FILE = 'MODEL_CARD.md'
TOKENIZER_DIR = tokenizer_lib.TOKENIZER_DIR  # As in a run's workdir.
TORCH_FILE = 'torch_state_dict.safetensors'
SERVING_FILE = 'generate.jax_exported'
