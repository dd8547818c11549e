"""The DeepLab-v2 ResNet-50 part segmenter and the toy segmenter: shapes, pooling, labels, BN.

Shapes and parameter counts come from ``jax.eval_shape`` (nothing is compiled); values
are checked on narrow (width 4) networks and small inputs.
"""

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.methods.unsup_parts import deeplab_resnet

K = 4


def _shapes(model, image_shape, train=False):
  """(variables, output) as ShapeDtypeStructs."""
  x = jnp.zeros(image_shape)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=train))
  output = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  return variables, output


def _count(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def reference_ceil_max_pool(x: np.ndarray, window=3, stride=2, pad=1) -> np.ndarray:
  """PyTorch's MaxPool2d(ceil_mode=True) on [B, H, W, C]: windows clipped to the input."""
  sizes = []
  for n in x.shape[1:3]:
    out = math.ceil((n + 2 * pad - window) / stride) + 1
    sizes.append(out - 1 if (out - 1) * stride >= n + pad else out)
  result = np.empty((x.shape[0], sizes[0], sizes[1], x.shape[3]), x.dtype)
  for i in range(sizes[0]):
    for j in range(sizes[1]):
      r, c = i * stride - pad, j * stride - pad
      patch = x[:, max(r, 0):r + window, max(c, 0):c + window]
      result[:, i, j] = patch.max(axis=(1, 2))
  return result


@pytest.mark.parametrize("image, grid", [((256, 256), (33, 33)), ((256, 384), (33, 49)),
                                         ((321, 200), (41, 26))])
def test_output_grid(image, grid):
  _, logits = _shapes(deeplab_resnet.DeepLabV2ResNet50(num_parts=K, width=4), (2, *image, 3))
  assert logits.shape == (2, *grid, K)
  assert deeplab_resnet.output_size(*image) == grid


def test_stem_pool_is_ceil_mode():
  pooled = jax.eval_shape(deeplab_resnet.ceil_mode_max_pool, jnp.zeros((1, 128, 128, 2)))
  assert pooled.shape == (1, 65, 65, 2)
  # Negative values: a zero-padded pool would differ at the borders.
  x = np.random.default_rng(0).normal(-5, 1, (2, 9, 12, 3)).astype(np.float32)
  actual = np.asarray(deeplab_resnet.ceil_mode_max_pool(jnp.asarray(x)))
  expected = reference_ceil_max_pool(x)
  assert actual.shape == expected.shape == (2, 5, 7, 3)
  np.testing.assert_array_equal(actual, expected)


def test_resnet50_parameter_counts():
  variables, _ = _shapes(deeplab_resnet.DeepLabV2ResNet50(num_parts=K), (1, 64, 64, 3))
  params = variables["params"]
  head = _count(params.pop("layer5"))
  assert head == 4 * (9 * 1024 * K + K) == 147_472
  assert _count(params) == 23_508_032  # torchvision's ResNet-50 without fc
  assert set(params) == {"conv1", "bn1"} | {f"layer{layer}_{block}" for layer, blocks in
                                             zip((1, 2, 3, 4), (3, 4, 6, 3))
                                             for block in range(blocks)}
  assert all("downsample_conv" in params[f"layer{layer}_0"] for layer in (1, 2, 3, 4))
  assert not any("downsample_conv" in params[f"layer{layer}_1"] for layer in (1, 2, 3, 4))
  assert params["layer2_0"]["conv1"]["kernel"].shape == (1, 1, 256, 128)


def test_param_labels_freeze_exactly_the_bottleneck_and_stem_bns():
  variables, _ = _shapes(deeplab_resnet.DeepLabV2ResNet50(num_parts=K, width=4), (1, 64, 64, 3))
  labels = flax.traverse_util.flatten_dict(deeplab_resnet.param_labels(variables["params"]),
                                           sep="/")
  frozen = sorted(key for key, label in labels.items() if label == "frozen")
  expected = ["bn1/bias", "bn1/scale"] + [
      f"layer{layer}_{block}/bn{n}/{leaf}" for layer, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3))
      for block in range(blocks) for n in (1, 2, 3) for leaf in ("bias", "scale")]
  assert frozen == sorted(expected)
  assert sorted(key for key, label in labels.items() if label == "head") == [
      f"layer5/conv{i}/{leaf}" for i in range(4) for leaf in ("bias", "kernel")]
  assert labels["layer3_0/downsample_bn/scale"] == "backbone"
  assert labels["layer4_2/conv2/kernel"] == "backbone"
  grads = jax.tree.map(lambda s: jnp.ones(s.shape), variables["params"])
  zeroed = flax.traverse_util.flatten_dict(deeplab_resnet.zero_frozen_gradients(grads), sep="/")
  assert all(float(jnp.max(zeroed[key])) == 0 for key in frozen)
  assert float(jnp.min(zeroed["layer3_0/downsample_bn/scale"])) == 1


def test_initialisation():
  x = jnp.zeros((1, 8, 8, 64))
  params = jax.jit(deeplab_resnet.ASPP(K).init)(jax.random.key(0), x)["params"]
  kernels = np.concatenate([np.ravel(params[f"conv{i}"]["kernel"]) for i in range(4)])
  biases = np.concatenate([params[f"conv{i}"]["bias"] for i in range(4)])
  assert abs(kernels.std() - 0.01) < 0.001 and abs(kernels.mean()) < 0.001
  assert np.all(np.abs(biases) <= 1 / np.sqrt(9 * 64)) and np.std(biases) > 0.01
  block = deeplab_resnet.Bottleneck(8, downsample=True)
  variables = jax.jit(lambda key: block.init(key, jnp.zeros((1, 8, 8, 16)), train=False))(
      jax.random.key(1))
  np.testing.assert_array_equal(variables["params"]["bn2"]["scale"], np.ones(8))
  np.testing.assert_array_equal(variables["params"]["downsample_bn"]["bias"], np.zeros(32))
  assert abs(float(np.std(variables["params"]["conv2"]["kernel"])) - 0.01) < 0.002


def test_toy_segmenter_output_and_labels():
  model = deeplab_resnet.ToySegmenter(num_parts=K)
  variables, logits = _shapes(model, (3, 64, 64, 3))
  assert logits.shape == (3, 16, 16, K)
  labels = flax.traverse_util.flatten_dict(deeplab_resnet.param_labels(variables["params"]),
                                           sep="/")
  assert {key for key, label in labels.items() if label == "head"} == {"head/kernel",
                                                                      "head/bias"}
  assert {label for key, label in labels.items() if not key.startswith("head/")} == {"backbone"}
  assert variables["params"]["conv6"]["kernel"].shape == (3, 3, 64, 64)


def _randomised_stats(variables, seed=0):
  rng = np.random.default_rng(seed)
  stats = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32),
                       variables["batch_stats"])
  params = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32),
                        variables["params"])
  return {"params": params, "batch_stats": stats}


def test_bn_modes():
  shape = (2, 24, 24, 3)
  abstract, _ = _shapes(deeplab_resnet.DeepLabV2ResNet50(num_parts=K, width=4), shape)
  variables = _randomised_stats(abstract)
  x = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)
  frozen = deeplab_resnet.DeepLabV2ResNet50(num_parts=K, width=4, bn_mode="frozen")
  batch = deeplab_resnet.DeepLabV2ResNet50(num_parts=K, width=4, bn_mode="batch")
  evaluated = batch.apply(variables, x, train=False)
  trained, state = frozen.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_array_equal(trained, evaluated)
  jax.tree.map(np.testing.assert_array_equal, state["batch_stats"], variables["batch_stats"])
  trained, state = batch.apply(variables, x, train=True, mutable=["batch_stats"])
  assert float(jnp.max(jnp.abs(trained - evaluated))) > 1e-3
  mean = state["batch_stats"]["bn1"]["mean"]
  assert float(jnp.max(jnp.abs(mean - variables["batch_stats"]["bn1"]["mean"]))) > 1e-3
  with pytest.raises(ValueError, match="bn_mode='running'"):
    jax.eval_shape(lambda: deeplab_resnet.DeepLabV2ResNet50(width=4, bn_mode="running").init(
        jax.random.key(0), jnp.zeros(shape), train=False))
