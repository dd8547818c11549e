"""Deep Latent Particles as the loop runs it: the members of `dti_jax.run.method.Method`."""

from dti_jax.methods.dlp.evaluation import create_evaluator, final_evaluation
from dti_jax.methods.dlp.trainer import (
    create_state, describe_stage, init_arrays, stage_at, stage_meta, stage_scalars,
    step_function, validate)

BATCH_KEYS = ("image",)


__all__ = ["BATCH_KEYS", "create_evaluator", "create_state", "describe_stage",
           "final_evaluation", "init_arrays", "stage_at", "stage_meta", "stage_scalars",
           "step_function", "validate"]
