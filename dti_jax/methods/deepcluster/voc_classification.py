"""Pascal VOC 2007 classification from DeepCluster weights (the original's
``eval_voc_classif.py``), on the shared loop; the scoring is in ``voc_evaluation``, whose
evaluator this module hands to the loop (both members of the method live here).

As the original: the weights (a DeepCluster workdir or a converted .msgpack) give the
conv body; the classifier is re-initialised (fc6 and fc7 N(0, 0.01^2), bias 0.1; a new
top layer Linear(fc7 width, 20) with PyTorch's default weights and bias 0.1). The conv
body always runs with its BN running statistics (``model.features.eval()``), the
classifier's dropout is on while training. ``voc.train_from`` "fc6" trains fc6-8 only
(the original's ``--fc6_8 1``), "convL" conv L and everything above ("conv1":
``--fc6_8 0``, all layers); ``voc.train_batchnorm`` also trains every BN scale and shift
(``--train_batchnorm``). Loss: BCE with logits over the 20 classes, difficult labels
masked, summed and divided by the batch size. SGD with momentum 0.9 and coupled weight
decay on the trained parameters, their gradient norm clipped to 10 first (PyTorch's
``clip_grad_norm_``), lr x 0.5 every ``voc.step_size`` iterations. Training views:
flip + RandomResizedCrop(224, scale (0.1, 0.5), ratio 1) from the JPEG.

Deviation: the original's loader walks one fixed shuffle of the images every epoch and
ends each epoch with a short batch; here each epoch is a new permutation of (seed,
epoch) cut into full batches (fixed shapes under jit; the dropped remainder differs
per epoch). The run's length is ``train.num_steps`` iterations, as the original's
``--nit``.
"""

import functools
from collections.abc import Iterator
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from data_pipelines import voc
from dti_jax.methods.deepcluster import network as network_lib
from dti_jax.methods.deepcluster import voc_evaluation
from dti_jax.methods.deepcluster import weights as weights_lib
from dti_jax.nets import alexnet

BATCH_KEYS = ("image", "label")
# arch -> (last conv, its max-pool window, stride); the arch is read from the weights.
LAST_CONV = {"mini_alexnet": (3, 2, 2), "alexnet": (5, 3, 2), "vgg16": (13, 2, 2)}
ARCH_OF_CONVS = {3: "mini_alexnet", 5: "alexnet", 13: "vgg16"}
CLASSIFIER = ("fc6", "fc7", "top")


@flax.struct.dataclass
class VocState:
  step: jax.Array
  params: Any           # the network's conv1.., bn1.., fc6, fc7 and the new "top" layer
  batch_stats: Any      # the weights' BN running statistics (never updated)
  opt_state: Any        # SGD momentum of the trained modules


@functools.lru_cache(maxsize=4)
def loaded(weights: str):
  """(arch, flax module, variables) of a DeepCluster workdir or converted .msgpack."""
  variables = network_lib.load_variables(weights)
  params = variables["params"]
  convs = sum(name.startswith("conv") for name in params)
  if convs not in ARCH_OF_CONVS or "fc7" not in params:
    raise ValueError(f"config.voc.weights={weights}: {convs} conv layers, not a DeepCluster "
                     f"AlexNet, VGG-16 or MNIST-sized network")
  arch = ARCH_OF_CONVS[convs]
  sobel = int(np.shape(params["conv1"]["kernel"])[2]) == 2
  if not sobel and int(np.shape(params["conv1"]["kernel"])[2]) != 3:
    raise ValueError(f"config.voc.weights={weights}: conv1 takes "
                     f"{np.shape(params['conv1']['kernel'])[2]} channels, VOC images 3")
  width = int(np.shape(params["fc7"]["bias"])[0])
  network = (alexnet.MiniAlexNet(sobel=sobel, width=width) if arch == "mini_alexnet"
             else weights_lib.create_network(arch, fc_width=width, sobel=sobel))
  return arch, network, variables


def _loaded(config):
  return loaded(config.voc.weights)


def first_trained_conv(config: ml_collections.ConfigDict) -> int:
  """The lowest trained conv layer (a large number when only fc6-8 train)."""
  return 10**6 if config.voc.train_from == "fc6" else int(config.voc.train_from[4:])


def is_trained(config: ml_collections.ConfigDict, module: str) -> bool:
  """Whether the module ``module`` (conv3, bn3, fc6, top, ...) is trained."""
  if module in CLASSIFIER:
    return True
  if module.startswith("bn") and config.voc.train_batchnorm:
    return True
  layer = int(module[4:] if module.startswith("conv") else module[2:])
  return layer >= first_trained_conv(config)


def split_params(config: ml_collections.ConfigDict, params: dict) -> tuple[dict, dict]:
  """(trained modules, frozen modules) of ``params``."""
  trained = {name: value for name, value in params.items() if is_trained(config, name)}
  return trained, {name: value for name, value in params.items() if name not in trained}


def logits(network, arch: str, params: dict, batch_stats: dict, images: jax.Array,
           dropout_key: jax.Array | None = None) -> jax.Array:
  """[B, C]: the conv body in eval mode, then the classifier (dropout when a key is given;
  AlexNet's before fc6 and fc7, VGG-16's after fc6 only, as the original nets)."""
  body = {name: value for name, value in params.items() if name != "top"}
  _, state = network.apply({"params": body, "batch_stats": batch_stats}, images, False,
                           mutable=["intermediates"])
  last, window, stride = LAST_CONV[arch]
  x = alexnet.max_pool(state["intermediates"][f"relu{last}"][0], window, stride)
  x = alexnet.flatten_channel_major(x)

  def dropout(x, index):
    if dropout_key is None:
      return x
    keep = jax.random.bernoulli(jax.random.fold_in(dropout_key, index), 0.5, x.shape)
    return jnp.where(keep, 2.0 * x, 0.0)

  if arch != "vgg16":
    x = dropout(x, 0)
  x = jax.nn.relu(x @ params["fc6"]["kernel"] + params["fc6"]["bias"])
  x = dropout(x, 1)
  x = jax.nn.relu(x @ params["fc7"]["kernel"] + params["fc7"]["bias"])
  return x @ params["top"]["kernel"] + params["top"]["bias"]


def learning_rate(config: ml_collections.ConfigDict, step: jax.Array) -> jax.Array:
  """lr0 x decay^(step // step_size): the original halves it every 5,000 iterations."""
  v = config.voc
  return v.lr * v.lr_decay ** (step // v.step_size).astype(jnp.float32)


def validate(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
  del image_shape
  v = config.voc
  if not v.weights:
    raise ValueError("config.voc.weights is empty: give a DeepCluster workdir or a "
                     "converted .msgpack file")
  if v.train_from != "fc6" and not (v.train_from.startswith("conv")
                                    and v.train_from[4:].isdigit()):
    raise ValueError(f"config.voc.train_from={v.train_from!r}: 'fc6' (fc6-8 only) or "
                     "'convL' (conv L upward; 'conv1': all layers)")
  if not 0 < v.min_scale <= v.max_scale <= 1:
    raise ValueError(f"config.voc.min_scale={v.min_scale}, max_scale={v.max_scale}: need "
                     "0 < min_scale <= max_scale <= 1")
  if v.step_size < 1:
    raise ValueError(f"config.voc.step_size={v.step_size} must be >= 1")


def load_source(config: ml_collections.ConfigDict, split: str) -> voc.VocSet:
  """A split of the VOC folder config.data.data_dir (train, val, trainval or test)."""
  if config.data.name != "voc2007":
    raise ValueError(f"config.data.name={config.data.name!r}: voc_classification reads "
                     "'voc2007' (a VOCdevkit/VOC2007 folder in config.data.data_dir)")
  return voc.read(config.data.data_dir, split, config.voc.num_classes or None,
                  side=config.data.crop_size)


def init_arrays(config: ml_collections.ConfigDict, source: voc.VocSet) -> dict[str, Any]:
  """The weights' conv body and a re-initialised classifier sized for the crops."""
  arch, network, variables = _loaded(config)
  side = config.data.crop_size
  try:
    shapes = jax.eval_shape(lambda: network.init(jax.random.key(0),
                                                 jnp.zeros((1, side, side, 3)), False))
  except (ValueError, TypeError) as error:
    raise ValueError(f"config.data.crop_size={side} is too small for {arch}") from error
  if shapes["params"]["fc6"]["kernel"].shape[0] < 1:
    raise ValueError(f"config.data.crop_size={side} is too small for {arch}")
  last = LAST_CONV[arch][0]
  if config.voc.train_from != "fc6" and first_trained_conv(config) > last:
    raise ValueError(f"config.voc.train_from={config.voc.train_from!r}: {arch} has conv1.."
                     f"conv{last}")
  params = {}
  for name, value in variables["params"].items():
    if name in ("fc6", "fc7"):
      continue
    for leaf, array in value.items():
      expected = shapes["params"][name][leaf].shape
      if np.shape(array) != expected:
        raise ValueError(f"config.voc.weights: {name}.{leaf} has shape {np.shape(array)}, "
                         f"{arch} expects {expected}")
    params[name] = jax.tree.map(lambda a: np.asarray(a, np.float32), dict(value))
  rng = np.random.default_rng(config.seed)
  for name in ("fc6", "fc7"):
    shape = shapes["params"][name]["kernel"].shape
    params[name] = {"kernel": rng.normal(0.0, 0.01, shape).astype(np.float32),
                    "bias": np.full(shape[1:], 0.1, np.float32)}
  width = shapes["params"]["fc7"]["kernel"].shape[1]
  bound = 1.0 / np.sqrt(width)
  params["top"] = {"kernel": rng.uniform(-bound, bound, (width, source.num_classes)
                                         ).astype(np.float32),
                   "bias": np.full((source.num_classes,), 0.1, np.float32)}
  stats = jax.tree.map(lambda a: np.asarray(a, np.float32), dict(variables["batch_stats"]))
  return {"params": params, "batch_stats": stats}


def momentum(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.trace(decay=config.voc.momentum)


def create_state(config: ml_collections.ConfigDict, key: jax.Array,
                 arrays: dict[str, Any]) -> VocState:
  del key  # the classifier comes from config.seed, see init_arrays
  trained, _ = split_params(config, arrays["params"])
  return VocState(step=jnp.int32(0), params=arrays["params"],
                  batch_stats=arrays["batch_stats"], opt_state=momentum(config).init(trained))


def stage_at(config: ml_collections.ConfigDict, step: int, steps_per_epoch: int) -> str:
  del step, steps_per_epoch
  return "fc6_8" if config.voc.train_from == "fc6" else f"from_{config.voc.train_from}"


def describe_stage(config: ml_collections.ConfigDict, stage: str) -> str:
  arch = _loaded(config)[0]
  bn = ", BN trained" if config.voc.train_batchnorm else ", BN frozen"
  return f"VOC classification ({stage}{bn}) on {arch} weights {config.voc.weights}"


def stage_scalars(stage: str) -> dict[str, float]:
  del stage
  return {}


def stage_meta(stage: str) -> dict[str, Any]:
  return {"trained": stage}


def train_step(state: VocState, batch: dict[str, jax.Array], *,
               config: ml_collections.ConfigDict) -> tuple[VocState, dict[str, jax.Array]]:
  """One SGD step: masked BCE, clipped gradient norm, weight decay, momentum."""
  arch, network, _ = _loaded(config)
  v = config.voc
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 3), state.step)
  images = network_lib.normalize(config, batch["image"])
  targets = (batch["label"] == 1).astype(jnp.float32)
  counted = (batch["label"] != 0).astype(jnp.float32)
  trained, frozen = split_params(config, state.params)

  def loss_fn(trained):
    out = logits(network, arch, {**frozen, **trained}, state.batch_stats, images, key)
    return jnp.sum(optax.sigmoid_binary_cross_entropy(out, targets) * counted) / out.shape[0]

  loss, grads = jax.value_and_grad(loss_fn)(trained)
  norm = optax.tree.norm(grads)
  factor = jnp.minimum(1.0, v.clip_norm / (norm + 1e-6))
  grads = jax.tree.map(lambda g, p: g * factor + v.weight_decay * p, grads, trained)
  updates, opt_state = momentum(config).update(grads, state.opt_state)
  lr = learning_rate(config, state.step)
  trained = jax.tree.map(lambda p, u: p - lr * u, trained, updates)
  return (state.replace(step=state.step + 1, params={**frozen, **trained},
                        opt_state=opt_state),
          {"loss": loss, "learning_rate": lr, "grad_norm": norm})


def step_function(config: ml_collections.ConfigDict, stage: str, steps_per_epoch: int):
  del stage, steps_per_epoch
  return functools.partial(train_step, config=config)


def epoch_start_function(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                         source: voc.VocSet, workdir: str):
  """The epoch's batches: a permutation of (seed, epoch), flip + random resized crops."""
  del mesh, workdir

  def epoch_start(state: VocState, epoch: int, start_batch: int
                  ) -> tuple[VocState, Iterator[dict[str, np.ndarray]], dict, str]:
    order = np.random.default_rng([config.seed, epoch]).permutation(source.num_examples)
    batches = voc.training_batches(
        source, order, global_batch_size=config.train.batch_size,
        size=config.data.crop_size, scale=(config.voc.min_scale, config.voc.max_scale),
        seed=config.seed, epoch=epoch, start_batch=start_batch, workers=config.data.workers,
        process_index=jax.process_index(), process_count=jax.process_count())
    return state, batches, {}, ""

  return epoch_start


def create_evaluator(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                     source: voc.VocSet) -> voc_evaluation.Evaluator:
  """Scores on config.data.test_split (the original: test after trainval)."""
  del source
  arch, network, _ = _loaded(config)
  return voc_evaluation.Evaluator(config, mesh, load_source(config, config.data.test_split),
                                  functools.partial(logits, network, arch))


final_evaluation = voc_evaluation.final_evaluation
