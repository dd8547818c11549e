import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from dti_jax.methods.dti_clustering import model as model_lib
from dti_jax.ops import gaussian


def test_kmeans_distances_are_per_pixel_means_and_loss_is_mean_min():
  rng = np.random.default_rng(0)
  images = rng.random((3, 5, 5, 1)).astype(np.float32)
  recon = rng.random((3, 4, 5, 5, 1)).astype(np.float32)
  d = model_lib.kmeans_distances(images, recon)
  expected = ((images[:, None] - recon) ** 2).mean(axis=(2, 3, 4))
  np.testing.assert_allclose(d, expected, rtol=1e-6)
  np.testing.assert_allclose(model_lib.kmeans_loss(d), expected.min(axis=1).mean(), rtol=1e-6)


def test_gaussian_weights_match_the_original_values():
  w = gaussian.gaussian_map(32, 32, 7.0)[..., 0]
  assert abs(w.max() - 0.9949) < 1e-4 and abs(w[0, 0] - 0.0074) < 1e-4
  assert w.dtype == np.float32


def test_gmm_log_density_matches_scipy():
  rng = np.random.default_rng(1)
  images = rng.random((2, 3, 3, 1))
  means = rng.random((2, 4, 3, 3, 1))
  sigmas = rng.normal(size=(2, 4, 3, 3, 1))
  var_min = 0.0625
  got = model_lib.gmm_log_densities(jnp.asarray(images, jnp.float32), jnp.asarray(means, jnp.float32),
                                    jnp.asarray(sigmas, jnp.float32), var_min)
  ref = stats.norm.logpdf(images[:, None], means, np.sqrt(sigmas ** 2 + var_min)).sum(axis=(2, 3, 4))
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_gmm_loss_gradient_equals_negative_log_likelihood_gradient():
  rng = np.random.default_rng(2)
  log_n = jnp.asarray(rng.normal(size=(6, 3)) * 5, jnp.float32)
  logits = jnp.asarray(rng.normal(size=(3,)), jnp.float32)

  def nll(log_n, logits):
    return -jnp.mean(jax.nn.logsumexp(log_n + jax.nn.log_softmax(logits), axis=1))

  g_loss = jax.grad(model_lib.gmm_loss, argnums=(0, 1))(log_n, logits)
  g_nll = jax.grad(nll, argnums=(0, 1))(log_n, logits)
  for a, b in zip(g_loss, g_nll):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
