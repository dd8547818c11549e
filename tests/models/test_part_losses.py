"""Part discovery's losses against direct numpy forms and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.methods.unsup_parts import losses as part_losses


def _inputs(seed=0, batch=3, side=6, parts=4, channels=5):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(batch, side, side, parts))
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  masks = (rng.random((batch, side, side, 1)) > 0.3).astype(np.float64)
  values = rng.normal(size=(batch, side, side, channels)) * masks
  return probabilities * masks, values, masks


def _scatter_direct(assignment, values, masks, eps=1e-5):
  out = []
  for m_b, v_b, fg in zip(assignment, values, masks):
    total = 0.0
    for k in range(m_b.shape[-1]):
      weights = m_b[..., k]
      mean = (weights[..., None] * v_b).sum((0, 1)) / (weights.sum() + eps)
      total += (weights * fg[..., 0] * ((v_b - mean) ** 2).sum(-1)).sum()
    out.append(total / (fg.sum() + eps))
  return np.array(out)


def test_within_part_scatter_equals_the_direct_form():
  assignment, values, masks = _inputs()
  got = part_losses.within_part_scatter(*(jnp.asarray(a, jnp.float32)
                                          for a in (assignment, values, masks)))
  np.testing.assert_allclose(got, _scatter_direct(assignment, values, masks), rtol=2e-5)


def test_feature_loss_sums_and_visual_loss_averages_over_images():
  assignment, values, masks = (jnp.asarray(a, jnp.float32) for a in _inputs(batch=4))
  per_image = _scatter_direct(*(np.asarray(a, np.float64) for a in (assignment, values, masks)))
  np.testing.assert_allclose(part_losses.feature_loss(assignment, values, masks, "sum"),
                             per_image.sum(), rtol=2e-5)
  np.testing.assert_allclose(part_losses.feature_loss(assignment, values, masks, "mean"),
                             per_image.mean(), rtol=2e-5)
  np.testing.assert_allclose(part_losses.visual_consistency_loss(assignment, values, masks),
                             per_image.mean(), rtol=2e-5)


def test_uniform_parts_lower_the_scatter_to_zero():
  """Pixels whose values are constant within each hard part have zero scatter."""
  labels = np.repeat(np.arange(4), 9).reshape(1, 6, 6)
  assignment = np.eye(4)[labels]
  values = np.array([[0.0, 1.0], [2.0, -1.0], [5.0, 5.0], [-3.0, 0.5]])[labels]
  masks = np.ones((1, 6, 6, 1))
  got = part_losses.within_part_scatter(*(jnp.asarray(a, jnp.float32)
                                          for a in (assignment, values, masks)))
  assert abs(float(got[0])) < 1e-4
  shuffled = np.eye(4)[np.random.default_rng(0).permutation(labels.ravel()).reshape(1, 6, 6)]
  assert float(part_losses.within_part_scatter(jnp.asarray(shuffled, jnp.float32),
                                               jnp.asarray(values, jnp.float32),
                                               jnp.asarray(masks, jnp.float32))[0]) > 1.0


def test_contrastive_loss_equals_a_direct_infonce():
  rng = np.random.default_rng(0)
  batch, parts, channels, tau = 5, 4, 7, 0.19
  z = rng.normal(size=(batch, parts, channels))
  key = jax.random.key(11)
  got = float(part_losses.contrastive_loss(jnp.asarray(z, jnp.float32), key, tau))
  other = np.asarray(part_losses.positive_images(key, batch, parts))
  assert np.all(other != np.arange(batch)[:, None])            # never the same image
  zn = z / np.linalg.norm(z, axis=-1, keepdims=True)
  losses = []
  for a in range(batch):
    for i in range(parts):
      positive = zn[a, i] @ zn[other[a, i], i]
      negatives = [zn[a, i] @ zn[b, j] for b in range(batch) for j in range(parts) if j != i]
      logits = np.array([positive] + negatives) / tau
      assert len(logits) == 1 + batch * (parts - 1)
      losses.append(-(logits[0] - np.log(np.exp(logits).sum())))
  np.testing.assert_allclose(got, np.mean(losses), rtol=1e-5)


def test_contrastive_loss_is_finite_for_an_empty_part():
  z = jnp.zeros((3, 4, 5)).at[:, :3].set(1.0)
  loss, grad = jax.value_and_grad(
      lambda z: part_losses.contrastive_loss(z, jax.random.key(0), 0.19))(z)
  assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))


def test_concentration_loss_of_a_single_pixel_part_is_zero():
  assignment = np.zeros((1, 8, 8, 2))
  assignment[0, 3, 5, 0] = 1.0                       # part 0: one pixel
  assignment[0, :, :, 1] = 0.0
  assert abs(float(part_losses.concentration_loss(jnp.asarray(assignment)))) < 1e-9
  spread = assignment.copy()
  spread[0, 0, 0, 1] = spread[0, 7, 7, 1] = 1.0      # part 1: two far pixels
  expected = 2 * (3.5 / 8) ** 2                      # variance in x plus in y
  np.testing.assert_allclose(float(part_losses.concentration_loss(jnp.asarray(spread))),
                             expected, rtol=1e-4)


@pytest.mark.parametrize("same", [True, False])
def test_equivariance_loss_is_zero_only_for_matching_logits(same):
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 5, 5, 4)), jnp.float32)
  other = logits if same else jnp.asarray(rng.normal(size=(2, 5, 5, 4)), jnp.float32)
  loss = float(part_losses.equivariance_loss(logits, other, jnp.ones((2, 5, 5, 1))))
  assert (abs(loss) < 1e-6) if same else (loss > 0.1)
