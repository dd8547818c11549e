"""faiss-style PCA-whitening: closed forms and batch-by-batch statistics."""

import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.ops import pca


def _features(n=300, d=12, seed=0):
  rng = np.random.default_rng(seed)
  mixing = rng.normal(size=(d, d)) * np.linspace(3, 0.3, d)[None]
  return (rng.normal(size=(n, d)) @ mixing + 4.0).astype(np.float32)


def test_whitened_components_have_identity_scatter_over_the_fitting_set():
  """faiss whitens with the scatter matrix (N x covariance): sum_i z_i z_i^T = I."""
  features = _features()
  fitted = pca.fit(pca.statistics(jnp.asarray(features)), 5)
  z = np.asarray(pca.whiten(fitted, jnp.asarray(features)), np.float64)
  np.testing.assert_allclose(z.T @ z, np.eye(5), atol=2e-4)
  np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
  assert np.all(np.diff(fitted.eigenvalues) <= 0)


def test_components_are_the_leading_eigenvectors_of_the_scatter_matrix():
  features = _features(seed=1).astype(np.float64)
  fitted = pca.fit(pca.statistics(jnp.asarray(features, jnp.float32)), 3)
  centred = features - features.mean(0)
  eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
  np.testing.assert_allclose(fitted.eigenvalues, eigenvalues[::-1][:3], rtol=1e-4)
  # Each projection column is u_j / sqrt(lambda_j), up to the sign of u_j.
  for j in range(3):
    u = eigenvectors[:, -1 - j]
    column = fitted.projection[:, j] * np.sqrt(fitted.eigenvalues[j])
    np.testing.assert_allclose(np.abs(column @ u), 1.0, rtol=1e-4)


def test_statistics_add_up_over_batches_and_skip_masked_rows():
  features = jnp.asarray(_features(n=90, seed=2))
  parts = [pca.statistics(features[i:i + 30]) for i in range(0, 90, 30)]
  total = parts[0] + parts[1] + parts[2]
  whole = pca.statistics(features)
  for a, b in zip(total, whole):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-3)
  padded = jnp.concatenate([features, jnp.full((10, features.shape[1]), 1e6)])
  masked = pca.statistics(padded, mask=jnp.arange(100) < 90)
  for a, b in zip(masked, whole):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-3)


def test_l2_normalize_gives_unit_rows():
  rows = pca.l2_normalize(jnp.array([[3.0, 4.0], [0.0, -2.0]]))
  np.testing.assert_allclose(np.asarray(rows), [[0.6, 0.8], [0.0, -1.0]])


def test_too_few_points_for_the_output_dimension_is_a_clear_error():
  features = jnp.asarray(_features(n=4, d=12))
  with pytest.raises(ValueError, match="needs at least 7 points .*have 4"):
    pca.fit(pca.statistics(features), 6)


def test_relative_eps_regularises_rank_deficient_features():
  features = jnp.asarray(_features(n=4, d=12))
  fitted = pca.fit(pca.statistics(features), 6, relative_eps=1e-3)
  assert np.all(np.isfinite(fitted.projection))
  np.testing.assert_allclose(fitted.eigenvalues[-1], 1e-3 * (fitted.eigenvalues[0] / (1 + 1e-3)),
                             rtol=1e-2)
