"""DeepCluster as the loop runs it: the members of `dti_jax.run.method.Method` and the
epoch-start hook (feature pass, PCA-whitening, k-means, top layer and sampler)."""

from dti_jax.methods.deepcluster.evaluation import create_evaluator, final_evaluation
from dti_jax.methods.deepcluster.trainer import (
    BATCH_KEYS, create_state, describe_stage, epoch_start_function, init_arrays, stage_at,
    stage_meta, stage_scalars, step_function, validate)

__all__ = ["BATCH_KEYS", "create_evaluator", "create_state", "describe_stage",
           "epoch_start_function", "final_evaluation", "init_arrays", "stage_at",
           "stage_meta", "stage_scalars", "step_function", "validate"]
