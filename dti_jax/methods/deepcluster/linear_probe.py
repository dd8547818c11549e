"""Linear probes on the frozen conv layers of a DeepCluster network (spec section 6.1).

As the original ``eval_linear.py``: the network is frozen and stays in eval mode (BN
running statistics, Sobel included); the tap is conv layer L's ReLU output (before its
max-pool), average-pooled with zero padding counted (PyTorch's AvgPool2d default) to
about 9,600 values, flattened channel-major, then one Linear(dims, classes) with
PyTorch's default init. SGD with momentum 0.9 and coupled weight decay on the probe
only, learning rate lr0 / sqrt(1 + lr0 * wd * t) at iteration t; training crops
Resize(256) + CenterCrop(256) + RandomCrop(224) + flip; validation on the centre crop
or, with ``probe.ten_crops``, the softmax averaged over the 4 corner and centre crops
and their mirrors, taken from the 256 x 256 centre (the original takes the corners of
the whole resized image). The best epoch's top-1 is what the paper reports.

The offline variant probes the MNIST-sized network on the embedded 5,000 digits with
the fixed random 4,000 / 1,000 split of the DeepCluster run's scores, without crops.
"""

import dataclasses
import functools
import itertools
import json
import os
from typing import Any, Iterator

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import data_pipelines
from data_pipelines import streaming
from dti_jax.methods.deepcluster import data as deepcluster_data, network as network_lib
from dti_jax.run import partition
from dti_jax.run import scores as scores_lib

BATCH_KEYS = ("image", "label")

# arch -> conv layer -> AvgPool (kernel, stride, padding). AlexNet: the original's, to
# 9600 / 9216 / 9600 / 9600 / 9216 values; MiniAlexNet (28 x 28): ours, 4 x 4 grids.
POOLING = {
    "alexnet": {1: (6, 6, 3), 2: (4, 4, 0), 3: (3, 3, 1), 4: (3, 3, 1), 5: (2, 2, 0)},
    "mini_alexnet": {1: (7, 7, 0), 2: (4, 4, 1), 3: (2, 2, 1)},
}


@flax.struct.dataclass
class ProbeState:
  step: jax.Array
  params: Any             # the probe {"kernel": [dims, classes], "bias": [classes]}
  opt_state: Any
  best_top1: jax.Array    # the best validation top-1 of the finished epochs


def avg_pool_count_padding(x: jax.Array, kernel: int, stride: int, pad: int) -> jax.Array:
  """PyTorch AvgPool2d(kernel, stride, pad) with count_include_pad=True, floor mode."""
  summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, kernel, kernel, 1),
                                 (1, stride, stride, 1),
                                 ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return summed / (kernel * kernel)


def pooled_features(network, variables: dict, images: jax.Array, arch: str,
                    layer: int) -> jax.Array:
  """[B, dims]: conv ``layer``'s ReLU map in eval mode, pooled, flattened (C, H, W)."""
  _, state = network.apply(variables, images, False, mutable=["intermediates"])
  tap = state["intermediates"][f"relu{layer}"][0]
  pooled = avg_pool_count_padding(tap, *POOLING[arch][layer])
  return jnp.transpose(pooled, (0, 3, 1, 2)).reshape(pooled.shape[0], -1)


def init_probe(key: jax.Array, dims: int, classes: int) -> dict:
  """PyTorch's Linear default: weight and bias U(-1/sqrt(dims), 1/sqrt(dims))."""
  bound = 1.0 / np.sqrt(dims)
  k_w, k_b = jax.random.split(key)
  return {"kernel": jax.random.uniform(k_w, (dims, classes), minval=-bound, maxval=bound),
          "bias": jax.random.uniform(k_b, (classes,), minval=-bound, maxval=bound)}


def learning_rate(config: ml_collections.ConfigDict, step: jax.Array) -> jax.Array:
  """The original's per-iteration decay lr0 / sqrt(1 + lr0 * wd * t)."""
  p = config.probe
  return p.lr / jnp.sqrt(1.0 + p.lr * p.weight_decay * step)


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """PyTorch SGD: coupled L2, then momentum; the learning rate is applied in the step."""
  return optax.chain(optax.add_decayed_weights(config.probe.weight_decay),
                     optax.trace(decay=config.probe.momentum))


def ten_crops(images: jax.Array, size: int) -> jax.Array:
  """[B, H, W, C] -> [10, B, size, size, C]: 4 corners, centre, then their mirrors
  (torchvision's TenCrop order)."""
  height, width = images.shape[1:3]
  top, left = int(round((height - size) / 2)), int(round((width - size) / 2))
  corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size),
             (top, left)]
  crops = [images[:, y:y + size, x:x + size] for y, x in corners]
  return jnp.stack(crops + [c[:, :, ::-1] for c in crops])


def _augment(config, key, images):
  """RandomCrop(crop_size) + flip of the 256 x 256 streamed images (in-memory: none)."""
  size = config.data.crop_size
  if images.shape[1] == size:
    return images
  k_y, k_x, k_flip = jax.random.split(key, 3)
  batch = images.shape[0]
  ys = jax.random.randint(k_y, (batch,), 0, images.shape[1] - size + 1)
  xs = jax.random.randint(k_x, (batch,), 0, images.shape[2] - size + 1)
  crops = jax.vmap(lambda im, y, x: jax.lax.dynamic_slice(
      im, (y, x, 0), (size, size, im.shape[-1])))(images, ys, xs)
  flip = jax.random.bernoulli(k_flip, 0.5, (batch, 1, 1, 1))
  return jnp.where(flip, crops[:, :, ::-1], crops)


@functools.lru_cache(maxsize=4)
def frozen_network(config_json: str, weights: str):
  """(network, variables) of the probed DeepCluster network, loaded once per run."""
  config = ml_collections.ConfigDict({"model": json.loads(config_json)})
  return network_lib.create_network(config), network_lib.load_variables(weights)


def _frozen(config):
  return frozen_network(config.model.to_json(), config.probe.weights)


def validate(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
  del image_shape
  p, arch = config.probe, config.model.arch
  if arch not in POOLING or p.layer not in POOLING[arch]:
    raise ValueError(f"config.probe.layer={p.layer}: linear probes are defined for "
                     + ", ".join(f"{a} conv{min(t)}..conv{max(t)}" for a, t in POOLING.items()))
  if not p.weights:
    raise ValueError("config.probe.weights is empty: give a DeepCluster workdir or a "
                     "converted .msgpack file")


def load_source(config: ml_collections.ConfigDict, split: str):
  """The probe's training images (``split`` "train") or its validation images ("eval"):
  streamed, the train/ and val/ folders (or tfds splits); in memory, the two parts of a
  fixed random split of the data (probe.train_size images for training)."""
  d = config.data
  if d.name in streaming.STREAMING_NAMES:
    folder = {"train": "train", "eval": "val"}[split]
    tfds_split = {"train": "train", "eval": d.val_split}[split]
    return streaming.load(d.name, data_dir=os.path.join(d.data_dir, folder) if d.data_dir
                          else None, tfds_name=d.get("tfds_name", ""), split=tfds_split)
  source = data_pipelines.load_source(d.name, data_dir=d.data_dir or None)
  order = np.random.default_rng(0).permutation(source.num_examples)
  ids = order[:config.probe.train_size] if split == "train" else order[config.probe.train_size:]
  return dataclasses.replace(source, images=source.images[ids], labels=source.labels[ids])


def init_arrays(config: ml_collections.ConfigDict, source) -> dict[str, Any]:
  """The probe's initial layer (PyTorch's Linear default, from key(seed))."""
  network, variables = _frozen(config)
  side, channels = ((config.data.crop_size, 3) if isinstance(source, streaming.StreamingSource)
                    else (source.image_shape[0], source.image_shape[2]))
  dims = jax.eval_shape(
      lambda v, x: pooled_features(network, v, x, config.model.arch, config.probe.layer),
      variables, jnp.zeros((1, side, side, channels))).shape[1]
  return {"params": init_probe(jax.random.key(config.seed), dims, source.num_classes)}


def create_state(config: ml_collections.ConfigDict, key: jax.Array,
                 arrays: dict[str, Any]) -> ProbeState:
  del key  # the probe comes from key(config.seed), see init_arrays
  return ProbeState(step=jnp.int32(0), params=arrays["params"],
                    opt_state=optimizer(config).init(arrays["params"]),
                    best_top1=jnp.float32(0))


def stage_at(config: ml_collections.ConfigDict, step: int, steps_per_epoch: int) -> str:
  del step, steps_per_epoch
  return f"conv{config.probe.layer}"


def describe_stage(config: ml_collections.ConfigDict, stage: str) -> str:
  return f"linear probe on {stage} of {config.probe.weights}"


def stage_scalars(stage: str) -> dict[str, float]:
  del stage
  return {}


def stage_meta(stage: str) -> dict[str, Any]:
  return {"layer": stage}


def train_step(state: ProbeState, batch: dict[str, jax.Array], *,
               config: ml_collections.ConfigDict) -> tuple[ProbeState, dict[str, jax.Array]]:
  """One SGD step of the probe on frozen, pooled features."""
  network, variables = _frozen(config)
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 2), state.step)
  images = network_lib.normalize(config, _augment(config, key, batch["image"]))
  features = jax.lax.stop_gradient(pooled_features(
      network, variables, images, config.model.arch, config.probe.layer))

  def loss_fn(probe):
    logits = features @ probe["kernel"] + probe["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = optimizer(config).update(grads, state.opt_state, state.params)
  lr = learning_rate(config, state.step)
  probe = jax.tree.map(lambda p, u: p - lr * u, state.params, updates)
  return (state.replace(params=probe, opt_state=opt_state, step=state.step + 1),
          {"loss": loss, "learning_rate": lr})


def step_function(config: ml_collections.ConfigDict, stage: str, steps_per_epoch: int):
  del stage, steps_per_epoch
  return functools.partial(train_step, config=config)


def train_batches(config: ml_collections.ConfigDict, source, epoch: int,
                  start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """This process's rows of the epoch's shuffled batches, from ``start_batch`` on."""
  batch = config.train.batch_size
  permutation = np.random.default_rng([config.seed, epoch]).permutation(source.num_examples)
  if isinstance(source, streaming.StreamingSource):
    yield from itertools.islice(streaming.sampled_batches(
        source, permutation, None, global_batch_size=batch, size=config.data.resize_size,
        crop="center_random", resize=config.data.resize_size, flip=False,
        seed=config.seed * 100_003 + epoch, shuffle_buffer=config.data.shuffle_buffer,
        process_index=jax.process_index(), process_count=jax.process_count()),
        start_batch, None)
    return  # (the 224 crop and flip are drawn on device, from the 256 x 256 image)
  local = batch // jax.process_count()
  first = jax.process_index() * local
  for step in range(start_batch, len(permutation) // batch):
    rows = permutation[step * batch + first:step * batch + first + local]
    yield {"image": source.images[rows], "label": source.labels[rows]}


class Evaluator:
  """Validation top-1 of the probe: the centre crop or ten crops (``probe.ten_crops``)
  of the 256 x 256 validation images; in memory, the held-out part of the split."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config, self.mesh = config, mesh
    self.source = load_source(config, "eval")
    network, variables = _frozen(config)
    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)
    self.correct = jax.jit(lambda probe, images, labels, mask: _correct(
        config, network, variables, probe, images, labels, mask),
        in_shardings=(repl, data, data, data), out_shardings=repl)

  def top1(self, state: ProbeState) -> float:
    correct, total = 0, 0
    for batch in deepcluster_data.ordered_image_batches(
        self.config, self.source, self.config.train.batch_size // 2,
        crop_size=self.config.data.resize_size):
      total += int(batch["_mask"].sum()) * jax.process_count()
      batch = partition.to_global({"image": batch["image"], "label": batch["label"],
                                   "mask": batch["_mask"]}, self.mesh)
      correct += int(self.correct(state.params, batch["image"], batch["label"],
                                  batch["mask"]))
    return correct / total

  def scores(self, state: ProbeState, stage=None) -> dict[str, float]:
    del stage
    return {"top1": self.top1(state)}

  def images(self, state, stage=None) -> dict[str, np.ndarray]:
    del state, stage
    return {}


def _correct(config, network, variables, probe, images, labels, mask):
  """Correct top-1 count over the valid rows (ten-crop softmax average, or one view)."""
  images = network_lib.normalize(config, images)
  size = config.data.crop_size
  if config.probe.ten_crops and images.shape[1] > size:
    views = ten_crops(images, size)
  elif images.shape[1] > size:
    views = ten_crops(images, size)[4:5]  # the centre crop
  else:
    views = images[None]
  probabilities = jnp.mean(jax.vmap(lambda view: jax.nn.softmax(pooled_features(
      network, variables, view, config.model.arch, config.probe.layer) @ probe["kernel"]
      + probe["bias"]))(views), axis=0)
  return jnp.sum((jnp.argmax(probabilities, axis=-1) == labels) & mask)


def epoch_start_function(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, source,
                         workdir: str):
  """The epoch-start hook: scores the epoch just finished (the original validates after
  every epoch and reports the best), then the new epoch's shuffled batches."""
  del workdir
  evaluator = Evaluator(config, mesh)
  layer = f"conv{config.probe.layer}"

  def epoch_start(state: ProbeState, epoch: int, start_batch: int):
    scalars, message = {}, ""
    if start_batch == 0 and epoch > 0:
      top1 = evaluator.top1(state)
      state = state.replace(best_top1=jnp.maximum(state.best_top1, top1))
      scalars = {"probe/top1": top1, "probe/best_top1": float(state.best_top1)}
      message = (f"{layer} probe epoch {epoch}/{config.train.num_epochs} top1 {top1:.4f} "
                 f"best_top1 {float(state.best_top1):.4f}")
    return state, train_batches(config, source, epoch, start_batch), scalars, message

  return epoch_start


def create_evaluator(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                     source) -> Evaluator:
  del source
  return Evaluator(config, mesh)


def final_evaluation(evaluator: Evaluator, state: ProbeState, stage, source, writer,
                     workdir: str) -> dict[str, float]:
  """The best validation top-1 over the epochs (the last one scored here), as the paper
  reports it, to TensorBoard and final_scores.json."""
  del source
  top1 = evaluator.top1(state)
  best = max(float(state.best_top1), top1)
  final = {f"{stage}_best_top1": best}
  writer.write_scalars(int(state.step), {"probe/top1": top1, "probe/best_top1": best})
  scores_lib.write_scores_json(workdir, final)
  return final
