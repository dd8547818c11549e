"""DeepCluster's networks and the parts of its update that do not depend on the data:
the convnet, input normalisation, the random resized crop, the body's SGD and the top
layer, which is re-created every epoch and trained without momentum."""

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from dti_jax.nets import alexnet, vgg
from dti_jax.run import checkpointing

ARCHS = {"mini_alexnet": alexnet.MiniAlexNet, "alexnet": alexnet.AlexNet, "vgg16": vgg.VGG16}


def create_network(config: ml_collections.ConfigDict):
  if config.model.arch not in ARCHS:
    raise ValueError(f"config.model.arch={config.model.arch!r} is not one of {sorted(ARCHS)}")
  width = {"mini_alexnet": "width"}.get(config.model.arch, "fc_width")
  return ARCHS[config.model.arch](sobel=config.model.sobel,
                                  **{width: config.model.feature_dim})


def body_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """PyTorch SGD: coupled L2 on every parameter, then momentum, constant lr."""
  t = config.train
  return optax.chain(optax.add_decayed_weights(t.weight_decay),
                     optax.sgd(t.lr, momentum=t.momentum))


def head_update(config: ml_collections.ConfigDict, head: dict, grads: dict) -> dict:
  """The top layer's SGD without momentum (no state): p -= lr * (g + wd * p)."""
  t = config.train
  return jax.tree.map(lambda p, g: p - t.lr * (g + t.weight_decay * p), head, grads)


def new_head(key: jax.Array, features: int, k: int) -> dict:
  return {"kernel": 0.01 * jax.random.normal(key, (features, k)), "bias": jnp.zeros((k,))}


def normalize(config: ml_collections.ConfigDict, images_uint8: jax.Array) -> jax.Array:
  """x / 255, then (x - mean) / std per channel."""
  mean, std = (jnp.asarray(v, jnp.float32) for v in (config.data.mean, config.data.std))
  return (images_uint8.astype(jnp.float32) / 255.0 - mean) / std


def random_resized_crop(key: jax.Array, images: jax.Array, scale: tuple[float, float],
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> jax.Array:
  """Per-image random crop of area fraction in ``scale`` and aspect ratio in ``ratio``
  (log-uniform), resized back to the input size with nearest-pixel sampling.

  torchvision retries 10 times when the box does not fit; here the box is clipped to
  the image instead.
  """
  batch, height, width, _ = images.shape
  k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(k_area, (batch,), minval=scale[0],
                                             maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(k_ratio, (batch,), minval=np.log(ratio[0]),
                                      maxval=np.log(ratio[1])))
  box_w = jnp.clip(jnp.sqrt(area * aspect), 1, width)
  box_h = jnp.clip(jnp.sqrt(area / aspect), 1, height)
  y0 = jax.random.uniform(k_y, (batch,)) * (height - box_h)
  x0 = jax.random.uniform(k_x, (batch,)) * (width - box_w)
  rows = jnp.floor(y0[:, None] + (jnp.arange(height) + 0.5) * box_h[:, None] / height)
  cols = jnp.floor(x0[:, None] + (jnp.arange(width) + 0.5) * box_w[:, None] / width)
  rows = jnp.clip(rows, 0, height - 1).astype(jnp.int32)
  cols = jnp.clip(cols, 0, width - 1).astype(jnp.int32)
  return jax.vmap(lambda image, r, c: image[r][:, c])(images, rows, cols)


def load_variables(path: str) -> dict[str, Any]:
  """{"params", "batch_stats"} of a DeepCluster network, from a run's workdir (its latest
  checkpoint) or from a ``.msgpack`` file written by scripts/convert_deepcluster_checkpoint.py.
  """
  if os.path.isfile(path):
    with open(path, "rb") as f:
      tree = flax.serialization.msgpack_restore(f.read())
    missing = {"params", "batch_stats"} - set(tree)
    if missing:
      raise ValueError(f"{path} has no {sorted(missing)}: not a converted DeepCluster network")
    return {"params": tree["params"], "batch_stats": tree["batch_stats"]}
  directory = os.path.join(path, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{path} is neither a DeepCluster workdir (no checkpoints/ "
                            "folder) nor a converted .msgpack file")
  manager = checkpointing.create_manager(path)
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{directory} holds no checkpoint yet")
  state = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  manager.close()
  return {"params": state["params"], "batch_stats": state["batch_stats"]}
