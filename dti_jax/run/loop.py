"""The training loop: step counting, curriculum stages, eval/log/checkpoint cadence, resume.

This is the only impure place (files, clocks, signals, host transfers) and the only
place that jits step functions. Everything a resumed run needs follows from the
checkpointed state: the data position is (epoch, batch) = divmod(step, steps_per_epoch),
the epoch's order is a function of (seed, epoch), the curriculum stage and learning rate
are functions of the step, and per-step randomness is fold_in(key, step). A run killed
at any moment therefore ends bit-identical to an uninterrupted one.

SIGTERM and SIGINT (preemption, Ctrl-C) finish the current step, write a checkpoint,
flush TensorBoard and return; a second signal acts at once. A non-finite loss or
parameter stops the run before it can reach a checkpoint.
"""

import functools
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

import data_pipelines
from dti_jax.run import checkpointing, partition, reporting, sources
from dti_jax.run import scores as scores_lib
from dti_jax.run import method as method_lib
from dti_jax.run import workdir as workdir_lib


def total_steps_of(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """config.train.num_steps when the config counts steps (> 0), else epochs x steps."""
  steps = config.train.get("num_steps", 0)
  return steps if steps > 0 else config.train.num_epochs * steps_per_epoch


def train_and_evaluate(method: method_lib.Method, config: ml_collections.ConfigDict,
                       workdir: str, num_devices: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) ``method`` as ``config`` says in ``workdir``; returns the final
  scores.

  With ``config.eval_only`` the latest checkpoint is scored without training (the best
  one with ``config.eval.checkpoint="best"``). With ``config.eval.best_metric`` the
  state of the best periodic evaluation is kept in ``checkpoints_best/``.
  """
  load_source = (method.load_source if isinstance(method, method_lib.DataHook)
                 else sources.load_source)
  source = load_source(config, config.data.split)
  method.validate(config, sources.image_shape(config, source))
  mesh = partition.create_mesh(num_devices)
  batch_size = config.train.batch_size
  partition.check_batch_size(batch_size, mesh, "config.train.batch_size")
  partition.check_batch_size(config.eval.batch_size, mesh, "config.eval.batch_size")
  steps_per_epoch = data_pipelines.num_train_batches(source, batch_size)
  if steps_per_epoch == 0:
    raise ValueError(f"config.train.batch_size={batch_size} exceeds the dataset size "
                     f"({source.num_examples} images of {config.data.name})")
  total_steps = total_steps_of(config, steps_per_epoch)
  reporting.console(f"data: {sources.describe(source)}; {steps_per_epoch} steps/epoch, "
                    f"{total_steps} steps on {mesh.size} device(s) ({jax.devices()[0].platform})")

  repl = partition.replicated(mesh)
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  state = jax.jit(functools.partial(method.create_state, config), out_shardings=repl)(
      init_key, method.init_arrays(config, source))
  given = (method.given_weights(config) if isinstance(method, method_lib.GivenWeightsHook)
           else "")
  manager, state = _open_run(config, workdir, state, given)
  writer = reporting.create_writer(workdir)
  evaluator = method.create_evaluator(config, mesh, source)
  progress = reporting.Progress(total_steps, int(state.step))
  if not config.eval_only:
    with _StopSignals() as stop:
      training = None
      try:
        training = _Training(config, workdir, method, mesh, source, train_key,
                             steps_per_epoch, manager, writer, evaluator, progress, stop)
        state = training.run(state)
      finally:
        manager.wait_until_finished()
        if training is not None:
          training.close()
        writer.flush()
    if stop.name is not None and int(state.step) < total_steps:
      step = int(state.step)
      manager.close()
      writer.close()
      reporting.console(f"stopped by {stop.name} at step {step}/{total_steps}: checkpoint "
                        f"{checkpointing.step_directory(manager, step)} written; rerun the "
                        "same command to resume")
      return {"stopped_by": stop.name, "step": step}

  final_step = int(state.step)
  final_stage = method.stage_at(config, max(final_step - 1, 0), steps_per_epoch)
  final_source = source
  if config.data.final_eval_split and config.data.final_eval_split != config.data.split:
    final_source = load_source(config, config.data.final_eval_split)
  final = method.final_evaluation(evaluator, state, final_stage, final_source, writer, workdir)
  reporting.console(f"final ({progress.elapsed_minutes():.1f} min): "
                    f"{scores_lib.format_scores(final)}")
  manager.wait_until_finished()
  manager.close()
  writer.flush()
  writer.close()
  return final


def _open_run(config: ml_collections.ConfigDict, workdir: str, state, given_weights: str = ""):
  """(checkpoint manager, state to start from) after the workdir's checks; writes
  config.json (process 0) unless only evaluating. With ``eval_only`` and given weights
  (`method_lib.GivenWeightsHook`) ``state`` is scored as created: no checkpoint is read."""
  scoring_given = config.eval_only and given_weights
  if (config.eval_only and not scoring_given
      and not os.path.isdir(os.path.join(workdir, "checkpoints"))):
    raise FileNotFoundError(f"config.eval_only=True but {os.path.join(workdir, 'checkpoints')} "
                            "holds no checkpoint; train first with the same --workdir")
  # Nothing is written before these checks pass.
  manager, restored, changed = workdir_lib.open_workdir(workdir, config, state)
  if scoring_given:
    restored = None
    reporting.console(f"evaluating the given weights {given_weights} (no checkpoint is read)")
  elif config.eval_only and config.eval.get("checkpoint", "latest") != "latest":
    restored = _restore_best(config, workdir, state)
  if restored is not None:
    state, _ = restored
    reporting.console(f"{'evaluating' if config.eval_only else 'resumed from'} {workdir} "
                      f"at step {int(state.step)}")
  elif config.eval_only and not scoring_given:
    raise FileNotFoundError(f"config.eval_only=True but {os.path.join(workdir, 'checkpoints')} "
                            "holds no checkpoint; train first with the same --workdir")
  if changed:
    reporting.console(f"warning: config.allow_config_change=True: continuing {workdir} with "
                      f"changed {', '.join(changed)}")
  if jax.process_index() == 0 and not config.eval_only:
    workdir_lib.write_config(workdir, config, int(state.step))
  return manager, state


def _restore_best(config: ml_collections.ConfigDict, workdir: str, state):
  """(state, meta) of the kept best checkpoint; one-line errors for a bad choice or none."""
  if config.eval.checkpoint != "best":
    raise ValueError(f"config.eval.checkpoint={config.eval.checkpoint!r} must be 'latest' "
                     "or 'best'")
  manager = checkpointing.create_manager(workdir, subdirectory=checkpointing.BEST_DIRECTORY)
  try:
    restored = checkpointing.restore_latest(manager, state)
  finally:
    manager.close()
  if restored is None:
    raise FileNotFoundError(f"config.eval.checkpoint='best' but "
                            f"{os.path.join(workdir, checkpointing.BEST_DIRECTORY)} holds no "
                            "checkpoint; train with config.eval.best_metric set")
  return restored


class _StopSignals:
  """Context in which SIGTERM/SIGINT only set ``name``; a second signal acts at once."""

  _SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.name = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    self.name = signal.Signals(signum).name
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {sig: signal.getsignal(sig) for sig in self._SIGNALS}
      for sig in self._SIGNALS:
        signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def requested(self) -> bool:
    """Whether any process got a stop signal (agreed over hosts, so all stop together)."""
    if jax.process_count() == 1:
      return self.name is not None
    flags = multihost_utils.process_allgather(np.int32(self.name is not None))
    if np.any(flags) and self.name is None:
      self.name = "a signal to another host"
    return bool(np.any(flags))


@jax.jit
def _first_nonfinite(first_bad: jax.Array, loss: jax.Array, step: int) -> jax.Array:
  """The first step whose loss is NaN or Inf, or -1; stays on device (no sync per step)."""
  return jnp.where((first_bad < 0) & ~jnp.isfinite(loss), step, first_bad)


@jax.jit
def _params_finite(params) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))


def _check_finite(state, first_bad: jax.Array, step: int, manager) -> None:
  """FloatingPointError naming the first bad step and the last good checkpoint."""
  bad_step = int(first_bad)
  if bad_step < 0 and bool(_params_finite(state.params)):
    return
  manager.wait_until_finished()
  last = manager.latest_step()
  where = (f"the last good checkpoint, {checkpointing.step_directory(manager, last)} (step "
           f"{last}), is intact" if last is not None else "no checkpoint was written yet")
  what = (f"the loss is NaN or Inf at step {bad_step}" if bad_step >= 0
          else f"the parameters hold NaN or Inf at step {step}")
  raise FloatingPointError(f"{what}; {where}. Lower config.optim.lr or check the data, "
                           "then rerun to resume from that checkpoint")


class _Training:
  """The remaining steps of one run: data, steps, hooks, logging, evaluation and
  checkpoints at their cadence (``log.checkpoint_every_steps`` <= 0: at each epoch's
  end; ``eval.every_steps`` <= 0: only the final evaluation)."""

  def __init__(self, config, workdir, method, mesh, source, train_key, steps_per_epoch,
               manager, writer, evaluator, progress, stop):
    self.config, self.workdir, self.method, self.mesh = config, workdir, method, mesh
    self.source, self.train_key, self.steps_per_epoch = source, train_key, steps_per_epoch
    self.manager, self.writer, self.evaluator = manager, writer, evaluator
    self.progress, self.stop = progress, stop
    self.total_steps = total_steps_of(config, steps_per_epoch)
    self.step_fns = {}
    self.after_step = (method.after_step_function(config, mesh)
                       if isinstance(method, method_lib.AfterStepHook) else None)
    self.epoch_start = (method.epoch_start_function(config, mesh, source, workdir)
                        if isinstance(method, method_lib.EpochStartHook) else None)
    self.sums, self.loss_count, self.stage = {}, 0, None  # metric sums since the last log
    self.first_bad = jnp.int32(-1)
    self.stages_timed = False
    metric = config.eval.get("best_metric", "")
    self.best = (checkpointing.BestCheckpoint(workdir, metric, config.eval.best_mode)
                 if metric else None)

  def step_fn(self, stage):
    """The jitted step of a stage, compiled on first use."""
    if stage not in self.step_fns:
      repl, data_sh = partition.replicated(self.mesh), partition.data_sharding(self.mesh)
      self.step_fns[stage] = jax.jit(
          self.method.step_function(self.config, stage, self.steps_per_epoch),
          in_shardings=(repl, data_sh), out_shardings=(repl, repl), donate_argnums=0)
    return self.step_fns[stage]

  def epoch_batches(self, state, epoch: int, start_batch: int):
    """(state, this process's host batches of the epoch from ``start_batch`` on)."""
    if self.epoch_start is None:
      return state, data_pipelines.train_batches(
          self.source, global_batch_size=self.config.train.batch_size,
          seed=self.config.seed, epoch=epoch, start_batch=start_batch,
          process_index=jax.process_index(), process_count=jax.process_count())
    state, batches, scalars, message = self.epoch_start(state, epoch, start_batch)
    self.write(epoch * self.steps_per_epoch, scalars, message)
    return state, batches

  def write(self, step: int, scalars: dict[str, Any], message: str) -> None:
    """A hook's scalars (arrays as histograms) and console message."""
    histograms = {name: value for name, value in scalars.items() if np.ndim(value) > 0}
    if len(histograms) < len(scalars):
      self.writer.write_scalars(step, {name: value for name, value in scalars.items()
                                       if name not in histograms})
    if histograms:
      self.writer.write_histograms(step, histograms)
    if message:
      reporting.console(message)

  def run(self, state):
    """Trains until the schedule ends or a stop signal; returns the state."""
    step = int(state.step)
    multi_host = jax.process_count() > 1
    while step < self.total_steps:
      epoch, start_batch = divmod(step, self.steps_per_epoch)
      state, batches = self.epoch_batches(state, epoch, start_batch)
      for host_batch in batches:
        state, step = self.train_one(state, step, host_batch)
        stopping = ((not multi_host or step % self.config.log.every_steps == 0)
                    and self.stop.requested())
        every = self.config.log.checkpoint_every_steps
        due = step % every == 0 if every > 0 else step % self.steps_per_epoch == 0
        if due or step == self.total_steps or stopping:
          self.save(state, step)
        if step >= self.total_steps or stopping:
          return state
    return state

  def time_stages(self, state, step: int, batch) -> None:
    """Compiles and times one step of every later stage (on a copy of the state, which
    stays untouched), so that the ETA covers the remaining stages at their own speed."""
    self.stages_timed = True
    boundaries, spe = [], self.steps_per_epoch
    for epoch in range(step // spe, -(-self.total_steps // spe)):
      first = max(epoch * spe, step)
      stage = self.method.stage_at(self.config, first, spe)
      if not boundaries or boundaries[-1][1] != stage:
        boundaries.append((first, stage))
    costs = {}
    for stage in dict.fromkeys(later for _, later in boundaries[1:]):
      if stage == boundaries[0][1]:
        continue
      trial, _ = self.step_fn(stage)(jax.tree.map(lambda x: x.copy(), state), batch)
      times = []
      for _ in range(3):  # the fastest of three steps after the compiling one
        start = time.perf_counter()
        trial, _ = self.step_fn(stage)(jax.block_until_ready(trial), batch)
        jax.block_until_ready(trial)
        times.append(time.perf_counter() - start)
      costs[stage] = min(times)
    self.progress.set_stage_costs(boundaries, costs)

  def train_one(self, state, step: int, host_batch):
    """One step with its hook, logging and evaluation; returns (state, step)."""
    config, method = self.config, self.method
    stage = method.stage_at(config, step, self.steps_per_epoch)
    batch = partition.to_global({name: host_batch[name] for name in method.BATCH_KEYS},
                                self.mesh)
    if not self.stages_timed:
      start = time.perf_counter()
      self.time_stages(state, step, batch)
      self.progress.pause(time.perf_counter() - start)
    if stage != self.stage:
      self.stage = stage
      reporting.console(f"step {step}: {method.describe_stage(config, stage)}")
    state, metrics = self.step_fn(stage)(state, batch)
    step += 1
    self.first_bad = _first_nonfinite(self.first_bad, metrics["loss"], step)
    self.sums = {name: self.sums.get(name, 0.0) + value for name, value in metrics.items()
                 if name != "learning_rate"}
    self.loss_count += 1
    if self.after_step is not None:
      state, scalars, message = self.after_step(state, step, stage, self.train_key)
      self.write(step, scalars, message)
    if step % config.log.every_steps == 0 or step == self.total_steps:
      self.log(state, step, metrics)
    every = config.eval.every_steps
    if every > 0 and step % every == 0 and step < self.total_steps:
      self.evaluate(state, step)
    return state, step

  def log(self, state, step: int, metrics) -> None:
    """Means of the metrics since the last log, to TensorBoard and the console."""
    means = {name: float(value) / self.loss_count for name, value in self.sums.items()}
    loss = means["loss"]
    if not np.isfinite(loss):
      _check_finite(state, self.first_bad, step, self.manager)
    speed = self.progress.update(step, self.stage)
    self.writer.write_scalars(step, {
        **{f"train/{n}": v for n, v in means.items()},
        "train/learning_rate": float(metrics["learning_rate"]),
        **self.method.stage_scalars(self.stage),
        **{f"train/{n}": v for n, v in speed.items()}})
    reporting.console(f"step {step}/{self.total_steps} epoch {step / self.steps_per_epoch:.1f} "
                      f"loss {loss:.5f} | {speed['steps_per_sec']:.2f} steps/s | "
                      f"ETA {speed['eta_minutes']:.1f} min")
    self.sums, self.loss_count = {}, 0

  def evaluate(self, state, step: int) -> None:
    start = time.perf_counter()
    scores = self.evaluator.scores(state, self.stage)
    images = self.evaluator.images(state, self.stage)
    scores_lib.write_eval(self.writer, step, "eval", scores, images)
    scores_lib.save_frame(self.workdir, step, images)
    reporting.console(f"eval @ step {step} ({self.progress.elapsed_minutes():.1f} min): "
                      f"{scores_lib.format_scores(scores)}")
    if self.best is not None and self.best.offer(state, step, scores, self.meta(step)):
      reporting.console(f"best {self.best.metric} so far ({self.best.best:.6g}): kept in "
                        f"{checkpointing.step_directory(self.best.manager, step)}")
    self.progress.pause(time.perf_counter() - start)

  def meta(self, step: int) -> dict[str, Any]:
    """The JSON metadata stored with a checkpoint of ``step``."""
    return {"step": step, "image_shape": list(sources.image_shape(self.config, self.source)),
            "num_examples": int(self.source.num_examples), **self.method.stage_meta(self.stage)}

  def save(self, state, step: int) -> None:
    _check_finite(state, self.first_bad, step, self.manager)
    start = time.perf_counter()
    checkpointing.save(self.manager, step, state, self.meta(step))
    self.progress.pause(time.perf_counter() - start)

  def close(self) -> None:
    if self.best is not None:
      self.best.close()
