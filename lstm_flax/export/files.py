"""The layout of an export directory: its format name, version and file names."""

FORMAT = 'lstm_flax.export'
FORMAT_VERSION = 1
MODEL_FILE = 'model.json'
PARAMS_FILE = 'params.safetensors'
CONFIG_FILE = 'config.json'
CARD_FILE = 'MODEL_CARD.md'
TOKENIZER_DIR = 'tokenizer'
TORCH_FILE = 'torch_state_dict.safetensors'
SERVING_FILE = 'generate.jax_exported'
