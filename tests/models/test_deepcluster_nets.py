"""DeepCluster's networks: the original's parameter counts, feature shapes, eval mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.nets import alexnet, vgg


def _param_counts(module, shape):
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), False))
  counts = {name: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
            for name, tree in variables["params"].items()}
  return counts


def test_alexnet_counts_match_the_original():
  counts = _param_counts(alexnet.AlexNet(), (1, 224, 224, 3))
  body = sum(v for k, v in counts.items() if k.startswith(("conv", "bn")))
  assert round(body / 1e6, 2) == 3.74                  # conv + BN with the 2-channel Sobel input
  assert counts["fc6"] + counts["fc7"] == 9216 * 4096 + 4096 + 4096 * 4096 + 4096
  assert counts["conv1"] == 11 * 11 * 2 * 96 + 96


def test_vgg16_counts_match_the_original():
  counts = _param_counts(vgg.VGG16(), (1, 224, 224, 3))
  assert round(sum(counts.values()) / 1e6, 1) == 134.3
  assert counts["fc6"] == 25088 * 4096 + 4096


def test_mini_alexnet_feature_is_pre_relu_and_eval_mode_is_deterministic():
  net = alexnet.MiniAlexNet()
  images = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  variables = net.init(jax.random.key(0), images, False)
  features, state = net.apply(variables, images, False, mutable=["intermediates"])
  assert features.shape == (4, 256) and float(jnp.min(features)) < 0 < float(jnp.max(features))
  np.testing.assert_array_equal(features, net.apply(variables, images, False))
  shapes = {name: value[0].shape for name, value in state["intermediates"].items()}
  assert shapes == {"relu1": (4, 28, 28, 32), "relu2": (4, 14, 14, 64), "relu3": (4, 7, 7, 128)}
  train_a = net.apply(variables, images, True, rngs={"dropout": jax.random.key(2)},
                      mutable=["batch_stats"])[0]
  train_b = net.apply(variables, images, True, rngs={"dropout": jax.random.key(3)},
                      mutable=["batch_stats"])[0]
  assert not np.allclose(train_a, train_b)                # dropout is on in train mode


def test_initialisation_follows_the_original():
  net = alexnet.MiniAlexNet()
  params = net.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), False)["params"]
  kernel = np.asarray(params["conv2"]["kernel"])         # 3 x 3 x 32 x 64: std sqrt(2 / (9 * 64))
  assert kernel.std() == pytest.approx(np.sqrt(2 / (9 * 64)), rel=0.05)
  assert np.asarray(params["fc6"]["kernel"]).std() == pytest.approx(0.01, rel=0.05)
  assert not np.any(np.asarray(params["conv2"]["bias"])) and not np.any(
      np.asarray(params["fc7"]["bias"]))
