"""What the loop needs of a method: the `Method` protocol and its optional hooks.

A method is the namespace `assemble` builds from two modules of its folder: the
trainer (state, steps, stages and any hooks) and the evaluation (evaluator and final
evaluation); the loop calls nothing else. A stage is any hashable value the method
derives from the step (a curriculum stage, a training phase);
the loop compiles one step function per stage. Hooks are optional: a method that needs
none does not define them, and the loop checks with ``isinstance`` against the hook's
protocol (``runtime_checkable`` checks that the names exist).
"""

import types
from typing import Any, Callable, Hashable, Iterator, Protocol, runtime_checkable

import jax
import ml_collections
import numpy as np

Config = ml_collections.ConfigDict
State = Any                       # a flax struct dataclass with at least ``step`` and ``params``
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]    # "loss" and "learning_rate" at least
StepFunction = Callable[[State, Batch], tuple[State, Metrics]]


@runtime_checkable
class Method(Protocol):
  """The members every method defines."""

  BATCH_KEYS: tuple[str, ...]     # what a step reads of a batch ("image", "mask", ...)

  def validate(self, config: Config, image_shape: tuple[int, ...]) -> None:
    """Raises a one-line ValueError naming the config key and value; runs before compiling."""

  def init_arrays(self, config: Config, source: Any) -> Any:
    """Host arrays the initial state is built from (prototypes from data, statistics)."""

  def create_state(self, config: Config, key: jax.Array, arrays: Any) -> State:
    """The initial train state (jitted by the loop, replicated over the mesh)."""

  def step_function(self, config: Config, stage: Hashable, steps_per_epoch: int
                    ) -> StepFunction:
    """The pure train step of a stage; the loop jits it with the mesh's shardings."""

  def stage_at(self, config: Config, step: int, steps_per_epoch: int) -> Hashable:
    """The stage that step ``step`` (0-based) trains in."""

  def describe_stage(self, config: Config, stage: Hashable) -> str:
    """One console line announcing a stage."""

  def stage_scalars(self, stage: Hashable) -> dict[str, float]:
    """TensorBoard scalars describing the stage, logged with the losses."""

  def stage_meta(self, stage: Hashable) -> dict[str, Any]:
    """JSON metadata of the stage, stored with each checkpoint."""

  def create_evaluator(self, config: Config, mesh: jax.sharding.Mesh, source: Any) -> Any:
    """An object with ``scores(state, stage)`` and ``images(state, stage)``."""

  def final_evaluation(self, evaluator: Any, state: State, stage: Hashable, source: Any,
                       writer: Any, workdir: str) -> dict[str, Any]:
    """Scores at the end of training; writes the final pictures and final_scores.json."""


AfterStep = Callable[[State, int, Hashable, jax.Array], tuple[State, dict[str, float], str]]


@runtime_checkable
class AfterStepHook(Protocol):
  """A method that acts on the state between steps (DTI's reassignment of clusters)."""

  def after_step_function(self, config: Config, mesh: jax.sharding.Mesh) -> AfterStep:
    """A function of (state, step, stage, key) -> (state, scalars, message) that the
    loop calls after every step with the run's training key (fold the step into it);
    the loop logs the scalars and prints a non-empty message."""


EpochStart = Callable[[State, int, int],
                      tuple[State, Iterator[dict[str, np.ndarray]], dict[str, Any], str]]


@runtime_checkable
class EpochStartHook(Protocol):
  """A method that prepares each epoch and draws its batches (DeepCluster's clustering
  and sampler)."""

  def epoch_start_function(self, config: Config, mesh: jax.sharding.Mesh, source: Any,
                           workdir: str) -> EpochStart:
    """A function of (state, epoch, start_batch) -> (state, host batches, scalars,
    message) that the loop calls before an epoch's first step, and with start_batch > 0
    when a run resumes inside an epoch; the batches replace the loop's shuffled ones
    (this process's rows of each global batch, from start_batch on). Scalars that are
    arrays are logged as histograms."""


@runtime_checkable
class DataHook(Protocol):
  """A method that reads its data itself (the linear probe: a training and a
  validation split of another run's data)."""

  def load_source(self, config: Config, split: str) -> Any:
    """The source of ``split`` ("train" for training, the final evaluation's split)."""


@runtime_checkable
class GivenWeightsHook(Protocol):
  """A method whose initial state can carry weights read from a file (a converted
  checkpoint): with ``eval_only`` the loop then scores that state, no checkpoint needed."""

  def given_weights(self, config: Config) -> str:
    """The file `create_state` takes the weights from, or "" when it initialises them."""


MEMBERS = tuple(sorted(set(Method.__annotations__) | {
    name for name, value in vars(Method).items() if callable(value) and name[0] != "_"}))


HOOKS = ("after_step_function", "epoch_start_function", "load_source", "given_weights")
EVALUATION_MEMBERS = ("create_evaluator", "final_evaluation")


def assemble(name: str, trainer: Any, evaluation: Any) -> Method:
  """The method ``name``: `Method`'s members from ``trainer`` (the evaluator's two from
  ``evaluation``) and the hooks ``trainer`` defines; TypeError naming what is missing."""
  members = {}
  for member in MEMBERS + HOOKS:
    module = evaluation if member in EVALUATION_MEMBERS else trainer
    if hasattr(module, member):
      members[member] = getattr(module, member)
  missing = [member for member in MEMBERS if member not in members]
  if missing:
    raise TypeError(f"method {name!r} lacks {', '.join(missing)}")
  return types.SimpleNamespace(**members)
