"""DeepCluster's part of `dti_jax.infer`: the cluster of each new image.

The network in eval mode gives the features; the last clustering's PCA-whitening, L2
normalisation and nearest k-means centroid (all kept in the state) give the cluster, as
that clustering's last assignment pass gave the training images theirs (ids 0..k-1 as in
the workdir's assignment). Images are read as the feature pass reads them: in-memory
configs resize to the training shape, streamed configs (ImageNet, folders) resize the
shorter side to data.resize_size and take the centre data.crop_size square.

Per image: the cluster and the squared distance to its centroid (whitened space).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from data_pipelines import files, streaming
from dti_jax.methods.deepcluster import clustering
from dti_jax.methods.deepcluster import network as network_lib
from dti_jax.methods.deepcluster import trainer
from dti_jax.run import workdir as workdir_lib
from dti_jax.run.inference import Predictor

HEADER = ("cluster", "distance")
FOLDER = "clusters"


def _assign(state, images, *, config, network):
  features = network.apply({"params": state.params, "batch_stats": state.batch_stats},
                           network_lib.normalize(config, images), False)
  return clustering.assign(state.whitening, state.centroids, features)


def load(workdir: str, config: ml_collections.ConfigDict) -> Predictor:
  """The latest checkpoint of a DeepCluster workdir; a one-line ValueError when it holds
  no clustering yet or was written before checkpoints recorded the image count."""
  meta = workdir_lib.read_meta(workdir)
  if "num_examples" not in meta:
    raise ValueError(f"the checkpoint in {workdir} does not record its image count; "
                     "train the workdir again with this version")
  shape = tuple(meta["image_shape"])
  network = network_lib.create_network(config)
  arrays = {"variables": jax.eval_shape(
      lambda: network.init(jax.random.key(0), jnp.zeros((1, *shape)), False)),
            "assignment": np.zeros((meta["num_examples"],), np.int32)}
  template = jax.eval_shape(lambda: trainer.create_state(config, jax.random.key(0), arrays))
  state, _ = workdir_lib.restore_trained(workdir, template)
  if int(jax.device_get(state.assignment)[0]) < 0:
    raise ValueError(f"{workdir} holds no clustering yet (its checkpoint precedes the "
                     "first epoch)")
  assign = jax.jit(functools.partial(_assign, config=config, network=network))
  return Predictor(config, state, assign, shape)


def read(predictor: Predictor, path: str) -> np.ndarray:
  """uint8 [H, W, C] as the feature pass sees the training images."""
  height, width, channels = predictor.image_shape
  data = predictor.config.data
  with Image.open(path) as image:
    image = files.convert_image(image, 1 if channels == 1 else 3)
    if data.name in streaming.STREAMING_NAMES:  # Resize(resize_size), CenterCrop(crop)
      (w, h), size = image.size, data.resize_size
      image = image.resize((size, int(size * h / w)) if w <= h else (int(size * w / h), size),
                           Image.BILINEAR)
      left = int(round((image.size[0] - width) / 2.0))
      top = int(round((image.size[1] - height) / 2.0))
      image = image.crop((left, top, left + width, top + height))
    elif image.size != (width, height):
      image = image.resize((width, height), Image.BILINEAR)
    pixels = np.asarray(image, np.uint8)
  return pixels.reshape(height, width, channels)


def rows(predictor: Predictor, images: list[np.ndarray], names: list[str],
         out_dir: str) -> list[tuple]:
  """(cluster, squared distance to its centroid) per image."""
  del names, out_dir
  clusters, distances = jax.device_get(predictor.apply(predictor.state, np.stack(images)))
  return [(int(c), float(d)) for c, d in zip(clusters, distances)]
