"""Every experiment config loads, validates, and carries the original's hyper-parameters."""

import importlib

import jax
import jax.numpy as jnp
import pytest

from dti_jax import transforms
from dti_jax.methods.deepcluster import network as deepcluster_network
from dti_jax.methods.dti_clustering import trainer as dti_clustering

# From the original configs: name -> (data shape, K, sequence, curriculum, batch, lr,
# epochs, lr decay epoch, seed, eval every, check every).
ORIGINAL = {
    "mnist": ((28, 28, 1), 10, "identity_affine_morpho_tps", (5, 15, 20), 128, 1e-3, 40, 35, 2991, 50, 50),
    "mnist_test": ((28, 28, 1), 10, "identity_affine_morpho_tps", (50, 150, 200), 128, 1e-3, 300, 280, 4760, 50, 50),
    "mnist_1k": ((28, 28, 1), 10, "identity_affine_morpho_tps", (100, 500, 700), 100, 1e-3, 1700, 1200, 6065, 40, 40),
    "mnist_color": ((28, 28, 3), 10, "identity_color_affine_tps", (5, 15, 30), 128, 1e-3, 50, 45, 5788, 50, 50),
    "fashion_mnist": ((28, 28, 1), 10, "identity_color_affine_tps", (5, 15, 25), 128, 1e-3, 40, 35, 2895, 50, 50),
    "usps": ((16, 16, 1), 10, "identity_color_affine_tps", (60, 120, 200), 128, 1e-3, 270, 250, 9995, 50, 50),
    "affnist_test": ((40, 40, 1), 10, "identity_affine_morpho_tps", (5, 20, 25), 128, 1e-4, 45, 37, 5912, 400, 400),
    "svhn": ((32, 32, 3), 10, "identity_color_projective", (2, 18), 128, 1e-3, 33, 30, 4873, 1000, 100),
    "frgc": ((32, 32, 3), 20, "identity_color_affine_tps", (50, 200, 400), 128, 1e-3, 700, 650, 8903, 20, 20),
    "instagram": ((128, 128, 3), 40, "identity_color_projective", (5, 15), 64, 1e-3, 110, 100, 7832, 100, 100),
    "megadepth": ((128, 128, 3), 20, "identity_color_projective", (150, 400), 64, 1e-3, 1100, 900, 7832, 100, 100),
}


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_config_matches_the_original(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  shape, k, sequence, curriculum, batch, lr, epochs, decay, seed, every, check = ORIGINAL[name]
  dti_clustering.validate(config, shape)
  assert config.model.n_prototypes == k
  assert transforms.parse_sequence(config.model.transformation_sequence) == tuple(sequence.split("_"))
  assert tuple(config.train.curriculum_epochs) == curriculum
  assert (config.train.batch_size, config.optim.lr, config.train.num_epochs) == (batch, lr, epochs)
  assert tuple(config.optim.lr_decay_epochs) == (decay,)
  assert (config.seed, config.eval.every_steps, config.train.check_cluster_every_steps) == (
      seed, every, check)
  assert config.model.encoder == ("resnet18" if shape[0] == 128 else "resnet20")
  assert config.model.padding_mode == ("zeros" if name == "usps" else "border")
  assert config.model.gaussian_weights == (name == "svhn")


def test_embedded_variants_and_unknown_variant():
  from configs import mnist
  assert mnist.get_config("embedded_gmm").model.name == "dtigmm"
  assert mnist.get_config("embedded").data.name == "mnist_embedded"
  with pytest.raises(ValueError, match="unknown variant 'tiny'"):
    mnist.get_config("tiny")


@pytest.mark.parametrize("name,arch", [("deepcluster_alexnet", "alexnet"),
                                       ("deepcluster_vgg16", "vgg16")])
def test_deepcluster_imagenet_configs_carry_the_papers_settings(name, arch):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert (config.model.arch, config.model.sobel, config.model.feature_dim) == (arch, True, 4096)
  assert (config.cluster.k, config.cluster.pca_dim, config.cluster.niter,
          config.cluster.pca_relative_eps) == (10_000, 256, 20, 0.0)
  t = config.train
  assert (t.batch_size, t.num_epochs, t.lr, t.momentum, t.weight_decay) == (
      256, 500, 0.05, 0.9, 1e-5)
  assert (tuple(t.crop_scale), t.flip, config.seed) == ((0.08, 1.0), True, 31)
  assert (config.data.resize_size, config.data.crop_size) == (256, 224)
  assert not config.sampler.compat_index_bug
  smoke = importlib.import_module(f"configs.{name}").get_config("smoke")
  network = deepcluster_network.create_network(smoke)
  shapes = jax.eval_shape(lambda: network.apply(
      network.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), False),
      jnp.zeros((2, 64, 64, 3)), False))
  assert shapes.shape == (2, smoke.model.feature_dim)
