"""Linear probes on frozen DeepCluster conv layers: pooling, schedule, crops, a real run."""

import json

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax import methods
from configs import deepcluster_alexnet, deepcluster_linear_probe
from dti_jax.methods.deepcluster import linear_probe, network as network_lib


def _torch_avg_pool(x, kernel, stride, pad):
  """PyTorch AvgPool2d(count_include_pad=True) on [H, W], written out."""
  padded = np.pad(x, pad)
  out = (padded.shape[0] - kernel) // stride + 1
  return np.array([[padded[i * stride:i * stride + kernel, j * stride:j * stride + kernel].sum()
                    / kernel ** 2 for j in range(out)] for i in range(out)])


@pytest.mark.parametrize("kernel,stride,pad,side", [(6, 6, 3, 55), (3, 3, 1, 13), (4, 4, 0, 27)])
def test_average_pool_counts_the_padding(kernel, stride, pad, side):
  x = np.random.default_rng(0).normal(size=(side, side)).astype(np.float32)
  got = linear_probe.avg_pool_count_padding(jnp.asarray(x)[None, ..., None], kernel, stride, pad)
  np.testing.assert_allclose(np.asarray(got)[0, ..., 0], _torch_avg_pool(x, kernel, stride, pad),
                             rtol=1e-5, atol=1e-6)


def test_alexnet_taps_pool_to_the_originals_sizes():
  config = deepcluster_alexnet.get_config()
  network = network_lib.create_network(config)
  variables = jax.eval_shape(lambda: network.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)),
                                                  False))
  dims = [jax.eval_shape(lambda v: linear_probe.pooled_features(
      network, v, jnp.zeros((2, 224, 224, 3)), "alexnet", layer), variables).shape
      for layer in range(1, 6)]
  assert dims == [(2, 9600), (2, 9216), (2, 9600), (2, 9600), (2, 9216)]


def test_learning_rate_decay_and_ten_crops():
  config = deepcluster_linear_probe.get_config("conv3")
  config.probe.weight_decay = 1e-4
  assert float(linear_probe.learning_rate(config, jnp.float32(0))) == pytest.approx(0.01)
  assert float(linear_probe.learning_rate(config, jnp.float32(1e6))) == pytest.approx(
      0.01 / np.sqrt(2.0))
  images = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6, 1)
  crops = np.asarray(linear_probe.ten_crops(images, 4))
  assert crops.shape == (10, 2, 4, 4, 1)
  np.testing.assert_array_equal(crops[0], images[:, :4, :4])       # top left
  np.testing.assert_array_equal(crops[3], images[:, 2:, 2:])       # bottom right
  np.testing.assert_array_equal(crops[4], images[:, 1:5, 1:5])     # centre
  np.testing.assert_array_equal(crops[9], images[:, 1:5, 1:5][:, :, ::-1])


def test_mnist_probe_learns_and_resumes_bit_identical(tmp_path):
  config = deepcluster_linear_probe.get_config("mnist,conv2")
  network = network_lib.create_network(config)
  variables = network.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), False)
  weights = tmp_path / "random.msgpack"
  weights.write_bytes(flax.serialization.msgpack_serialize(jax.device_get(dict(variables))))
  config.probe.weights = str(weights)
  config.train.num_epochs = 2
  straight = methods.train_and_evaluate(config, str(tmp_path / "straight"), num_devices=1)
  # Random conv2 features of 4,000 digits: far above chance (0.1) within two epochs.
  assert straight["conv2_best_top1"] > 0.8
  with open(tmp_path / "straight" / "final_scores.json") as f:
    assert json.load(f) == straight
  config.train.num_epochs = 1
  methods.train_and_evaluate(config, str(tmp_path / "resumed"), num_devices=1)
  config.train.num_epochs = 2
  resumed = methods.train_and_evaluate(config, str(tmp_path / "resumed"), num_devices=1)
  assert resumed == straight


def test_a_layer_the_network_lacks_is_refused(tmp_path):
  config = deepcluster_linear_probe.get_config("mnist,conv5")
  config.probe.weights = str(tmp_path)
  with pytest.raises(ValueError, match=r"config.probe.layer=5: .*mini_alexnet conv1..conv3"):
    methods.train_and_evaluate(config, str(tmp_path / "run"), num_devices=1)
  assert not (tmp_path / "run").exists()
