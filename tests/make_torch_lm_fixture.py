"""Writes tests/fixtures/torch_lm.npz: PyTorch word_language_model references.

The test suite imports these state dicts into ``lstm_flax.models.LanguageModel``
(``lstm_flax.torch_lm``) and compares log-probabilities, so it does not need
torch. Regenerate with (torch is not a project dependency)::

  pip install torch
  python tests/make_torch_lm_fixture.py

``RNNModel`` is pytorch/examples' word_language_model model with
``rnn_type='LSTM'`` (``nn.Embedding -> nn.LSTM -> nn.Linear``, time-major
inputs, log-softmax outputs). For each configuration it stores, under
``{config}/``: the state dict (``sd.{key}``), the input ``tokens [time,
batch]`` and the ``log_probs [time, batch, vocab]`` from a zero initial
state, in float32 (dropout off).
"""

import os

import numpy as np
import torch
from torch import nn

CONFIGS = {
    # name: (vocab, embedding, hidden, layers, tie_weights)
    'untied': (11, 5, 6, 2, False),
    'tied': (11, 6, 6, 2, True),
}
TIME, BATCH = 7, 3


class RNNModel(nn.Module):
  """pytorch/examples word_language_model/model.py's RNNModel (LSTM only)."""

  def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.0, tie_weights=False):
    super().__init__()
    self.ntoken = ntoken
    self.drop = nn.Dropout(dropout)
    self.encoder = nn.Embedding(ntoken, ninp)
    self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
    self.decoder = nn.Linear(nhid, ntoken)
    if tie_weights:
      self.decoder.weight = self.encoder.weight

  def forward(self, tokens, hidden=None):  # tokens [time, batch]
    emb = self.drop(self.encoder(tokens))
    output, hidden = self.rnn(emb, hidden)
    decoded = self.decoder(self.drop(output))
    return torch.log_softmax(decoded, dim=-1), hidden


def reference(name, vocab, embedding, hidden, layers, tie, seed):
  torch.manual_seed(seed)
  model = RNNModel(vocab, embedding, hidden, layers, tie_weights=tie).eval()
  with torch.no_grad():  # Larger than default weights, so outputs differ more.
    for p in model.parameters():
      p.uniform_(-0.5, 0.5)
  tokens = torch.randint(0, vocab, (TIME, BATCH))
  with torch.no_grad():
    log_probs, _ = model(tokens)
  out = {'tokens': tokens.numpy().astype(np.int32), 'log_probs': log_probs.numpy()}
  for key, value in model.state_dict().items():
    out[f'sd.{key}'] = value.numpy()
  return {f'{name}/{k}': v for k, v in out.items()}


def main():
  arrays = {}
  for seed, (name, config) in enumerate(CONFIGS.items()):
    arrays.update(reference(name, *config, seed=seed))
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'torch_lm.npz')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez_compressed(path, **arrays)
  print(f'wrote {path}: {len(arrays)} arrays, torch {torch.__version__}')


if __name__ == '__main__':
  main()
