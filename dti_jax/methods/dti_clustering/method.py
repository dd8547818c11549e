"""DTI-Clustering as the loop runs it: the members of `dti_jax.run.method.Method`
and the after-step hook (reassignment of small clusters)."""

from dti_jax.methods.dti_clustering.evaluation import create_evaluator, final_evaluation
from dti_jax.methods.dti_clustering.trainer import (
    create_state, describe_stage, init_arrays, stage_at, stage_meta, stage_scalars,
    step_function, validate)
from dti_jax.methods.dti_clustering import trainer
from dti_jax.ops import reassignment

BATCH_KEYS = ("image",)


def after_step_function(config, mesh):
  """Reassigns small clusters every ``train.check_cluster_every_steps`` steps."""
  del mesh  # the state keeps its replicated sharding
  return reassignment.periodic_reassignment(config, trainer.reassign_clusters,
                                            trainer.reassign_allowed)


__all__ = ["BATCH_KEYS", "create_evaluator", "create_state", "describe_stage",
           "final_evaluation", "init_arrays", "stage_at", "stage_meta", "stage_scalars",
           "step_function", "validate", "after_step_function"]
