"""Training system for the models of ``lstm_flax``: language models,
translation and sentence classification (one module per task in
``trainer.tasks``).

Modules, one responsibility each:

* ``config_lib``: the config schema (generic keys + a task's sections) and
  validation.
* ``tasks``: what differs between tasks (datasets, model, loss, carry,
  metrics, inference); ``config.task`` names a module there.
* ``optimizers``: optax optimisers and learning-rate schedules.
* ``partitioning``: the device mesh and the shardings of state and batches.
* ``compiled`` / ``steps``: the jit-compiled train / eval steps.
* ``checkpoints``: Orbax checkpoints (async saves, resume, preemption).
* ``loop``: the training loop; ``evaluation``: the evaluate mode.
* ``inference``: restoring a checkpoint for generate / translate / classify
  / export.
* ``distributed``: ``jax.distributed`` start-up and the peer watchdog
  (a lost process ends the others with one line).
* ``signals``: SIGINT / SIGTERM exit 130 / 143 at any moment (start-up
  included).
* ``host_memory``: glibc ``malloc`` settings that keep XLA:CPU's per-step
  buffers mapped (``train.py`` applies them on the CPU backend).
"""
