"""WikiText-2 word LM with Zaremba et al.'s PTB models (default: medium).

  python train.py --config=configs/wikitext2.py:medium --workdir=/tmp/wt2

The PTB presets of ``configs/ptb.py`` (2 x 650, dropout 0.5, SGD with the
paper's schedule) on WikiText-2's 2.09M training tokens and 33,278 words in
``../shared/data/wikitext-2`` (``train.txt``, ``valid.txt``). For the
AWD-LSTM-style model see ``configs/awd_lstm.py:wikitext2``.
"""

import importlib.util
import os

_CONFIGS = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.normpath(
    os.path.join(_CONFIGS, '..', '..', 'shared', 'data', 'wikitext-2'))


def _ptb_config(preset: str):
  spec = importlib.util.spec_from_file_location(
      'configs_ptb', os.path.join(_CONFIGS, 'ptb.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def get_config(preset: str = 'medium'):
  """configs/ptb.py's `preset` with WikiText-2 data."""
  config = _ptb_config(preset)
  # An epoch is ~3000 steps (B=20, T=35); validate each epoch.
  config.checkpoint_every_steps = 3000
  # WikiText-2 token files: 33,278 words.
  config.data.data_dir = DATA_DIR
  config.data.files = {'train': 'train.txt', 'valid': 'valid.txt',
                       'test': 'test.txt'}
  return config
