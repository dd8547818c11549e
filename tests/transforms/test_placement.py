import jax.numpy as jnp
import numpy as np

from dti_jax.transforms import placement


def test_position_at_init_shows_the_sprite_on_half_the_canvas_centred():
  sprite = jnp.ones((4, 4, 1))
  canvas = placement.warp_to_canvas(sprite, placement.position_matrix(jnp.zeros(3)), 8, 8)
  expected = np.zeros((8, 8))
  expected[2:6, 2:6] = 1  # half of an 8x8 canvas, centred
  np.testing.assert_allclose(canvas[..., 0], expected, atol=1e-6)


def test_position_translation_moves_the_sprite_by_whole_pixels():
  sprite = jnp.ones((4, 4, 1))
  # Centre at -t / (1 + e^0) = -t / 2 canvas units; one canvas pixel is 2 / 8 units.
  beta = jnp.array([0.0, -2 * (2 / 8), 0.0])
  canvas = placement.warp_to_canvas(sprite, placement.position_matrix(beta), 8, 8)
  expected = np.zeros((8, 8))
  expected[2:6, 3:7] = 1  # one pixel to the right
  np.testing.assert_allclose(canvas[..., 0], expected, atol=1e-6)


def test_similarity_zero_is_identity_and_sprite_keeps_size():
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.random((6, 6, 3)), jnp.float32)
  out = placement.warp_to_canvas(image, placement.similarity_matrix(jnp.zeros(4)), 6, 6)
  np.testing.assert_allclose(out, image, atol=1e-6)
