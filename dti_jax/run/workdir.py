"""Guards on the workdir, run before anything is written to it.

A rerun with the same workdir resumes, so the workdir's saved ``config.json`` must
describe the same experiment: only the run length, evaluation and logging may change
(``config.allow_config_change=True`` accepts any change). The workdir must also be
writable with room for checkpoints, checked up front so that a run does not fail after
an hour of training.
"""

import errno
import json
import os
import shutil
import socket
import time
from typing import Any

import jax
import ml_collections

from dti_jax.run import checkpointing

CONFIG_FILE = "config.json"
# Keys that may differ on resume: run length, evaluation, logging, and the switches below.
CHANGEABLE = ("train.num_epochs", "train.num_steps", "eval.", "log.",
              "eval_only", "allow_config_change")
# Keys added to the configs after workdirs were trained without them: a saved config
# lacking one had the value given here.
ADDED_KEYS = {"data.channels": 0, "cluster.method": "kmeans", "cluster.reassign_epochs": 1,
              "cluster.pic.neighbours": 5, "cluster.pic.sigma": 0.2, "cluster.pic.alpha": 0.001,
              "cluster.pic.iterations": 200, "cluster.pic.distribute_singletons": True,
              "model.weights": ""}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    flat = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}."))
    return flat
  return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


def changed_keys(saved: dict[str, Any], config: ml_collections.ConfigDict) -> list[str]:
  """Keys whose value differs between a saved config.json and ``config`` (run-length,
  evaluation and logging keys excluded), sorted."""
  old, new = _flatten(saved), _flatten(json.loads(config.to_json()))
  keys = sorted(set(old) | set(new))
  old = {**ADDED_KEYS, **old}
  return [key for key in keys if old.get(key, "<absent>") != new.get(key, "<absent>")
          and not any(key == c or (c.endswith(".") and key.startswith(c)) for c in CHANGEABLE)]


def check_saved_config(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """Raises a one-line ValueError when the workdir holds another experiment's config.

  Returns the changed keys that ``config.allow_config_change`` lets through.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as error:
    raise ValueError(f"{path} is unreadable ({error}); move it away to start this workdir "
                     "afresh from its checkpoints") from error
  changed = changed_keys(saved, config)
  if changed and not config.get("allow_config_change", False):
    old, new = _flatten(saved), _flatten(json.loads(config.to_json()))
    described = ", ".join(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}"
                          for key in changed)
    raise ValueError(f"{workdir} was trained with another config ({described}); use a new "
                     "--workdir, or pass --config.allow_config_change=True to continue anyway")
  return changed


def read_config(workdir: str, method: str | None = None) -> ml_collections.ConfigDict:
  """The config of a trained workdir, for the tools that apply it (infer, edit, segment).

  One-line ValueError when the workdir has no config.json, or when ``method`` is given
  and the workdir holds another method's model.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise ValueError(f"{path} not found: --workdir must be a trained workdir")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if method is not None and config.get("method") != method:
    raise ValueError(f"{workdir} holds a {config.get('method')!r} model, not a {method!r} one")
  return config


def read_meta(workdir: str) -> dict[str, Any]:
  """JSON metadata of the latest checkpoint of a trained workdir (image shape, stage), for
  the tools that need it to build the template of `restore_trained`; one-line ValueError
  when the workdir holds no checkpoint."""
  manager = checkpointing.create_manager(workdir)
  try:
    meta = checkpointing.restore_meta(manager)
  finally:
    manager.close()
  if meta is None:
    raise ValueError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
  return meta


def restore_trained(workdir: str, template: Any) -> tuple[Any, dict[str, Any]]:
  """(state, meta) of the latest checkpoint of a trained workdir, restored onto the
  shapes of ``template``; one-line ValueError when it holds none."""
  manager = checkpointing.create_manager(workdir)
  try:
    restored = checkpointing.restore_latest(manager, template)
  finally:
    manager.close()
  if restored is None:
    raise ValueError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
  return restored


def write_config(workdir: str, config: ml_collections.ConfigDict, step: int) -> None:
  """Writes config.json; a differing previous one is kept as config.step<N>.json."""
  path = os.path.join(workdir, CONFIG_FILE)
  text = config.to_json(indent=1)
  if os.path.exists(path):
    with open(path) as f:
      previous = f.read()
    if previous == text:
      return
    os.replace(path, os.path.join(workdir, f"config.step{step}.json"))
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def check_writable(workdir: str, needed_bytes: int) -> None:
  """One-line OSError unless ``workdir`` can be created, written, and has room.

  ``needed_bytes`` is what two checkpoints take (the number kept); the probe file is
  removed again, and a workdir this call created is removed when the check fails.
  """
  existed = os.path.isdir(workdir)
  probe = os.path.join(workdir, f".write_probe.{socket.gethostname()}.{os.getpid()}."
                                f"{time.time_ns()}")
  try:
    os.makedirs(workdir, exist_ok=True)
    try:
      with open(probe, "wb") as f:
        f.write(b"\0" * 4096)
        f.flush()
        os.fsync(f.fileno())
    finally:
      if os.path.exists(probe):
        os.remove(probe)
  except OSError as error:
    if not existed and os.path.isdir(workdir) and not os.listdir(workdir):
      os.rmdir(workdir)
    reason = error.strerror or str(error)
    raise OSError(error.errno, f"--workdir={workdir} is not writable: {reason}") from error
  free = shutil.disk_usage(workdir).free
  if free < needed_bytes:
    if not existed and not os.listdir(workdir):
      os.rmdir(workdir)
    raise OSError(errno.ENOSPC, f"--workdir={workdir} has {free / 2**20:.1f} MiB free; "
                  f"checkpoints need about {needed_bytes / 2**20:.1f} MiB")


def open_workdir(workdir: str, config: ml_collections.ConfigDict, state: Any):
  """The config and disk checks (nothing is written when they fail), then the checkpoint
  manager and the latest readable checkpoint: (manager, (state, meta) or None, changed keys).
  """
  changed = check_saved_config(workdir, config)
  state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
  check_writable(workdir, needed_bytes=3 * state_bytes + 2**20)  # two kept + one being written
  manager = checkpointing.create_manager(workdir)
  return manager, checkpointing.restore_latest(manager, state), changed

