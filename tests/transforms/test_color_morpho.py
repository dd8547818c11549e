"""Colour and morphological modules against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dti_jax.transforms import apply_color, apply_morpho, invert_color_params

SIGMOID = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731


def test_color_zero_params_identity_and_formula():
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(size=(5, 6, 3)).astype(np.float32))
  np.testing.assert_allclose(apply_color(image, jnp.zeros(6)), image, atol=1e-6)
  beta = jnp.array([0.5, 0.1, -0.2, 0.0, 0.0, -0.3])  # (a0, b0, a1, b1, a2, b2)
  expected = np.asarray(image) * [1.5, 0.8, 1.0] + [0.1, 0.0, -0.3]
  np.testing.assert_allclose(apply_color(image, beta), expected, atol=1e-6)


def test_color_inverse():
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.uniform(size=(5, 6, 2)).astype(np.float32))
  beta = jnp.array([0.5, 0.1, -0.4, 0.2])
  restored = apply_color(apply_color(image, beta), invert_color_params(beta))
  np.testing.assert_allclose(restored, image, atol=1e-6)


def test_morpho_zero_params_is_the_fixed_blur():
  image = jnp.zeros((9, 9, 1)).at[4, 4, 0].set(1.0)
  out = apply_morpho(image, jnp.zeros(50), kernel_size=7)
  centre = SIGMOID(5.0) / (SIGMOID(5.0) + 48 * SIGMOID(-5.0))
  assert abs(centre - 0.7556) < 1e-4
  np.testing.assert_allclose(out[4, 4, 0], centre, atol=1e-6)
  neighbour = SIGMOID(-5.0) / (SIGMOID(5.0) + 48 * SIGMOID(-5.0))
  np.testing.assert_allclose(out[4, 5, 0], neighbour, atol=1e-6)


def test_morpho_padding_counts_in_denominator():
  # A constant image of ones: at the corner only 4 x 4 of the 7 x 7 window is
  # inside, but the zero-padded positions still add kappa to the denominator.
  out = apply_morpho(jnp.ones((8, 8, 1)), jnp.zeros(50), kernel_size=7)
  total = SIGMOID(5.0) + 48 * SIGMOID(-5.0)
  inside = SIGMOID(5.0) + 15 * SIGMOID(-5.0)
  np.testing.assert_allclose(out[0, 0, 0], inside / total, atol=1e-6)
  np.testing.assert_allclose(out[3:5, 3:5, 0], 1.0, atol=1e-6)


@pytest.mark.parametrize("alpha,filter_fn", [(1e3, ndimage.maximum_filter),
                                             (-1e3, ndimage.minimum_filter)])
def test_morpho_large_alpha_tends_to_max_and_min_filters(alpha, filter_fn):
  rng = np.random.default_rng(2)
  # Values on a 0.1 lattice, so exp(alpha * gap) dwarfs the kernel ratio.
  image = (rng.integers(1, 11, size=(10, 10, 1)) / 10).astype(np.float32)
  beta = jnp.zeros(50).at[0].set(alpha)
  out = np.asarray(apply_morpho(jnp.asarray(image), beta, kernel_size=7))
  expected = filter_fn(image[..., 0], size=7, mode="constant", cval=0.0)
  assert np.all(np.isfinite(out))
  np.testing.assert_allclose(out[..., 0], expected, atol=1e-5)


def test_morpho_channels_filtered_independently():
  rng = np.random.default_rng(3)
  image = jnp.asarray(rng.uniform(size=(6, 6, 2)).astype(np.float32))
  beta = jnp.asarray(rng.normal(size=10).astype(np.float32))
  both = apply_morpho(image, beta, kernel_size=3)
  for c in range(2):
    np.testing.assert_allclose(
        both[..., c:c + 1], apply_morpho(image[..., c:c + 1], beta, kernel_size=3),
        atol=1e-6)


def test_morpho_gradient_finite_at_large_alpha():
  image = jnp.asarray(np.random.default_rng(4).uniform(size=(6, 6, 1)),
                      jnp.float32)
  beta = jnp.zeros(10).at[0].set(1e3).at[3].set(-200.0)  # kappa underflows
  loss = lambda b, x: jnp.sum(apply_morpho(x, b, kernel_size=3))  # noqa: E731
  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(beta, image)
  assert all(np.all(np.isfinite(g)) for g in grads)


def _morpho_by_definition(image, beta, kernel_size):
  """The original's formula written out: sum x e^{ax} kappa / sum e^{ax} kappa (zero padding)."""
  k, pad = kernel_size, kernel_size // 2
  offset = jnp.full((k, k), -5.0).at[pad, pad].set(5.0).reshape(-1)
  kappa = jax.nn.sigmoid(beta[1:] + offset).reshape(k, k)
  padded = jnp.pad(image[..., 0], pad)
  h, w = image.shape[:2]
  num = jnp.zeros((h, w))
  den = jnp.zeros((h, w))
  for dy in range(k):
    for dx in range(k):
      window = padded[dy:dy + h, dx:dx + w]
      weight = jnp.exp(beta[0] * window) * kappa[dy, dx]
      num, den = num + window * weight, den + weight
  return (num / den)[..., None]


def test_morpho_value_and_custom_gradient_match_autodiff_of_the_definition():
  rng = np.random.default_rng(7)
  image = jnp.asarray(rng.random((9, 10, 1)), jnp.float32)
  beta = jnp.asarray(rng.normal(size=50) * np.r_[2.0, np.ones(49)], jnp.float32)
  np.testing.assert_allclose(apply_morpho(image, beta, kernel_size=7),
                             _morpho_by_definition(image, beta, 7), rtol=1e-5, atol=1e-6)
  weights = jnp.asarray(rng.normal(size=(9, 10, 1)), jnp.float32)
  objective = lambda fn: lambda x, b: jnp.sum(weights * fn(x, b))
  got = jax.grad(objective(lambda x, b: apply_morpho(x, b, kernel_size=7)), (0, 1))(image, beta)
  want = jax.grad(objective(lambda x, b: _morpho_by_definition(x, b, 7)), (0, 1))(image, beta)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
