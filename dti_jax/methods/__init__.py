"""The methods, one folder each, and the registry that maps ``config.method`` to one.

A method folder holds its model, losses, trainer, evaluation and tools; its trainer
and evaluation modules define the members the loop calls (`dti_jax.run.method.Method`). Methods
never import each other; what two share lives in the shared layers (nets, ops,
transforms, metrics, viz) or in the run package. A new method needs a folder, a
config and one line in `METHODS`.
"""

import importlib
from typing import Any

import ml_collections

from dti_jax.run import loop
from dti_jax.run import method as method_lib

# config.method -> (module with the state, steps and stages and any hooks, module with
# the evaluator and the final evaluation); see `dti_jax.run.method.Method`.
METHODS = {
    "dti_clustering": ("dti_jax.methods.dti_clustering.trainer",
                       "dti_jax.methods.dti_clustering.evaluation"),
    "dti_sprites": ("dti_jax.methods.dti_sprites.trainer",
                    "dti_jax.methods.dti_sprites.evaluation"),
    "deepcluster": ("dti_jax.methods.deepcluster.trainer",
                    "dti_jax.methods.deepcluster.evaluation"),
    "linear_probe": ("dti_jax.methods.deepcluster.linear_probe",
                     "dti_jax.methods.deepcluster.linear_probe"),
    "retrieval": ("dti_jax.methods.deepcluster.retrieval", "dti_jax.methods.deepcluster.retrieval"),
    "dlp": ("dti_jax.methods.dlp.trainer", "dti_jax.methods.dlp.evaluation"),
    "unsup_parts": ("dti_jax.methods.unsup_parts.trainer",
                    "dti_jax.methods.unsup_parts.evaluation"),
    "voc_classification": ("dti_jax.methods.deepcluster.voc_classification",) * 2,
}


def get(name: str) -> method_lib.Method:
  """The method of ``config.method`` = ``name``, assembled from its two modules
  (imported on first use)."""
  if name not in METHODS:
    raise ValueError(f"config.method={name!r} is not one of {sorted(METHODS)}")
  trainer, evaluation = (importlib.import_module(module) for module in METHODS[name])
  return method_lib.assemble(name, trainer, evaluation)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       num_devices: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) the configured method in ``workdir``; returns the final scores."""
  return loop.train_and_evaluate(get(config.get("method")), config, workdir, num_devices)
