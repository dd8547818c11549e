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
from dti_jax.run import checkpointing, partition
from dti_jax.run import reporting
from dti_jax.run import workdir as workdir_lib

# arch -> conv layer -> AvgPool (kernel, stride, padding). AlexNet: the original's, to
# 9600 / 9216 / 9600 / 9600 / 9216 values; MiniAlexNet (28 x 28): ours, 4 x 4 grids.
POOLING = {
    "alexnet": {1: (6, 6, 3), 2: (4, 4, 0), 3: (3, 3, 1), 4: (3, 3, 1), 5: (2, 2, 0)},
    "mini_alexnet": {1: (7, 7, 0), 2: (4, 4, 1), 3: (2, 2, 1)},
}


@flax.struct.dataclass
class ProbeState:
  epoch: jax.Array
  step: jax.Array
  probe: Any              # {"kernel": [dims, classes], "bias": [classes]}
  opt_state: Any
  best_top1: jax.Array


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


def _train_step(config, network, variables, state, images, labels, key):
  images = network_lib.normalize(config, images)
  features = jax.lax.stop_gradient(pooled_features(
      network, variables, images, config.model.arch, config.probe.layer))

  def loss_fn(probe):
    logits = features @ probe["kernel"] + probe["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.probe)
  updates, opt_state = optimizer(config).update(grads, state.opt_state, state.probe)
  lr = learning_rate(config, state.step)
  probe = jax.tree.map(lambda p, u: p - lr * u, state.probe, updates)
  return state.replace(probe=probe, opt_state=opt_state, step=state.step + 1), loss


def _eval_step(config, network, variables, probe, images, labels, mask):
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
  correct = (jnp.argmax(probabilities, axis=-1) == labels) & mask
  return jnp.sum(correct)


def _splits(config):
  """(train source, val source, train ids, val ids) of the configured data."""
  d = config.data
  if d.name in streaming.STREAMING_NAMES:
    train = streaming.load(d.name, data_dir=os.path.join(d.data_dir, "train") if d.data_dir
                           else None, tfds_name=d.get("tfds_name", ""), split="train")
    val = streaming.load(d.name, data_dir=os.path.join(d.data_dir, "val") if d.data_dir
                         else None, tfds_name=d.get("tfds_name", ""),
                         split=d.get("val_split", "validation"))
    return train, val, np.arange(train.num_examples), None
  source = data_pipelines.load_source(d.name, data_dir=d.data_dir or None)
  order = np.random.default_rng(0).permutation(source.num_examples)
  return source, source, order[:config.probe.train_size], order[config.probe.train_size:]


def _train_batches(config, source, ids, epoch) -> Iterator[dict[str, np.ndarray]]:
  batch = config.probe.batch_size
  permutation = np.random.default_rng([config.seed, epoch]).permutation(ids)
  if isinstance(source, streaming.StreamingSource):
    yield from streaming.sampled_batches(
        source, permutation, None, global_batch_size=batch, size=config.data.resize_size,
        crop="center_random", resize=config.data.resize_size, flip=False,
        seed=config.seed * 100_003 + epoch, shuffle_buffer=config.data.shuffle_buffer,
        process_index=jax.process_index(), process_count=jax.process_count())
    return  # (the 224 crop and flip are drawn on device, from the 256 x 256 image)
  local = batch // jax.process_count()
  first = jax.process_index() * local
  for step in range(len(permutation) // batch):
    rows = permutation[step * batch + first:step * batch + first + local]
    yield {"image": source.images[rows], "label": source.labels[rows]}


def _val_batches(config, source, ids) -> Iterator[dict[str, np.ndarray]]:
  """Validation images in order, 256 x 256 for the (ten-)crops taken on device."""
  return deepcluster_data.ordered_image_batches(config, source, config.probe.batch_size // 2, ids,
                                           crop_size=config.data.resize_size)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       num_devices: int | None = None) -> dict[str, float]:
  """Trains (or resumes) the probe of ``config.probe.layer`` in ``workdir``."""
  p = config.probe
  arch = config.model.arch
  if arch not in POOLING or p.layer not in POOLING[arch]:
    raise ValueError(f"config.probe.layer={p.layer}: linear probes are defined for "
                     + ", ".join(f"{a} conv{min(t)}..conv{max(t)}" for a, t in POOLING.items()))
  if not p.weights:
    raise ValueError("config.probe.weights is empty: give a DeepCluster workdir or a "
                     "converted .msgpack file")
  mesh = partition.create_mesh(num_devices)
  partition.check_batch_size(p.batch_size, mesh, "config.probe.batch_size")
  network = network_lib.create_network(config)
  variables = jax.device_put(network_lib.load_variables(p.weights), partition.replicated(mesh))
  train_source, val_source, train_ids, val_ids = _splits(config)
  classes = train_source.num_classes
  side = config.data.crop_size if isinstance(train_source, streaming.StreamingSource) else (
      train_source.image_shape[0])
  channels = 3 if isinstance(train_source, streaming.StreamingSource) else (
      train_source.image_shape[2])
  dims = jax.eval_shape(lambda v, x: pooled_features(network, v, x, arch, p.layer),
                        variables, jnp.zeros((1, side, side, channels))).shape[1]
  probe = init_probe(jax.random.key(config.seed), dims, classes)
  state = ProbeState(epoch=jnp.int32(0), step=jnp.int32(0), probe=probe,
                     opt_state=optimizer(config).init(probe), best_top1=jnp.float32(0))
  state = jax.device_put(state, partition.replicated(mesh))
  manager, restored, _ = workdir_lib.open_workdir(workdir, config, state)
  if restored is not None:
    state, _ = restored
    reporting.console(f"resumed the conv{p.layer} probe at epoch {int(state.epoch)}")
  if jax.process_index() == 0:
    workdir_lib.write_config(workdir, config, int(state.epoch))
  writer = reporting.create_writer(workdir)
  reporting.console(f"linear probe on conv{p.layer} ({dims} values) of {p.weights}: "
                    f"{len(train_ids)} training images, {classes} classes")
  repl, data = partition.replicated(mesh), partition.data_sharding(mesh)

  def train_step(state, images, labels, key):
    images = _augment(config, key, images)
    return _train_step(config, network, variables, state, images, labels, key)

  train_step = jax.jit(train_step, in_shardings=(repl, data, data, repl),
                       out_shardings=(repl, repl), donate_argnums=(0,))
  eval_step = jax.jit(lambda probe, images, labels, mask: _eval_step(
      config, network, variables, probe, images, labels, mask),
      in_shardings=(repl, data, data, data), out_shardings=repl)
  key = jax.random.fold_in(jax.random.key(config.seed), 2)
  while int(state.epoch) < p.num_epochs:
    epoch = int(state.epoch)
    losses = []
    for batch in _train_batches(config, train_source, train_ids, epoch):
      batch = partition.to_global(batch, mesh)
      state, loss = train_step(state, batch["image"], batch["label"],
                               jax.random.fold_in(key, state.step))
      losses.append(loss)
    correct, total = 0, 0
    for batch in _val_batches(config, val_source, val_ids):
      total += int(batch["_mask"].sum()) * jax.process_count()
      batch = partition.to_global({"image": batch["image"], "label": batch["label"],
                                   "mask": batch["_mask"]}, mesh)
      correct += int(eval_step(state.probe, batch["image"], batch["label"], batch["mask"]))
    top1 = correct / total
    state = state.replace(epoch=jnp.int32(epoch + 1),
                          best_top1=jnp.maximum(state.best_top1, top1))
    scalars = {"probe/train_loss": float(np.mean(jax.device_get(losses))),
               "probe/top1": top1, "probe/best_top1": float(state.best_top1)}
    writer.write_scalars(epoch + 1, scalars)
    reporting.console(f"conv{p.layer} probe epoch {epoch + 1}/{p.num_epochs} " + " ".join(
        f"{name.split('/')[-1]} {value:.4f}" for name, value in scalars.items()))
    checkpointing.save(manager, epoch + 1, state, {"epoch": epoch + 1})
  manager.wait_until_finished()
  manager.close()
  final = {f"conv{p.layer}_best_top1": float(state.best_top1)}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "probe_scores.json"), "w") as f:
      json.dump(final, f, indent=1)
  writer.flush()
  writer.close()
  return final
