import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.methods.dti_sprites import compositing


def _over(colours, alphas):
  """Back-to-front 'over' compositing written as a loop: out = a c + (1 - a) out."""
  out = np.zeros(colours.shape[1:])
  for c, a in zip(colours, alphas):
    out = a * c + (1 - a) * out
  return out


def test_fixed_order_equals_over_compositing():
  rng = np.random.default_rng(0)
  colours = rng.random((4, 5, 6, 3)).astype(np.float32)
  alphas = rng.random((4, 5, 6, 1)).astype(np.float32)
  alphas[0] = 1.0  # opaque background slot
  got = compositing.compose(colours, alphas, compositing.fixed_occlusion(4))
  np.testing.assert_allclose(got, _over(colours, alphas), rtol=1e-5, atol=1e-6)


def test_one_opaque_layer_returns_that_layer_whatever_is_behind():
  rng = np.random.default_rng(1)
  colours = rng.random((3, 4, 5, 3)).astype(np.float32)
  alphas = rng.random((3, 4, 5, 1)).astype(np.float32)
  alphas[0], alphas[2] = 1.0, 1.0       # background and an opaque front layer
  got = compositing.compose(colours, alphas, compositing.fixed_occlusion(3))
  np.testing.assert_allclose(got, colours[2], atol=1e-6)
  # With a predicted matrix saying layer 2 covers layer 1 fully, the same holds.
  occlusion = compositing.with_background(compositing.predicted_occlusion(jnp.array([30.0])))
  got = compositing.compose(colours, alphas, occlusion)
  np.testing.assert_allclose(got, colours[2], atol=1e-6)


def test_binary_alphas_show_the_front_most_covering_slot():
  colours = np.stack([np.full((2, 2, 1), v, np.float32) for v in (0.1, 0.5, 0.9)])
  alphas = np.zeros((3, 2, 2, 1), np.float32)
  alphas[0] = 1
  alphas[1, 0, :] = 1      # slot 1 covers the top row
  alphas[2, :, 0] = 1      # slot 2 (front) covers the left column
  got = compositing.compose(colours, alphas, compositing.fixed_occlusion(3))[..., 0]
  np.testing.assert_allclose(got, [[0.9, 0.5], [0.9, 0.1]], atol=1e-6)


def test_predicted_occlusion_layout_and_background_extension():
  logits = jnp.array([0.0, 100.0, -100.0])  # pairs (1,0), (2,0), (2,1)
  o = np.asarray(compositing.predicted_occlusion(logits))
  np.testing.assert_allclose(o, [[0, 0.5, 0], [0.5, 0, 1], [1, 0, 0]], atol=1e-6)
  full = np.asarray(compositing.with_background(o))
  assert full.shape == (4, 4)
  np.testing.assert_array_equal(full[0], 0)
  np.testing.assert_array_equal(full[1:, 0], 1)
  np.testing.assert_allclose(full[1:, 1:], o)
  # With a hard order from the logits, compositing equals over-compositing in that order.
  hard = (compositing.with_background(compositing.predicted_occlusion(
      jnp.array([100.0, 100.0, 100.0]))) > 0.5).astype(jnp.float32)
  np.testing.assert_array_equal(hard, compositing.fixed_occlusion(4))


def test_soft_clamp_values_and_gradients():
  x = jnp.array([-1.0, 0.5, 2.0])
  np.testing.assert_allclose(compositing.soft_clamp(x), [-0.01, 0.5, 1.01], atol=1e-7)
  np.testing.assert_allclose(jax.vmap(jax.grad(compositing.soft_clamp))(x), [0.01, 1.0, 0.01])


def test_gaussian_map_peaks_at_the_centre_of_odd_sizes():
  from dti_jax.ops import gaussian
  w = gaussian.gaussian_map(5, 7, 2.0)[..., 0]
  assert w[2, 3] == 1.0 and w.dtype == np.float32
  np.testing.assert_allclose(w[0, 3], np.exp(-0.5 * (2 / 2.0) ** 2), rtol=1e-6)
  np.testing.assert_allclose(w, w[::-1, ::-1])
