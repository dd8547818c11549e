"""Orbax checkpoints in ``<workdir>/checkpoints/<step>/``: the train state plus JSON metadata.

The state is restored onto the shardings of a freshly created state, so a run resumed
on another device count still gets replicated parameters. Orbax writes each checkpoint
to a temporary directory and renames it when complete, so a run killed mid-save leaves
the previous checkpoints as they were; a finished checkpoint whose files fail to decode
(truncated, corrupted or missing) is moved aside and the next older one is used. Any
other failure to read (an I/O error of a network file system, running out of memory)
stops the run with one line and moves nothing: the checkpoint may be fine.
"""

import json
import logging
import math
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp


BEST_DIRECTORY = "checkpoints_best"


def create_manager(workdir: str, max_to_keep: int = 2,
                   subdirectory: str = "checkpoints") -> ocp.CheckpointManager:
  directory = os.path.abspath(os.path.join(workdir, subdirectory))
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
  """Asynchronous save; call ``manager.wait_until_finished()`` before exiting."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             meta=ocp.args.JsonSave(meta)), force=True)


def step_directory(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(manager.directory), str(step))


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


# tensorstore's status codes for bytes that are there but do not decode, or are missing
# from a checkpoint orbax marked complete.
_DECODE_STATUSES = ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND")


def fails_to_decode(error: Exception) -> bool:
  """True when ``error`` says a checkpoint's files are corrupt, not that reading failed."""
  if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
    return True
  return (type(error) is ValueError
          and str(error).lstrip().startswith(_DECODE_STATUSES))


def _set_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Renames an unreadable checkpoint to ``<step>.unreadable-<time>`` (kept, not deleted)."""
  source = step_directory(manager, step)
  target = f"{source}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
  if jax.process_index() == 0:
    os.rename(source, target)
  return target


def _first_mismatch(restored: Any, template: Any) -> str:
  """'' when ``restored`` has the tree structure, shapes and dtypes of ``template``."""
  paths = jax.tree_util.tree_flatten_with_path(template)[0]
  leaves = jax.tree_util.tree_flatten_with_path(restored)[0]
  if [path for path, _ in paths] != [path for path, _ in leaves]:
    return "other arrays"
  for (path, want), (_, got) in zip(paths, leaves):
    if want.shape != got.shape or want.dtype != got.dtype:
      return (f"{jax.tree_util.keystr(path)} is {got.dtype}{list(got.shape)}, the model needs "
              f"{want.dtype}{list(want.shape)}")
  return ""


def restore_latest(manager: ocp.CheckpointManager, template: Any) -> tuple[Any, dict] | None:
  """(state, meta) of the latest readable checkpoint, or None when the workdir has none.

  Newer checkpoints whose files fail to decode while an older one loads are corrupt:
  each is renamed aside with a warning naming it. Any other error while reading raises
  an OSError naming the checkpoint, and nothing is moved. When none loads, or the one
  that loads holds arrays of other shapes than ``template`` (another model), a
  ValueError is raised and nothing is moved.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  failures = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except Exception as error:  # pylint: disable=broad-except  # orbax raises many kinds
      if not fails_to_decode(error):
        raise OSError(f"cannot read checkpoint {step_directory(manager, step)} "
                      f"({_first_line(error)}); nothing was moved, rerun when it is "
                      f"readable") from error
      failures.append((step, error))
      continue
    mismatch = _first_mismatch(restored["state"], template)
    if mismatch:
      raise ValueError(f"checkpoint {step_directory(manager, step)} does not match the model "
                       f"({mismatch}); use a new --workdir for this config")
    for bad_step, error in failures:
      target = _set_aside(manager, bad_step)
      message = (f"checkpoint {step_directory(manager, bad_step)} is unreadable "
                 f"({_first_line(error)}); moved it to {target} and resumed from step {step}")
      logging.warning(message)
      print(f"warning: {message}", flush=True)
    if failures:
      manager.reload()
    return restored["state"], restored["meta"]
  if failures:
    step, error = failures[0]
    raise ValueError(f"no checkpoint in {manager.directory} can be restored; the latest, "
                     f"step {step}: {_first_line(error)}")
  return None


def restore_meta(manager: ocp.CheckpointManager) -> dict | None:
  """Only the JSON metadata of the latest checkpoint (step, stage, image shape), or None."""
  step = manager.latest_step()
  if step is None:
    return None
  return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


class BestCheckpoint:
  """The checkpoint of the best evaluation so far, in ``<workdir>/checkpoints_best/<step>/``
  beside the latest ones (the original DLP's ``_best`` model, by validation loss).

  ``metric`` is a key of the evaluation's scores; ``mode`` "min" or "max". The best
  value so far is read back from the kept checkpoint's metadata, so a resumed run goes
  on comparing against it.
  """

  def __init__(self, workdir: str, metric: str, mode: str):
    if mode not in ("min", "max"):
      raise ValueError(f"config.eval.best_mode={mode!r} must be 'min' or 'max'")
    self.metric, self.mode = metric, mode
    self.manager = create_manager(workdir, max_to_keep=1, subdirectory=BEST_DIRECTORY)
    meta = restore_meta(self.manager)
    self.best = None if meta is None else meta.get("best_value")

  def offer(self, state: Any, step: int, scores: dict[str, Any], meta: dict[str, Any]
            ) -> bool:
    """Keeps ``state`` when its score beats the best so far; returns whether it did."""
    value = scores.get(self.metric)
    if value is None or not math.isfinite(float(value)):
      return False
    value = float(value)
    better = (self.best is None or (value < self.best if self.mode == "min"
                                    else value > self.best))
    if better:
      self.best = value
      save(self.manager, step, state, {**meta, "best_metric": self.metric,
                                       "best_value": value})
    return better

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
