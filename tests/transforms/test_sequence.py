"""Sequence parsing, curriculum skipping, batching with vmap, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.transforms import (
    SPATIAL_MODULES,
    TransformSpec,
    apply_color,
    apply_sequence,
    invert_affine_params,
    invert_color_params,
    invert_sequence,
    parse_sequence,
    warp_affine,
    warp_prototypes,
    warp_tps,
)

ALL_MODULES = ("identity", "color", "affine", "projective", "morpho", "tps")


def random_params(spec, seed=0, scale=0.05, leading=()):
  rng = np.random.default_rng(seed)
  return tuple(jnp.asarray(scale * rng.normal(size=leading + (size,)), jnp.float32)
               for size in spec.param_sizes())


def random_image(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def test_parse_sequence_aliases():
  assert parse_sequence("identity_affine_morpho_tps") == (
      "identity", "affine", "morpho", "tps")
  assert parse_sequence("id_col_aff_proj_homography_thinplatespline_morphological") == (
      "identity", "color", "affine", "projective", "projective", "tps", "morpho")
  assert SPATIAL_MODULES == {"affine", "projective", "tps"}


def test_parse_sequence_unknown_name():
  with pytest.raises(ValueError) as error:
    parse_sequence("identity_rotate_tps")
  message = str(error.value)
  assert "\n" not in message and "'rotate'" in message
  for name in ALL_MODULES:
    assert name in message


def test_spec_sizes_hashable_and_canonical():
  spec = TransformSpec(modules=["id", "col", "aff", "proj", "morpho", "tps"],
                       channels=3)
  assert spec.modules == ALL_MODULES
  assert spec.param_sizes() == (0, 6, 6, 9, 50, 32)
  assert hash(spec) == hash(TransformSpec(modules=ALL_MODULES, channels=3))
  with pytest.raises(ValueError, match="reflection"):
    TransformSpec(modules=("affine",), channels=1, padding_mode="reflection")


def test_identity_returns_image():
  spec = TransformSpec(modules=("identity",), channels=1)
  image = random_image((8, 8, 1))
  np.testing.assert_array_equal(apply_sequence(image, (jnp.zeros(0),), spec, 1), image)


def test_inactive_modules_are_skipped():
  spec = TransformSpec(modules=("identity", "affine", "morpho", "tps"), channels=1)
  image = random_image((8, 8, 1))
  params = random_params(spec, scale=0.3)
  np.testing.assert_array_equal(apply_sequence(image, params, spec, 1), image)
  np.testing.assert_allclose(apply_sequence(image, params, spec, 2),
                             warp_affine(image, params[1], padding_mode="border"),
                             atol=1e-6)
  # TPS at zero is not the identity, so it must not run while inactive.
  zero = tuple(jnp.zeros_like(p) for p in params)
  np.testing.assert_allclose(apply_sequence(image, zero, spec, 2), image, atol=1e-6)


def test_modules_apply_in_written_order():
  spec = TransformSpec(modules=("identity", "color", "tps"), channels=1)
  image = random_image((8, 8, 1))
  params = random_params(spec, scale=0.2)
  expected = warp_tps(apply_color(image, params[1]), params[2], grid_size=4,
                      padding_mode="border")
  np.testing.assert_allclose(apply_sequence(image, params, spec, 3), expected,
                             atol=1e-6)


def test_spatial_only_skips_color_and_morpho():
  spec = TransformSpec(modules=("identity", "color", "affine", "morpho"), channels=1,
                       padding_mode="zeros", kernel_size=3)
  image = random_image((8, 8, 1))
  params = random_params(spec, scale=0.3)
  got = apply_sequence(image, params, spec, 4, spatial_only=True)
  np.testing.assert_allclose(got, warp_affine(image, params[2], padding_mode="zeros"),
                             atol=1e-6)


def test_warp_prototypes_matches_loop():
  spec = TransformSpec(modules=("identity", "color", "affine", "tps"), channels=2)
  batch, n_prototypes = 2, 3
  prototypes = random_image((n_prototypes, 8, 8, 2))
  params = random_params(spec, leading=(batch, n_prototypes))
  got = jax.jit(warp_prototypes, static_argnums=(2, 3))(prototypes, params, spec, 4)
  for b in range(batch):
    for k in range(n_prototypes):
      expected = apply_sequence(prototypes[k], [p[b, k] for p in params], spec, 4)
      np.testing.assert_allclose(got[b, k], expected, atol=1e-5)


def test_gradients_are_finite_with_all_modules_active():
  spec = TransformSpec(modules=ALL_MODULES, channels=1, kernel_size=3)
  prototypes = random_image((2, 8, 8, 1))
  params = random_params(spec, leading=(2, 2))
  images = random_image((2, 8, 8, 1), seed=1)

  def loss(prototypes, params):
    warped = warp_prototypes(prototypes, params, spec, len(ALL_MODULES))
    return jnp.mean((warped - images[:, None]) ** 2)

  grad_prototypes, grad_params = jax.jit(jax.grad(loss, argnums=(0, 1)))(
      prototypes, params)
  assert np.all(np.isfinite(grad_prototypes)) and np.any(grad_prototypes != 0)
  for grad, size in zip(grad_params, spec.param_sizes()):
    assert np.all(np.isfinite(grad))
    assert size == 0 or np.any(grad != 0)


def test_invert_sequence_applies_inverses_in_forward_order():
  spec = TransformSpec(modules=("identity", "color", "affine", "morpho", "tps"),
                       channels=1)
  image = random_image((8, 8, 1))
  params = random_params(spec, scale=0.2)
  expected = warp_affine(apply_color(image, invert_color_params(params[1])),
                         invert_affine_params(params[2]), padding_mode="border")
  np.testing.assert_allclose(invert_sequence(image, params, spec, 5), expected,
                             atol=1e-6)
  np.testing.assert_array_equal(invert_sequence(image, params, spec, 1), image)
