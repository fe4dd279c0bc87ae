"""Training system for the LSTM language and translation models of ``lstm_flax``.

Modules, one responsibility each:

* ``config_lib``: the config schema (every key, its default) and validation.
* ``optimizers``: optax optimisers and learning-rate schedules.
* ``partitioning``: the device mesh and the shardings of state and batches.
* ``checkpoints``: Orbax checkpoints (async saves, resume, preemption).
* ``tasks``: what differs between language modelling and translation
  (datasets, model, loss, carry, evaluation with BLEU / chrF).
* ``train_lib``: ``train_step`` / ``eval_step`` and the training loop.
* ``generate``: text generation from a checkpoint.
* ``translate``: translation of text lines from a checkpoint.
* ``distributed``: ``jax.distributed`` start-up and the peer watchdog
  (a lost process ends the others with one line).
* ``signals``: SIGINT / SIGTERM exit 130 / 143 at any moment (start-up
  included).
* ``host_memory``: glibc ``malloc`` settings that keep XLA:CPU's per-step
  buffers mapped (``train.py`` applies them on the CPU backend).
"""
