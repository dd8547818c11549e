"""Banks of the originals' transformation-parameter MLPs (prediction heads)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

HIDDEN = 128


def _torch_linear_uniform(fan_in: int):
  """PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for weight and bias."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


class HeadBank(nn.Module):
  """N independent MLPs Linear(F,128)-ReLU-Linear(128,128)-ReLU-Linear(128,P).

  One per prototype (DTI-Clustering) or per layer (DTI-Sprites), stored stacked with a
  leading N axis so one einsum evaluates them all. The last layer is zero so every
  transformation starts at its identity. Input [B, F], output [B, N, P].
  """

  n_heads: int
  out_size: int

  @nn.compact
  def __call__(self, features: jax.Array) -> jax.Array:
    k, f = self.n_heads, features.shape[-1]
    w1 = self.param("w1", _torch_linear_uniform(f), (k, f, HIDDEN))
    b1 = self.param("b1", _torch_linear_uniform(f), (k, HIDDEN))
    w2 = self.param("w2", _torch_linear_uniform(HIDDEN), (k, HIDDEN, HIDDEN))
    b2 = self.param("b2", _torch_linear_uniform(HIDDEN), (k, HIDDEN))
    w3 = self.param("w3", nn.initializers.zeros, (k, HIDDEN, self.out_size))
    b3 = self.param("b3", nn.initializers.zeros, (k, self.out_size))
    h = nn.relu(jnp.einsum("bf,kfh->bkh", features, w1) + b1)
    h = nn.relu(jnp.einsum("bkh,khg->bkg", h, w2) + b2)
    return jnp.einsum("bkh,khp->bkp", h, w3) + b3
