"""Training system for the LSTM language models of ``lstm_flax``.

Modules, one responsibility each:

* ``config_lib``: the config schema (every key, its default) and validation.
* ``optimizers``: optax optimisers and learning-rate schedules.
* ``partitioning``: the device mesh and the shardings of state and batches.
* ``checkpoints``: Orbax checkpoints (async saves, resume, preemption).
* ``train_lib``: ``train_step`` / ``eval_step`` and the training loop.
* ``generate``: text generation from a checkpoint.
"""
