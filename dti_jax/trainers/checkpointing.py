"""Orbax checkpoints in ``<workdir>/checkpoints/<step>/``: the train state plus JSON metadata.

The state is restored onto the shardings of a freshly created state, so a run resumed
on another device count still gets replicated parameters.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def create_manager(workdir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
  """Asynchronous save; call ``manager.wait_until_finished()`` before exiting."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             meta=ocp.args.JsonSave(meta)), force=True)


def restore_latest(manager: ocp.CheckpointManager, template: Any) -> tuple[Any, dict] | None:
  """(state, meta) of the latest checkpoint, or None when the workdir has none."""
  step = manager.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  return restored["state"], restored["meta"]


def restore_meta(manager: ocp.CheckpointManager) -> dict | None:
  """Only the JSON metadata of the latest checkpoint (step, stage, image shape), or None."""
  step = manager.latest_step()
  if step is None:
    return None
  return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
