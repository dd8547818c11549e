import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.nets import resnet


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name,shape,expected", [
    ("resnet20", (1, 28, 28, 1), 268_784),   # the original's counts (PyTorch, BN affine)
    ("resnet20", (1, 32, 32, 3), 269_072),
    ("resnet18", (1, 32, 32, 3), 11_176_512),
])
def test_parameter_counts_match_the_original(name, shape, expected):
  net, features = resnet.create_encoder(name)
  variables = net.init(jax.random.key(0), jnp.zeros(shape), train=False)
  assert _count(variables["params"]) == expected
  out = net.apply(variables, jnp.ones(shape), train=False)
  assert out.shape == (1, features)


def test_resnet20_stride_two_keeps_pixel_alignment():
  """Symmetric padding: a 28x28 input gives 28 -> 14 -> 7, and a centred impulse stays centred."""
  net, _ = resnet.create_encoder("resnet20")
  x = jnp.zeros((1, 28, 28, 1))
  variables = net.init(jax.random.key(0), x, train=False)
  _, inter = net.apply(variables, x, train=False, capture_intermediates=True)
  shapes = {v.shape for v in jax.tree.leaves(inter["intermediates"])}
  assert (1, 7, 7, 64) in shapes and (1, 14, 14, 32) in shapes


def test_batchnorm_train_mode_updates_running_stats_with_pytorch_momentum():
  net, _ = resnet.create_encoder("resnet20")
  x = jax.random.uniform(jax.random.key(1), (8, 16, 16, 1))
  variables = net.init(jax.random.key(0), x, train=False)
  _, updates = net.apply(variables, x, train=True, mutable=["batch_stats"])
  first_bn = updates["batch_stats"]["BatchNorm_0"]
  conv = jax.lax.conv_general_dilated(
      x, variables["params"]["Conv_0"]["kernel"], (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(first_bn["mean"], 0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="config.model.encoder"):
    resnet.create_encoder("resnet_20")


def test_resnet32_has_five_blocks_per_stage_and_pools_channel_major():
  net = resnet.ResNet32(pool_grid=4)
  x = jax.random.uniform(jax.random.key(2), (2, 64, 64, 3))
  variables = net.init(jax.random.key(0), x, train=False)
  blocks = [name for name in variables["params"] if name.startswith("BasicBlock")]
  assert len(blocks) == 15
  out = net.apply(variables, x, train=False)
  assert out.shape == (2, 64 * 16)
  # Channel-major flattening: entry c * 16 + (i * 4 + j) is the mean of cell (i, j) of channel c.
  feature_map = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
  pooled = resnet.adaptive_average_pool(feature_map, 4)
  np.testing.assert_allclose(pooled[0, 1 * 16 + 2 * 4 + 3],
                             feature_map[0, 4:6, 6:8, 1].mean(), rtol=1e-6)


def test_mixed_precision_keeps_float32_params_and_output_close_to_float32():
  full, _ = resnet.create_encoder("resnet20")
  mixed, _ = resnet.create_encoder("resnet20", mixed_precision=True)
  x = jax.random.uniform(jax.random.key(2), (4, 28, 28, 1))
  variables = full.init(jax.random.key(0), x, train=False)
  assert mixed.init(jax.random.key(0), x, train=False)["params"].keys() == variables["params"].keys()
  assert {leaf.dtype for leaf in jax.tree.leaves(
      mixed.init(jax.random.key(0), x, train=False))} == {jnp.dtype(jnp.float32)}
  reference = full.apply(variables, x, train=True, mutable=["batch_stats"])[0]
  out, updates = mixed.apply(variables, x, train=True, mutable=["batch_stats"])
  assert out.dtype == jnp.float32
  assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
  # bfloat16 has an 8-bit mantissa: relative error of a few 1e-3 per op, not more.
  scale = float(jnp.max(jnp.abs(reference)))
  assert float(jnp.max(jnp.abs(out - reference))) < 0.05 * scale
  assert float(jnp.max(jnp.abs(out - reference))) > 0  # it did compute in bfloat16
