"""The task protocol: everything the generic trainer asks of a task.

The trainer (``config_lib``, ``compiled``, ``loop``, ``checkpoints``,
``inference``, ``evaluation``) knows no task by name. Each command builds
one :class:`Task` from ``config.task`` (``trainer.tasks.build``: module
``trainer.tasks.<task>`` declares ``TASK``), hands it to that code, which
calls it for:

* **config**: :meth:`Task.default_config` (the task's sections: ``model``,
  ``data`` and anything else the task reads) and :meth:`Task.validate`;
* **data**: :meth:`Task.load_datasets` returns the task's
  :class:`Datasets` (the one data contract: ``tokenizer``, the facts that
  size the model, training / evaluation batches, epoch lengths, carry
  resets, the arrays the steps take, what a resume must share);
* **model**: :meth:`Task.build_model`, :meth:`Task.init_variables` (logically
  partitioned, see ``lstm_flax.axes``), :meth:`Task.initial_carry` (the state
  carried between training batches, leaves ``[layers, batch, features]``, or
  ``None``) and :meth:`Task.transfer_params` (parameters taken from elsewhere
  after initialisation);
* **loss**: :meth:`Task.loss_fn` / :meth:`Task.eval_fn` return *sums*
  (``loss_sum`` and ``weight``, plus any task metric such as ``correct``) so
  that metrics aggregate exactly over steps, hosts and devices;
* **metrics**: :meth:`Task.summarize` (sums -> reported scalars),
  :meth:`Task.evaluate` (a whole split; may decode) and :attr:`Task.best_metric`
  (which validation metric, in which direction, picks the best checkpoint);
* **inference**: :attr:`Task.INFERENCE_KEYS` (the keys a user's evaluate /
  inference config may change in the saved one), :attr:`Task.COMMAND` and
  :meth:`Task.predictor` (what ``generate.py`` / ``translate.py`` /
  ``classify.py`` use), :meth:`Task.inference_settings` (export).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import jax
import ml_collections
import numpy as np

PyTree = Any
Batch = dict[str, jax.Array]
Sums = dict[str, jax.Array]  # Metric sums of a batch: loss_sum, weight, ...


@dataclasses.dataclass(frozen=True)
class BestMetric:
  """The validation metric that picks the best checkpoint."""

  name: str  # e.g. 'valid_perplexity'
  mode: str  # 'min' or 'max'


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """What :meth:`Task.evaluate` gets from the trainer (no loop internals).

  Attributes:
    model: the task's module.
    params: the parameters to evaluate (the average under averaged SGD).
    eval_step: jit-compiled ``(carry, batch) -> (carry, sums)`` of
      :meth:`Task.eval_fn` with ``params`` bound; ``batch`` as returned by
      ``to_device``.
    zero_carry: ``() -> carry`` for the evaluation batch size (``None`` for
      tasks without a carry).
    to_device: this process's rows of a batch -> global arrays sharded over
      the data-parallel devices.
  """

  model: Any
  params: PyTree
  eval_step: Callable[[PyTree, Batch], tuple[PyTree, Sums]]
  zero_carry: Callable[[], PyTree]
  to_device: Callable[[Mapping[str, np.ndarray]], Batch]


@dataclasses.dataclass
class Datasets(abc.ABC):
  """The data of a run, as the trainer sees them: one subclass per task,
  wrapping the ``input_pipeline`` object ``source``.

  Attributes:
    source: the input pipeline's datasets (``LMDatasets``, ...).
    config: the task's resolved config.
    eval_split: the split loaded for the evaluate command (``None``: a
      training run, which validates on 'valid').
  """

  source: Any
  config: ml_collections.ConfigDict
  eval_split: str | None = None

  @property
  def tokenizer(self) -> Any:
    """The run's tokenizer (``input_pipeline.tokenizers.Tokenizer``)."""
    return self.source.tokenizer

  def model_inputs(self) -> dict[str, int]:
    """The data facts the model is built with (saved in checkpoints)."""
    return {'vocab_size': int(self.source.vocab_size)}

  def train_batches(self, start_step: int = 0
                    ) -> Iterator[Mapping[str, np.ndarray]]:
    """This process's rows of the training batches, forever, from global
    step ``start_step`` on."""
    return self.source.train_batches(start_step)

  def eval_batches(self, split: str) -> Iterator[Mapping[str, np.ndarray]]:
    """One pass over this process's rows of evaluation split ``split``."""
    return self.source.eval_batches(split)

  def epoch_length(self) -> tuple[int, Callable[[int], int] | None]:
    """(batches in epoch 0, ``fn(epoch) -> batches`` when epochs differ in
    length, else ``None``); by default from the plan of the source's
    training batcher (``source.batcher('train').plan(epoch)``)."""
    batcher = self.source.batcher('train')
    return len(batcher.plan(0)), lambda e: len(batcher.plan(e))

  def resets_carry(self, is_epoch_start: bool) -> bool:
    """Whether the training batch starts from a zero carry."""
    del is_epoch_start
    return True

  def device_batch(self, local: Mapping[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
    """The arrays of a local batch that the jit-compiled steps take."""
    return dict(local)

  @abc.abstractmethod
  def batch_tokens(self, local: Mapping[str, np.ndarray]) -> float:
    """Tokens in this process's rows (for tokens/s)."""

  def signature(self) -> dict[str, Any]:
    """What a checkpoint must share with the config to be resumed, beyond
    the parameter and optimiser-state shapes (which the trainer compares
    itself): by default the tokenizer."""
    return {'tokenizer_fingerprint': self.tokenizer.fingerprint()}


def sum_metrics(sums: Iterable[Mapping[str, Any]]) -> dict[str, float]:
  """Adds per-batch sums (device arrays) in float64 on the host."""
  total: dict[str, float] = {}
  for m in jax.device_get(list(sums)):
    for key, value in m.items():
      total[key] = total.get(key, 0.0) + float(np.float64(value))
  return total


class Task(abc.ABC):
  """One training task; see the module docstring.

  A task is built once per run from the resolved config and passed to
  whatever needs it. Subclasses set :attr:`name` and implement the abstract
  methods; a module ``trainer/tasks/<name>.py`` (or any importable
  module, named by its dotted path) that declares ``TASK = TheClass`` makes
  ``config.task = name`` select it.
  """

  name: ClassVar[str]
  # Keys (dotted, under the config root) that an evaluate / inference
  # command may change in the checkpoint's saved config (beside the
  # generic ones); every other key the user sets differently is refused.
  INFERENCE_KEYS: ClassVar[tuple[str, ...]] = ()
  # What a checkpoint of this task is, and which command uses it.
  USAGE: ClassVar[str] = ''
  # The inference command that serves this task ('generate.py',
  # 'translate.py', 'classify.py'): it takes :meth:`predictor`'s object.
  COMMAND: ClassVar[str] = ''

  # Config keys whose values are dicts with free keys (split name -> file).
  FREE_KEYED: ClassVar[tuple[str, ...]] = ('data.files', 'data.tfds_splits')

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  # -------------------------------------------------------------- config --

  @classmethod
  @abc.abstractmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    """The task's config sections (at least ``model`` and ``data``)."""

  def validate(self) -> None:
    """Raises ConfigError naming the key of an invalid task value. The
    default builds the model with placeholder data sizes, so the module
    checks its own fields."""
    self.build_model(**self.placeholder_model_inputs())

  @abc.abstractmethod
  def placeholder_model_inputs(self) -> dict[str, int]:
    """Data-dependent model sizes to validate the model fields with."""

  def check_batch_sizes(self, check: Callable[[int, str], None]) -> None:
    """Calls ``check(global_batch_size, key)`` for each batch-size key."""

  # ---------------------------------------------------------------- data --

  @abc.abstractmethod
  def load_datasets(self, workdir: str, eval_split: str | None = None
                    ) -> Datasets:
    """The datasets of a training run (validating on 'valid'), or with
    ``eval_split`` those that score that split (the evaluate command)."""

  # --------------------------------------------------------------- model --

  @abc.abstractmethod
  def build_model(self, **model_inputs: int) -> Any:
    """The Flax module: ``config.model``'s fields plus the data sizes."""

  @abc.abstractmethod
  def init_variables(self, model: Any, rng: jax.Array) -> PyTree:
    """``model.init`` on dummy inputs: the (boxed) ``params`` collection."""

  def initial_carry(self, model: Any, batch_size: int) -> PyTree:
    """The carry between training batches (``None``: no carry)."""
    del model, batch_size
    return None

  def transfer_params(self, params: PyTree) -> PyTree | None:
    """Parameters after initialisation of a fresh run (e.g. copied from a
    pretrained model), or ``None`` to keep ``params`` (host arrays, unboxed);
    called once, outside jit."""
    del params
    return None

  # ---------------------------------------------------------------- loss --

  @abc.abstractmethod
  def loss_fn(self, model: Any, params: PyTree, carry: PyTree, batch: Batch,
              reset: jax.Array, dropout_rng: jax.Array
              ) -> tuple[jax.Array, tuple[Sums, PyTree]]:
    """(objective to differentiate, (metric sums, carry for the next
    batch)); the sums hold at least ``loss_sum`` and ``weight``."""

  @abc.abstractmethod
  def eval_fn(self, model: Any, params: PyTree, carry: PyTree, batch: Batch
              ) -> tuple[PyTree, Sums]:
    """Deterministic scoring of one batch: (next carry, metric sums)."""

  # ------------------------------------------------------------- metrics --

  @property
  @abc.abstractmethod
  def best_metric(self) -> BestMetric:
    """Which validation metric picks the best checkpoint."""

  @abc.abstractmethod
  def summarize(self, prefix: str, sums: Mapping[str, float]
                ) -> dict[str, float]:
    """Reported scalars (``{prefix}_loss``, ...) of summed metrics."""

  def evaluate(self, context: EvalContext, datasets: Datasets,
               split: str) -> dict[str, float]:
    """The metrics of a whole split (default: :meth:`eval_fn` summed over
    ``datasets.eval_batches(split)``, the carry flowing between batches)."""
    carry = context.zero_carry()
    sums = []
    for local in datasets.eval_batches(split):
      carry, batch_sums = context.eval_step(
          carry, context.to_device(datasets.device_batch(local)))
      sums.append(batch_sums)
    return self.summarize(split, sum_metrics(sums))

  # ----------------------------------------------------------- inference --

  def inference_settings(self, workdir: str) -> dict[str, Any]:
    """The JSON settings an exported model needs for inference beyond its
    module and tokenizer (``lstm_flax.export.save``'s
    ``inference_settings``): none by default."""
    del workdir
    return {}

  def predictor(self, restored: Any) -> Any:
    """The object :attr:`COMMAND` uses (a generator, translator, classifier)
    of a restored checkpoint (``trainer.inference.Restored``: model,
    ``params()``, ``tokenizer``, step, workdir)."""
    raise NotImplementedError(f'Task {self.name!r} has no inference command.')
