import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.methods.dlp import particles
from dti_jax.transforms import placement

# One compiled program per shape instead of one per primitive keeps the file fast.
crop_glimpses = jax.jit(particles.crop_glimpses, static_argnums=2)
paste_glimpses = jax.jit(particles.paste_glimpses, static_argnums=2)


def _grid_sample_translate(image, ty, tx, mode="bilinear"):
  """grid_sample(image, affine_grid([[1, 0, tx], [0, 1, ty]])) written from the definition.

  align_corners=False, zero padding; image [H, W, C] with the output the same size.
  """
  height, width, _ = image.shape
  out = np.zeros_like(image, dtype=np.float64)
  for oy in range(height):
    for ox in range(width):
      gy = (2 * oy + 1) / height - 1 + ty
      gx = (2 * ox + 1) / width - 1 + tx
      py = ((gy + 1) * height - 1) / 2
      px = ((gx + 1) * width - 1) / 2
      if mode == "nearest":
        iy, ix = int(np.round(py)), int(np.round(px))
        if 0 <= iy < height and 0 <= ix < width:
          out[oy, ox] = image[iy, ix]
        continue
      y0, x0 = int(np.floor(py)), int(np.floor(px))
      for iy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for ix, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
          if 0 <= iy < height and 0 <= ix < width:
            out[oy, ox] += wy * wx * image[iy, ix]
  return out


def _reference_crop(image, center, size):
  """The original: translate by the centre, then slice [S//2 - g//2, S//2 + g//2)."""
  height, width, _ = image.shape
  moved = _grid_sample_translate(image, center[0], center[1])
  top, left = height // 2 - size // 2, width // 2 - size // 2
  return moved[top:top + size, left:left + size]


def _reference_paste(patch, center, side):
  """The original: zero-pad to side x side, then translate by minus the centre."""
  pad = (side - patch.shape[0]) // 2
  padded = np.pad(patch, ((pad, pad), (pad, pad), (0, 0)))
  return _grid_sample_translate(padded, -center[0], -center[1])


def test_gaussian_maps_peak_at_corner_pixels_and_follow_the_formula():
  positions = jnp.array([[[-1.0, -1.0], [1.0, 1.0], [0.3, -0.2]]])
  maps = np.asarray(particles.gaussian_maps(positions, 9, 0.1))
  assert maps.shape == (1, 9, 9, 3)
  assert np.unravel_index(np.argmax(maps[0, ..., 0]), (9, 9)) == (0, 0)
  assert np.unravel_index(np.argmax(maps[0, ..., 1]), (9, 9)) == (8, 8)
  u = np.linspace(-1, 1, 9)
  expected = np.exp(-((u[2] - 0.3) ** 2 + (u[6] + 0.2) ** 2) / (2 * 0.1 ** 2))
  np.testing.assert_allclose(maps[0, 2, 6, 2], expected, rtol=1e-5)


def test_spatial_softmax_of_one_hot_and_flat_heatmaps():
  heatmaps = np.zeros((1, 4, 4, 2), np.float32)
  heatmaps[0, 1, 3, 0] = 400.0     # row mean 100 at row 1, column mean 100 at column 3
  got = np.asarray(particles.spatial_softmax_positions(jnp.asarray(heatmaps)))
  u = np.linspace(-1, 1, 4)
  np.testing.assert_allclose(got[0, 0], [u[1], u[3]], atol=1e-6)
  np.testing.assert_allclose(got[0, 1], [0.0, 0.0], atol=1e-7)
  # Rows and columns use their own softmax over means, not a 2-D softmax.
  rng = np.random.default_rng(0)
  h = rng.normal(size=(2, 3, 5, 1)).astype(np.float32)
  got = np.asarray(particles.spatial_softmax_positions(jnp.asarray(h)))
  row_p = np.exp(h.mean(2)) / np.exp(h.mean(2)).sum(1, keepdims=True)
  col_p = np.exp(h.mean(1)) / np.exp(h.mean(1)).sum(1, keepdims=True)
  np.testing.assert_allclose(got[:, 0, 0], (row_p[..., 0] * np.linspace(-1, 1, 3)).sum(1),
                             atol=1e-6)
  np.testing.assert_allclose(got[:, 0, 1], (col_p[..., 0] * np.linspace(-1, 1, 5)).sum(1),
                             atol=1e-6)


def test_patch_origins_to_global_maps_centres_and_corners():
  side, patch = 16, 4
  n = side // patch
  centres = np.asarray(particles.patch_origins_to_global(jnp.zeros((1, n * n, 2)), patch, side))
  for i in range(n):
    for j in range(n):
      pixel = np.array([i * patch, j * patch]) + (patch - 1) / 2
      np.testing.assert_allclose(centres[0, i * n + j], 2 * pixel / (side - 1) - 1, atol=1e-6)
  corner = particles.patch_origins_to_global(-jnp.ones((1, n * n, 2)), patch, side)
  np.testing.assert_allclose(corner[0, 0], [-1.0, -1.0], atol=1e-6)
  last = particles.patch_origins_to_global(jnp.ones((1, n * n, 2)), patch, side)
  np.testing.assert_allclose(last[0, -1], [1.0, 1.0], atol=1e-6)
  with pytest.raises(ValueError, match="expected 16"):
    particles.patch_origins_to_global(jnp.zeros((1, 15, 2)), patch, side)


def test_interpolation_matrix_is_the_dense_form_of_the_taps():
  scale, shift = jnp.float32(1.7), jnp.float32(-0.31)
  matrix = np.asarray(placement.interpolation_matrix(scale, shift, 9, 6))
  low, high, w_low, w_high = map(np.asarray, placement.interpolation_taps(scale, shift, 9, 6))
  dense = np.zeros((9, 6))
  for i in range(9):
    dense[i, low[i]] += w_low[i]
    dense[i, high[i]] += w_high[i]
  np.testing.assert_allclose(matrix, dense, atol=1e-6)


@pytest.mark.parametrize("side,size", [(16, 4), (15, 5), (9, 3)])
def test_crop_at_zero_is_the_central_window_and_one_pixel_moves_it(side, size):
  rng = np.random.default_rng(side)
  images = rng.random((1, side, side, 2)).astype(np.float32)
  start = (side - size) // 2
  centers = jnp.array([[[0.0, 0.0], [2.0 / side, 0.0], [0.0, -2.0 / side]]])
  got = np.asarray(crop_glimpses(jnp.asarray(images), centers, size))
  np.testing.assert_allclose(got[0, 0], images[0, start:start + size, start:start + size],
                             atol=1e-6)
  np.testing.assert_allclose(got[0, 1], images[0, start + 1:start + 1 + size, start:start + size],
                             atol=1e-5)
  np.testing.assert_allclose(got[0, 2], images[0, start:start + size, start - 1:start - 1 + size],
                             atol=1e-5)


@pytest.mark.parametrize("height,width,size", [(16, 16, 4), (15, 15, 4), (16, 16, 5),
                                               (12, 15, 6)])
def test_crop_equals_translate_then_slice(height, width, size):
  rng = np.random.default_rng(height + size)
  images = rng.random((2, height, width, 3)).astype(np.float32)
  centers = rng.uniform(-1.1, 1.1, (2, 3, 2)).astype(np.float32)
  got = np.asarray(crop_glimpses(jnp.asarray(images), jnp.asarray(centers), size))
  assert got.shape == (2, 3, size, size, 3)
  for b in range(2):
    for k in range(3):
      np.testing.assert_allclose(got[b, k], _reference_crop(images[b], centers[b, k], size),
                                 atol=1e-5)
  # One image per particle (masked sources) crops each particle's own image.
  own = np.stack([images * (k + 1) for k in range(3)], axis=1)
  got_own = np.asarray(crop_glimpses(jnp.asarray(own), jnp.asarray(centers), size))
  for k in range(3):
    np.testing.assert_allclose(got_own[:, k], got[:, k] * (k + 1), rtol=1e-5, atol=1e-5)


def test_paste_equals_pad_then_translate():
  rng = np.random.default_rng(3)
  patches = rng.random((2, 3, 4, 4, 4)).astype(np.float32)
  centers = rng.uniform(-1.1, 1.1, (2, 3, 2)).astype(np.float32)
  got = np.asarray(paste_glimpses(jnp.asarray(patches), jnp.asarray(centers), 12))
  assert got.shape == (2, 3, 12, 12, 4)
  for b in range(2):
    for k in range(3):
      np.testing.assert_allclose(got[b, k], _reference_paste(patches[b, k], centers[b, k], 12),
                                 atol=1e-5)
  with pytest.raises(ValueError, match="glimpse size 4 and side 11"):
    paste_glimpses(jnp.asarray(patches), jnp.asarray(centers), 11)


def test_paste_then_crop_returns_the_patch():
  side, size = 16, 6
  rng = np.random.default_rng(4)
  patches = rng.random((1, 2, size, size, 3)).astype(np.float32)
  centers = jnp.array([[[0.0, 0.0], [2 * 3 / side, -2 * 2 / side]]])   # whole pixels
  pasted = paste_glimpses(jnp.asarray(patches), centers, side)
  back = crop_glimpses(pasted, centers, size)
  np.testing.assert_allclose(back, patches, atol=1e-5)
  # Off the grid, interpolating twice at fractional offset f blurs each axis with the
  # taps [f (1 - f), f^2 + (1 - f)^2, f (1 - f)] (zero beyond the patch).
  off = jnp.array([[[0.37, -0.21]]])
  pasted = paste_glimpses(jnp.asarray(patches[:, :1]), off, side)
  back = np.asarray(crop_glimpses(pasted, off, size))

  def blur(f):
    side_tap = f * (1 - f)
    return ((1 - 2 * side_tap) * np.eye(size) + side_tap * np.eye(size, k=1)
            + side_tap * np.eye(size, k=-1))

  fractions = np.mod(np.array([0.37, -0.21]) * side / 2, 1.0)
  expected = np.einsum("ab,bcz,dc->adz", blur(fractions[0]), patches[0, 0], blur(fractions[1]))
  np.testing.assert_allclose(back[0, 0], expected, atol=1e-5)


def test_box_masks_centre_area_shift_and_nearest_sampling():
  side, box = 16, 4
  centers = jnp.array([[[0.0, 0.0], [2.0 / side, 0.0], [0.0, 2.0 / side]]])
  masks = np.asarray(particles.box_masks(centers, box, side))
  expected = np.zeros((side, side))
  expected[6:10, 6:10] = 1
  np.testing.assert_array_equal(masks[0, 0], expected)
  assert masks[0, 0].sum() == box * box
  np.testing.assert_array_equal(masks[0, 1], np.roll(expected, 1, axis=0))
  np.testing.assert_array_equal(masks[0, 2], np.roll(expected, 1, axis=1))
  # Random centres (ties at half pixels are measure zero): nearest grid_sample of the pad.
  rng = np.random.default_rng(5)
  centers = rng.uniform(-1.2, 1.2, (2, 4, 2)).astype(np.float32)
  masks = np.asarray(particles.box_masks(jnp.asarray(centers), box, side))
  padded = np.zeros((side, side, 1))
  padded[6:10, 6:10] = 1
  for b in range(2):
    for k in range(4):
      reference = _grid_sample_translate(padded, -centers[b, k, 0], -centers[b, k, 1],
                                         mode="nearest")
      np.testing.assert_array_equal(masks[b, k], reference[..., 0])
  grad = jax.grad(lambda c: particles.box_masks(c, box, side).sum())(jnp.asarray(centers))
  np.testing.assert_array_equal(grad, 0.0)
  with pytest.raises(ValueError, match="box 5 and side 16"):
    particles.box_masks(jnp.asarray(centers), 5, side)


def test_exclusive_masks_values_and_stop_gradient():
  ones = jnp.ones((1, 2, 3, 3))
  got = np.asarray(particles.exclusive_masks(ones))
  np.testing.assert_array_equal(got[0, 0], 1.0)
  np.testing.assert_array_equal(got[0, 1], 0.0)

  def second(masks):
    return particles.exclusive_masks(masks)[0, 1, 0]

  # Room left (0.7 > 0.5): the second mask passes, with gradient to itself only.
  masks = jnp.array([[[0.3], [0.5]]])
  np.testing.assert_allclose(second(masks), 0.5)
  np.testing.assert_allclose(jax.grad(second)(masks)[0, :, 0], [0.0, 1.0])
  # No room (0.7 < 0.9): clipped to the free space, which carries no gradient.
  masks = jnp.array([[[0.3], [0.9]]])
  np.testing.assert_allclose(second(masks), 0.7, rtol=1e-6)
  np.testing.assert_allclose(jax.grad(second)(masks)[0, :, 0], [0.0, 0.0])
  # Three slots against a loop.
  rng = np.random.default_rng(6)
  masks = rng.random((2, 3, 4)).astype(np.float32)
  expected, occupancy = [masks[:, 0]], masks[:, 0].copy()
  for k in range(1, 3):
    expected.append(np.minimum(1 - occupancy, masks[:, k]))
    occupancy += expected[-1]
  np.testing.assert_allclose(particles.exclusive_masks(jnp.asarray(masks)),
                             np.stack(expected, 1), atol=1e-6)


def test_stitch_shows_background_where_empty_and_front_slot_where_opaque():
  rng = np.random.default_rng(7)
  rgbs = rng.random((1, 3, 4, 4, 3)).astype(np.float32)
  background = rng.random((1, 4, 4, 3)).astype(np.float32)
  alphas = np.zeros((1, 3, 4, 4, 1), np.float32)
  alphas[0, 0, :2] = 1.0                        # slot 0 opaque on the top half
  alphas[0, 1:, :] = rng.random((2, 4, 4, 1))   # later slots everywhere
  alphas[0, 1:, 3] = 0.0                        # but nothing on the last row
  image, objects = map(np.asarray, particles.stitch(jnp.asarray(alphas), jnp.asarray(rgbs),
                                                    jnp.asarray(background)))
  np.testing.assert_allclose(image[0, :2], rgbs[0, 0, :2], atol=1e-6)
  np.testing.assert_allclose(image[0, 3], background[0, 3], atol=1e-6)
  np.testing.assert_allclose(objects[0, :2], rgbs[0, 0, :2], atol=1e-6)
  # Row 2: slot 1 takes a_1, slot 2 takes min(1 - a_1, a_2), the background the rest.
  a1, a2 = alphas[0, 1, 2], alphas[0, 2, 2]
  m2 = np.minimum(1 - a1, a2)
  expected = a1 * rgbs[0, 1, 2] + m2 * rgbs[0, 2, 2]
  np.testing.assert_allclose(objects[0, 2], expected, atol=1e-6)
  np.testing.assert_allclose(image[0, 2], expected + (1 - a1 - m2) * background[0, 2], atol=1e-6)


def test_chamfer_kl_equals_a_double_loop():
  rng = np.random.default_rng(8)
  mu = rng.uniform(-1, 1, (2, 3, 2))
  logvar = rng.normal(-3, 1, (2, 3, 2))
  proposals = rng.uniform(-1, 1, (2, 4, 2))
  prior_logvar = np.log(0.01)
  got = particles.chamfer_kl(*(jnp.asarray(a, jnp.float32) for a in (mu, logvar, proposals)),
                             prior_logvar)
  for b in range(2):
    kl = np.zeros((3, 4))
    for i in range(3):
      for j in range(4):
        for d in range(2):
          kl[i, j] += 0.5 * (prior_logvar - logvar[b, i, d] - 1 + (
              np.exp(logvar[b, i, d]) + (mu[b, i, d] - proposals[b, j, d]) ** 2) / 0.01)
    np.testing.assert_allclose(got[b], kl.min(0).sum() + kl.min(1).sum(), rtol=1e-5)
  same = particles.chamfer_kl(jnp.asarray(mu, jnp.float32),
                              jnp.full((2, 3, 2), prior_logvar, jnp.float32),
                              jnp.asarray(mu, jnp.float32), prior_logvar)
  np.testing.assert_allclose(same, 0.0, atol=1e-5)


def test_gaussian_kl_zero_at_the_prior_and_formula():
  np.testing.assert_array_equal(particles.gaussian_kl(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4))),
                                0.0)
  rng = np.random.default_rng(9)
  mu, logvar = rng.normal(size=(2, 2, 3, 4))
  expected = (-0.5 * (1 + logvar - mu ** 2 - np.exp(logvar))).sum((1, 2))
  np.testing.assert_allclose(particles.gaussian_kl(jnp.asarray(mu, jnp.float32),
                                                   jnp.asarray(logvar, jnp.float32)),
                             expected, rtol=1e-5)


def test_knn_includes_self_first_and_matches_argsort():
  rng = np.random.default_rng(10)
  positions = rng.uniform(-1, 1, (2, 7, 2)).astype(np.float32)
  got = np.asarray(particles.knn_indices(jnp.asarray(positions), 4))
  assert got.shape == (2, 7, 4)
  np.testing.assert_array_equal(got[..., 0], np.broadcast_to(np.arange(7), (2, 7)))
  distances = ((positions[:, :, None] - positions[:, None]) ** 2).sum(-1)
  np.testing.assert_array_equal(got, np.argsort(distances, axis=-1)[..., :4])


def test_psnr():
  x = jnp.full((2, 4, 4, 3), 0.5)
  assert np.isinf(particles.psnr(x, x))
  np.testing.assert_allclose(particles.psnr(x, x + 0.1), 20.0, rtol=1e-5)
  y = x.at[1].add(0.01)
  np.testing.assert_allclose(particles.psnr(x, y, axis=(1, 2, 3))[1], 40.0, rtol=1e-4)
  assert np.isinf(particles.psnr(x, y, axis=(1, 2, 3))[0])


def test_paste_gradient_reaches_the_centres():
  rng = np.random.default_rng(11)
  patches = jnp.asarray(rng.random((1, 2, 4, 4, 3)), jnp.float32)
  target = jnp.asarray(rng.random((1, 2, 12, 12, 3)), jnp.float32)

  def loss(centers):
    return jnp.sum((paste_glimpses(patches, centers, 12) - target) ** 2)

  grad = np.asarray(jax.jit(jax.grad(loss))(jnp.array([[[0.13, -0.27], [-0.4, 0.05]]])))
  assert np.all(np.isfinite(grad))
  assert np.all(np.abs(grad) > 1e-4)


def test_crop_gradient_matches_finite_differences():
  side, size = 16, 4
  rng = np.random.default_rng(12)
  images = jnp.asarray(rng.random((1, side, side, 2)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(1, 2, size, size, 2)), jnp.float32)
  # Half a pixel off the grid (mu S / 2 = k + 0.5), so +-eps stays inside one cell.
  centers = jnp.array([[[2 * 1.5 / side, -2 * 2.5 / side], [-2 * 0.5 / side, 2 * 3.5 / side]]])

  def loss(c):
    return jnp.sum(crop_glimpses(images, c, size) * weights)

  loss = jax.jit(loss)
  grad = np.asarray(jax.jit(jax.grad(loss))(centers))
  eps = 0.02   # 0.16 pixels
  numeric = np.zeros_like(grad)
  for k in range(2):
    for d in range(2):
      step = jnp.zeros_like(centers).at[0, k, d].set(eps)
      numeric[0, k, d] = (loss(centers + step) - loss(centers - step)) / (2 * eps)
  np.testing.assert_allclose(grad, numeric, atol=1e-3, rtol=1e-3)
  assert np.abs(grad).min() > 1e-3
