"""The linear probe of a DeepCluster network as the loop runs it: the members of
`dti_jax.run.method.Method`, its own data (a training split and a validation split) and
the epoch-start hook that validates each finished epoch."""

from dti_jax.methods.deepcluster.linear_probe import (
    BATCH_KEYS, create_evaluator, create_state, describe_stage, epoch_start_function,
    final_evaluation, init_arrays, load_source, stage_at, stage_meta, stage_scalars,
    step_function, validate)

__all__ = ["BATCH_KEYS", "create_evaluator", "create_state", "describe_stage",
           "epoch_start_function", "final_evaluation", "init_arrays", "load_source",
           "stage_at", "stage_meta", "stage_scalars", "step_function", "validate"]
