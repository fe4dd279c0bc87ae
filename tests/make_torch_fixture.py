"""Writes tests/fixtures/torch_lstm.npz: torch.nn.LSTM reference outputs and gradients.

The test suite compares lstm_flax against this file, so it does not need
torch. Regenerate with (torch is not a project dependency)::

  pip install torch
  python tests/make_torch_fixture.py

For each configuration it stores, under ``{config}/``: the nn.LSTM state_dict
(``sd.{key}``), inputs ``x [batch, time, in]``, initial carry ``h0``/``c0``
``[L*D, batch, P|H]``, ``lengths [batch]``, the outputs ``y``, final carry
``h_n``/``c_n``, fixed random cotangents ``dy``/``dh_n``/``dc_n`` and the
gradients of ``<y, dy> + <h_n, dh_n> + <c_n, dc_n>`` with respect to ``x``,
``h0``, ``c0`` and every weight (``grad.{key}``). Everything runs in float64.
Padded configurations use ``pack_padded_sequence`` (outputs at padded steps are
zero and the final carry is each sequence's last valid one).
"""

import os

import numpy as np
import torch

CONFIGS = {
    # name: (num_layers, bidirectional, proj_size, lengths or None)
    'one_layer': (1, False, 0, None),
    'three_layers': (3, False, 0, None),
    'bidirectional': (2, True, 0, None),
    'projection': (2, False, 4, None),
    'padded': (1, False, 0, [6, 4, 1]),
    'padded_bidirectional_projection': (2, True, 3, [5, 6, 2]),
}
BATCH, TIME, IN, HIDDEN = 3, 6, 5, 7


def reference(name, num_layers, bidirectional, proj_size, lengths, seed):
  torch.manual_seed(seed)
  lstm = torch.nn.LSTM(
      IN, HIDDEN, num_layers, batch_first=True, bidirectional=bidirectional,
      proj_size=proj_size,
  ).double()
  with torch.no_grad():  # larger than default weights, so gates saturate less uniformly
    for p in lstm.parameters():
      p.uniform_(-0.6, 0.6)
  d = 2 if bidirectional else 1
  p_size = proj_size or HIDDEN
  x = torch.randn(BATCH, TIME, IN, dtype=torch.float64, requires_grad=True)
  h0 = torch.randn(num_layers * d, BATCH, p_size, dtype=torch.float64, requires_grad=True)
  c0 = torch.randn(num_layers * d, BATCH, HIDDEN, dtype=torch.float64, requires_grad=True)
  if lengths is None:
    y, (h_n, c_n) = lstm(x, (h0, c0))
  else:
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    y, (h_n, c_n) = lstm(packed, (h0, c0))
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=TIME)
  dy, dh_n, dc_n = torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n)
  loss = (y * dy).sum() + (h_n * dh_n).sum() + (c_n * dc_n).sum()
  loss.backward()
  out = {
      'x': x, 'h0': h0, 'c0': c0, 'y': y, 'h_n': h_n, 'c_n': c_n,
      'dy': dy, 'dh_n': dh_n, 'dc_n': dc_n,
      'grad.x': x.grad, 'grad.h0': h0.grad, 'grad.c0': c0.grad,
      'lengths': torch.tensor(lengths if lengths is not None else [TIME] * BATCH),
      'config': torch.tensor([num_layers, int(bidirectional), proj_size, HIDDEN]),
  }
  for key, value in lstm.state_dict().items():
    out[f'sd.{key}'] = value
    out[f'grad.{key}'] = dict(lstm.named_parameters())[key].grad
  return {f'{name}/{k}': v.detach().numpy() for k, v in out.items()}


def main():
  arrays = {}
  for seed, (name, config) in enumerate(CONFIGS.items()):
    arrays.update(reference(name, *config, seed=seed))
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'torch_lstm.npz')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez_compressed(path, **arrays)
  print(f'wrote {path}: {len(arrays)} arrays, torch {torch.__version__}')


if __name__ == '__main__':
  main()
