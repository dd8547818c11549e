"""The methods, one folder each, and the registry that maps ``config.method`` to one.

A method folder holds its model, losses, trainer, evaluation and tools, and a
``method.py`` with the members the loop calls (`dti_jax.run.method.Method`). Methods
never import each other; what two share lives in the shared layers (nets, ops,
transforms, metrics, viz) or in the run package. A new method needs a folder, a
config and one line in `METHODS`.
"""

import importlib
from typing import Any

import ml_collections

from dti_jax.run import loop
from dti_jax.run import method as method_lib

# config.method -> the module that implements the method for the loop.
METHODS = {
    "dti_clustering": "dti_jax.methods.dti_clustering.method",
    "dti_sprites": "dti_jax.methods.dti_sprites.method",
    "deepcluster": "dti_jax.methods.deepcluster.method",
    "linear_probe": "dti_jax.methods.deepcluster.linear_probe_method",
    "dlp": "dti_jax.methods.dlp.method",
    "unsup_parts": "dti_jax.methods.unsup_parts.method",
}


def get(name: str) -> method_lib.Method:
  """The method module of ``config.method`` = ``name`` (imported on first use)."""
  if name not in METHODS:
    raise ValueError(f"config.method={name!r} is not one of {sorted(METHODS)}")
  module = importlib.import_module(METHODS[name])
  method_lib.check(module, name)
  return module


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       num_devices: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) the configured method in ``workdir``; returns the final scores."""
  return loop.train_and_evaluate(get(config.get("method")), config, workdir, num_devices)
