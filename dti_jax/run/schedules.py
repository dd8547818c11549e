"""Learning-rate schedules as optax builds them, from the config values methods use.

Each schedule maps a step count (an int or an int32 array, any shape) to a float32 learning
rate; the methods evaluate it at ``state.step`` inside their jitted train step.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax


def step_decay(base_lr: float, milestones: Sequence[int], gamma: float) -> optax.Schedule:
  """PyTorch's MultiStepLR: base_lr * gamma ** (milestones reached), milestones in steps.

  A milestone m counts from step m on; a repeated milestone counts twice, as in PyTorch.
  optax's staircase exponential decay (one stair per milestone) is evaluated at the count
  of milestones reached, so the rate is the single float32 power lr * gamma ** n;
  ``piecewise_constant_schedule`` multiplies by gamma once per milestone instead, which
  can differ in the last bit from the second milestone on.
  """
  if gamma <= 0:
    raise ValueError(f"step_decay needs gamma > 0, got {gamma!r}")
  decay = optax.exponential_decay(base_lr, transition_steps=1, decay_rate=gamma,
                                  staircase=True)
  milestones = tuple(milestones)

  def schedule(step: jax.typing.ArrayLike) -> jax.Array:
    step = jnp.asarray(step)
    reached = sum((step >= m).astype(jnp.int32) for m in milestones)
    return jnp.asarray(decay(reached), jnp.float32)

  return schedule


def poly_decay(base_lr: float, total_steps: int, power: float) -> optax.Schedule:
  """The DeepLab "poly" policy (PyTorch's PolynomialLR in closed form, end value 0):
  base_lr * (1 - step / total_steps) ** power up to total_steps, 0 after it.

  Under jit XLA divides by multiplying with the reciprocal, so at total_steps the
  fraction 1 - total_steps * (1 / total_steps) is a few 1e-8 rather than 0, and optax
  holds the rate it gives (~1e-7 x base_lr) from then on; the constant schedule after
  total_steps keeps the rate there exactly 0.
  """
  if total_steps <= 0:
    raise ValueError(f"poly_decay needs total_steps > 0, got {total_steps!r}")
  poly = optax.polynomial_schedule(init_value=base_lr, end_value=0.0, power=power,
                                   transition_steps=total_steps)
  joined = optax.join_schedules([poly, optax.constant_schedule(0.0)], [total_steps + 1])
  return lambda step: jnp.asarray(joined(jnp.asarray(step)), jnp.float32)


def epochs_to_steps(epochs: Sequence[int], steps_per_epoch: int) -> tuple[int, ...]:
  """Epoch milestones as step milestones: epoch e is done at step e * steps_per_epoch."""
  return tuple(epoch * steps_per_epoch for epoch in epochs)
