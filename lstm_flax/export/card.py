"""The model card (``MODEL_CARD.md``) of an export: what the model is and how to load it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from lstm_flax.export.files import SERVING_FILE, TORCH_FILE

# Example calls of ExportedModel's methods per kind; other kinds get a
# generic line (their card still says how to load the module and variables).
_USAGE = {
    'language_model': "model.generate('The', num_tokens=50, temperature=0.8, top_k=40, "
                      'seed=0)',
    'translation': "translations, report = model.translate(['Ein Hund läuft.'], "
                   'beam_size=4)',
    'classifier': "predictions = model.classify(['a gorgeous , witty movie .'])",
    'feature_classifier': "predictions = model.classify(['0_george_0.wav'])  # or samples, "
                          'frames [T, F]',
}


def loading_instructions(kind: str, directory: str = 'DIR',
                         torch_tie_weights: Optional[bool] = None,
                         serving: Optional[Mapping[str, Any]] = None) -> str:
  """Markdown: how to load an export of ``kind`` (and, unless
  ``torch_tie_weights`` is None, its PyTorch weights of an ``RNNModel``
  with that ``tie_weights``; unless ``serving`` is None, its serialised
  generation function with those settings)."""
  use = _USAGE.get(kind, '# outputs = module.apply(variables, *inputs)  (see the model class)')
  text = (
      f'`{directory}` is this directory. With jax, flax, numpy and safetensors '
      '(the library alone: `pip install .` in a checkout of lstm-flax, or its built wheel; no '
      'trainer, TensorFlow or Orbax):\n\n'
      '```python\nfrom lstm_flax import export\n\n'
      f"model = export.load('{directory}')\n"
      'module, variables = model.module, model.variables  # a Flax module and its '
      "{'params': ...}\n"
      f'{use}\n```\n')
  if serving is not None:
    text += (
        f'\n`{SERVING_FILE}` samples {serving["num_tokens"]} tokens for '
        f'{serving["batch_size"]} prompt(s) (temperature {serving["temperature"]}, top_k '
        f'{serving["top_k"]}, top_p {serving["top_p"]}) with jax alone (no lstm_flax or '
        'model code; the parameters are inside):\n\n```python\nimport jax\n'
        'import numpy as np\nfrom jax import export as jax_export\n\n'
        f"with open('{directory}/{SERVING_FILE}', 'rb') as f:\n"
        '  generate = jax_export.deserialize(bytearray(f.read()))\n'
        f"prompt = np.array([[eos_id, *prompt_ids]] * {serving['batch_size']}, np.int32)"
        '  # ids of tokenizer/ (lstm_flax.tokenizer)\n'
        'tokens = generate.call(prompt, jax.random.key_data(jax.random.PRNGKey(seed)))\n'
        '```\n')
  if torch_tie_weights is not None:
    text += (
        '\nPyTorch (`torch_state_dict.safetensors`, the weights of pytorch/examples\' '
        'word_language_model `RNNModel`):\n\n```python\nimport torch\n'
        'from safetensors.torch import load_file\n\n'
        f"state_dict = load_file('{directory}/{TORCH_FILE}')\n"
        "vocab, emb = state_dict['encoder.weight'].shape\n"
        "hidden = state_dict['rnn.weight_hh_l0'].shape[1]\n"
        "layers = sum(k.startswith('rnn.weight_ih_l') for k in state_dict)\n"
        "model = RNNModel('LSTM', vocab, emb, hidden, layers, dropout=0.0, "
        f'tie_weights={torch_tie_weights})\n'
        'model.load_state_dict(state_dict)\n'
        '# or by hand: nn.Embedding(vocab, emb) -> nn.LSTM(emb, hidden, layers) -> '
        'nn.Linear(hidden, vocab)\n'
        '# ("encoder.", "rnn.", "decoder." prefixes); inputs are [time, batch] and\n'
        '# log_softmax(decoder(rnn(encoder(x))[0])) are the log-probabilities.\n```\n')
  return text


def model_card(model_info: Mapping[str, Any], *, title: str = '',
               sections: Sequence[tuple[str, str]] = ()) -> str:
  """A README-like model card: what the model is, extra ``sections``
  (heading, markdown) such as training data and metrics, and how to load it."""
  kind = model_info['kind']
  args = model_info['arguments']
  lines = [f'# {title or model_info["class"]}', '',
           f'An exported `lstm_flax` {kind.replace("_", " ")} '
           f'(`{model_info["module"]}.{model_info["class"]}`), '
           f'{model_info["num_params"]:,} parameters.', '', '## Model', '']
  lines += [f'- `{k}`: `{json.dumps(v)}`' for k, v in args.items()]
  dtypes = sorted({p['dtype'] for p in model_info['params'].values()})
  lines += ['', f'Parameter dtypes: {", ".join(dtypes)}.', '']
  for heading, body in sections:
    lines += [f'## {heading}', '', body.rstrip(), '']
  lines += ['## How to load it', '',
            loading_instructions(kind, torch_tie_weights=bool(args.get('tie_weights'))
                                 if model_info.get('torch_file') else None,
                                 serving=model_info.get('serving'))]
  return '\n'.join(lines).rstrip() + '\n'
