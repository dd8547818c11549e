"""Row copies for the reassignment of small clusters (DTI-Clustering, DTI-Sprites).

A cluster that gets too few images becomes a copy of the largest one: its rows of every
per-cluster array, and of the Adam moments of those arrays, are overwritten. Both
methods check every ``config.train.check_cluster_every_steps`` steps
(`periodic_reassignment`, their after-step hook).
"""

import functools
from typing import Any, Callable, Hashable

import jax
import jax.numpy as jnp
import ml_collections
import optax


def copy_rows(tree, empty: jax.Array, source: jax.Array):
  """Rows k with empty[k] take row ``source`` (every leaf has a leading K axis)."""
  def copy(x):
    mask = empty.reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x[source][None], x)
  return jax.tree.map(copy, tree)


def map_adam_moments(opt_state, fn):
  """Applies ``fn`` to the first and second moments of every Adam state in a chain."""
  def visit(node):
    if isinstance(node, optax.ScaleByAdamState):
      return node._replace(mu=fn(node.mu), nu=fn(node.nu))
    return node
  return jax.tree.map(visit, opt_state,
                      is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))


def periodic_reassignment(config: ml_collections.ConfigDict, reassign_clusters: Callable,
                          reassign_allowed: Callable[[Hashable], bool]) -> Callable:
  """The after-step hook of both DTI methods (`dti_jax.run.method.AfterStepHook`).

  Every ``config.train.check_cluster_every_steps`` steps, in the stages where
  ``reassign_allowed(stage)`` and when ``config.model.reassign_clusters``, runs
  ``reassign_clusters(state, key, config=config) -> (state, moved)`` with the training
  key folded with the step, and reports how many clusters moved.
  """
  reassign = jax.jit(functools.partial(reassign_clusters, config=config), donate_argnums=0)

  def after_step(state: Any, step: int, stage: Hashable, key: jax.Array
                 ) -> tuple[Any, dict[str, float], str]:
    if not (config.model.reassign_clusters and reassign_allowed(stage)
            and step % config.train.check_cluster_every_steps == 0):
      return state, {}, ""
    state, moved = reassign(state, jax.random.fold_in(key, step))
    moved = int(moved)
    message = f"step {step}: reassigned {moved} small cluster(s)" if moved else ""
    return state, {"train/reassigned_clusters": moved}, message

  return after_step


def after_step_hook(reassign_clusters: Callable,
                    reassign_allowed: Callable[[Hashable], bool]) -> Callable:
  """A method's ``after_step_function(config, mesh)`` running `periodic_reassignment`."""

  def after_step_function(config: ml_collections.ConfigDict, mesh: Any) -> Callable:
    del mesh  # the state keeps its replicated sharding
    return periodic_reassignment(config, reassign_clusters, reassign_allowed)

  return after_step_function
