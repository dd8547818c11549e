"""Learning-rate schedules against closed forms at their boundaries, and each method's
learning rate against the schedule it is built from on one of its configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits, dlp_shapes, multi_dsprites, unsup_parts_cub, unsup_parts_toy
from dti_jax.methods.dlp import trainer as dlp
from dti_jax.methods.dti_clustering import trainer as dti
from dti_jax.methods.dti_sprites import trainer as sprites
from dti_jax.methods.unsup_parts import trainer as unsup_parts
from dti_jax.run import schedules


def _values(schedule, steps, jit=False):
  """The schedule at each step, one int32 scalar at a time (as a train step calls it)."""
  fn = jax.jit(schedule) if jit else schedule
  return np.array([np.float32(fn(jnp.int32(step))) for step in steps])


def test_step_decay_halves_at_each_milestone_exactly():
  # Powers of 0.5 scale a float32 exactly: the rates are bit-equal to the closed form.
  schedule = schedules.step_decay(0.01, (30, 50), 0.5)
  steps = (0, 29, 30, 31, 49, 50, 51, 99)
  expected = np.float32([0.01, 0.01, 0.01 * 0.5, 0.01 * 0.5, 0.01 * 0.5,
                         0.01 * 0.5 ** 2, 0.01 * 0.5 ** 2, 0.01 * 0.5 ** 2])
  for jit in (False, True):
    np.testing.assert_array_equal(_values(schedule, steps, jit), expected)


def test_step_decay_counts_repeated_milestones_and_matches_under_jit():
  """MultiStepLR semantics: a milestone listed twice decays twice; milestone 0 decays
  from the first step; the same rates eagerly, under jit and over a vector of steps."""
  schedule = schedules.step_decay(1e-3, (0, 4, 4), 0.1)
  steps = np.arange(8, dtype=np.int32)
  expected = [1e-3 * 0.1] * 4 + [1e-3 * 0.1 ** 3] * 4
  eager = _values(schedule, steps)
  np.testing.assert_allclose(eager, expected, rtol=3e-7)  # float32 0.1, its cube, product
  np.testing.assert_array_equal(_values(schedule, steps, jit=True), eager)
  np.testing.assert_array_equal(np.asarray(jax.jit(schedule)(jnp.asarray(steps))), eager)
  assert schedule(jnp.int32(0)).dtype == jnp.float32


def test_step_decay_without_milestones_is_constant_and_rejects_gamma_zero():
  schedule = schedules.step_decay(3e-4, (), 0.1)
  np.testing.assert_array_equal(_values(schedule, (0, 10**6)), np.float32([3e-4, 3e-4]))
  with pytest.raises(ValueError, match="gamma"):
    schedules.step_decay(1e-3, (10,), 0.0)


def test_poly_decay_at_start_middle_end_and_past_the_end():
  schedule = schedules.poly_decay(0.01, 100, 0.9)
  for jit in (False, True):
    start, middle, before_end, end, past, far = _values(schedule, (0, 50, 99, 100, 101, 200),
                                                        jit)
    assert start == np.float32(0.01)
    np.testing.assert_allclose(middle, 0.01 * 0.5 ** 0.9, rtol=1e-7)
    # 1 - 99/100 loses most float32 digits to cancellation.
    np.testing.assert_allclose(before_end, 0.01 * 0.01 ** 0.9, rtol=1e-5)
    # At the end the fraction is 0, or under jit 1 - 100 * float32(1/100).
    assert 0.0 <= end <= 1e-6 * 0.01
    assert past == far == 0.0
  with pytest.raises(ValueError, match="total_steps"):
    schedules.poly_decay(0.01, 0, 0.9)


def test_epochs_to_steps():
  assert schedules.epochs_to_steps((6, 10), 125) == (750, 1250)
  assert schedules.epochs_to_steps((), 125) == ()


def test_dti_clustering_learning_rate_on_digits():
  config = digits.get_config()            # 1,797 images // 64 = 28 steps/epoch, decay at 90
  spe, boundary = 28, 90 * 28
  steps = (0, boundary - 1, boundary, boundary + 1, 100 * spe - 1)
  lr = _values(lambda s: dti.learning_rate(config, s, spe), steps, jit=True)
  np.testing.assert_allclose(lr, [1e-3, 1e-3, 1e-4, 1e-4, 1e-4], rtol=1e-7)
  np.testing.assert_array_equal(lr, _values(schedules.step_decay(1e-3, (boundary,), 0.1),
                                            steps, jit=True))


def test_dti_sprites_learning_rates_on_multi_dsprites_procedural():
  config = multi_dsprites.get_config("procedural")   # 4,000 // 32 = 125 steps/epoch
  spe, boundary = 125, 5 * 125
  steps = (0, boundary - 1, boundary, boundary + 1, 6 * spe - 1)
  cluster = _values(lambda s: sprites.learning_rates(config, s, spe)[0], steps, jit=True)
  transformer = _values(lambda s: sprites.learning_rates(config, s, spe)[1], steps, jit=True)
  np.testing.assert_array_equal(cluster, np.float32([1e-3] * 5))   # gamma_sprites = 1
  np.testing.assert_allclose(transformer, [1e-4, 1e-4, 1e-5, 1e-5, 1e-5], rtol=1e-7)
  np.testing.assert_array_equal(
      transformer, _values(schedules.step_decay(1e-4, (boundary,), 0.1), steps, jit=True))


def test_dlp_learning_rate_on_dlp_shapes_cpu():
  config = dlp_shapes.get_config("cpu")    # 4,000 // 32 = 125 steps/epoch, milestones 6, 10
  spe = 125
  steps = (0, 749, 750, 751, 1249, 1250, 1251, 1499)
  lr = _values(lambda s: dlp.learning_rate(config, s, spe), steps, jit=True)
  np.testing.assert_array_equal(lr, np.float32([2e-3] * 2 + [2e-3 * 0.5] * 3
                                               + [2e-3 * 0.5 ** 2] * 3))


def test_unsup_parts_learning_rate_on_cub_and_toy():
  config = unsup_parts_cub.get_config()    # poly 0.9 over a fixed 100,000-step horizon
  steps = (0, 50_000, 59_999, 100_001)
  lr = _values(lambda s: unsup_parts.learning_rate(config, s), steps, jit=True)
  assert lr[0] == np.float32(1e-5) and lr[-1] == 0.0
  np.testing.assert_allclose(lr[1:3], [1e-5 * 0.5 ** 0.9, 1e-5 * 0.40001 ** 0.9], rtol=1e-6)
  np.testing.assert_array_equal(lr, _values(schedules.poly_decay(1e-5, 100_000, 0.9), steps,
                                            jit=True))
  toy = unsup_parts_toy.get_config()       # constant schedule
  assert float(unsup_parts.learning_rate(toy, jnp.int32(1999))) == np.float32(3e-4)
