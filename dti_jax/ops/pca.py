"""PCA-whitening with faiss's conventions, fitted from statistics accumulated batch by batch.

DeepCluster reduces its features with ``faiss.PCAMatrix(d_in, d_out, eigen_power=-0.5)``
and L2-normalises the rows. faiss's PCA (2018 ``VectorTransform.cpp``):

* mu = column mean; S = F^T F - N mu mu^T, the scatter matrix (not divided by N),
  accumulated in float32 and eigen-decomposed in float64, eigenvalues decreasing;
* z_j = u_j^T (x - mu) * lambda_j^(-1/2) for the top d_out eigenpairs, with no epsilon:
  over the fitting set, sum_i z_i z_i^T is exactly the identity.

The statistics (count, sum, sum of outer products) add up over batches and devices, so a
feature pass accumulates them without ever holding the features of the whole dataset.
Fitting and L2 normalisation raise a clear error where faiss would silently produce
inf or NaN (a zero eigenvalue: fewer points than dimensions, or constant features).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class PCAStatistics(NamedTuple):
  count: jax.Array        # [] float32
  total: jax.Array        # [d] float32, sum of rows
  outer: jax.Array        # [d, d] float32, sum of x x^T

  def __add__(self, other: "PCAStatistics") -> "PCAStatistics":
    return PCAStatistics(*(a + b for a, b in zip(self, other)))


class PCAWhitening(NamedTuple):
  mean: np.ndarray        # [d_in]
  projection: np.ndarray  # [d_in, d_out], columns u_j * lambda_j^(-1/2)
  eigenvalues: np.ndarray  # [d_out], of the scatter matrix, decreasing


def statistics(features: jax.Array, mask: jax.Array | None = None) -> PCAStatistics:
  """Statistics of the rows of ``features`` [n, d] (rows where ``mask`` is False skipped)."""
  features = features.astype(jnp.float32)
  if mask is not None:
    features = features * mask[:, None].astype(jnp.float32)
    count = jnp.sum(mask.astype(jnp.float32))
  else:
    count = jnp.float32(features.shape[0])
  outer = jnp.matmul(features.T, features, precision=lax.Precision.HIGHEST)
  return PCAStatistics(count, jnp.sum(features, axis=0), outer)


def fit(stats: PCAStatistics, out_dim: int, relative_eps: float = 0.0) -> PCAWhitening:
  """faiss's PCAMatrix with eigen_power -0.5 from accumulated statistics (host, float64).

  ``relative_eps`` > 0 adds relative_eps * lambda_1 to every kept eigenvalue before the
  whitening (faiss and DeepCluster: 0); small or rank-deficient data needs about 1e-6.
  """
  count, total, outer = (np.asarray(jax.device_get(x), np.float64) for x in stats)
  dim = total.shape[0]
  if not 1 <= out_dim <= dim:
    raise ValueError(f"PCA: output dimension {out_dim} must be in [1, {dim}]")
  mean = total / count
  scatter = outer - count * np.outer(mean, mean)
  eigenvalues, eigenvectors = np.linalg.eigh(scatter)
  order = np.argsort(eigenvalues)[::-1][:out_dim]
  eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
  eigenvalues = eigenvalues + relative_eps * eigenvalues[0]
  smallest = eigenvalues[-1]
  # The statistics are float32 sums: below ~1e-6 of the largest, an eigenvalue is noise.
  if not smallest > 1e-6 * max(eigenvalues[0], 1e-30):
    raise ValueError(f"PCA: eigenvalue {out_dim} of the feature scatter is {smallest:.3g} "
                     f"(largest {eigenvalues[0]:.3g}); whitening to {out_dim} dimensions "
                     f"needs at least {out_dim + 1} points with non-degenerate features "
                     f"(have {int(count)}), or a relative_eps of about 1e-6")
  projection = eigenvectors / np.sqrt(eigenvalues)[None, :]
  return PCAWhitening(mean.astype(np.float32), projection.astype(np.float32),
                      eigenvalues.astype(np.float32))


def whiten(pca: PCAWhitening, features: jax.Array) -> jax.Array:
  """[n, d_in] -> [n, d_out] whitened components."""
  return jnp.matmul(features - pca.mean, pca.projection, precision=lax.Precision.HIGHEST)


def l2_normalize(rows: jax.Array) -> jax.Array:
  """Row-wise x / ||x||, without epsilon, as DeepCluster (a zero row gives NaN there too)."""
  return rows / jnp.linalg.norm(rows, axis=1, keepdims=True)
