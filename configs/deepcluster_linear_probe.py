"""Linear probe on a frozen conv layer of a DeepCluster network (spec section 6.1).

The original's eval_linear.sh: ImageNet train/val, AvgPool to about 9,600 values, one
linear layer, SGD lr 0.01 / momentum 0.9 / weight decay 1e-7 (lr0 / sqrt(1 + lr0 wd t)),
batch 256, 90 epochs, ten-crop validation; the paper reports the best epoch's top-1.
Paper, AlexNet + Sobel (top-1 %), ImageNet: conv4 39.8 (best layer; conv1 12.9, conv2
29.2, conv3 38.2, conv5 36.1 unverified); Places205: conv4 37.5 (others unverified).

Variants (joined by commas): ``conv1`` .. ``conv5`` (default conv5), ``places205``
(a class-folder copy of Places205 with train/ and val/ in data_dir), ``mnist`` (the
MNIST-sized network's conv1..conv3 on the embedded 5,000 digits, 4,000 / 1,000 fixed
random split, 30 epochs). The weights: a DeepCluster workdir or a converted .msgpack.

  python -m dti_jax.main --config=configs/deepcluster_linear_probe.py:conv4 \\
      --config.probe.weights=/tmp/dc_alexnet --workdir=/tmp/dc_alexnet_probe_conv4
"""

import ml_collections

from configs import deepcluster_alexnet, deepcluster_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  parts = [part for part in variant.split(",") if part]
  known = {f"conv{i}" for i in range(1, 6)} | {"places205", "mnist"}
  if set(parts) - known:
    raise ValueError(f"configs/deepcluster_linear_probe.py: unknown variant "
                     f"{sorted(set(parts) - known)}; use {sorted(known)} joined by commas")
  mnist = "mnist" in parts
  base = deepcluster_mnist.get_config() if mnist else deepcluster_alexnet.get_config()
  config = ml_collections.ConfigDict()
  config.method = "linear_probe"
  config.seed = 31
  config.eval_only = False
  config.allow_config_change = False
  config.data = base.data
  config.data.val_split = "validation"
  config.data.split = "train"
  config.model = base.model

  config.probe = ml_collections.ConfigDict()
  config.probe.weights = ""            # a DeepCluster workdir or a converted .msgpack file
  config.probe.layer = 5
  config.probe.lr = 0.01
  config.probe.momentum = 0.9
  config.probe.weight_decay = 1e-7
  config.probe.ten_crops = True
  config.probe.train_size = 0          # in-memory data: training images of the random split

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 256        # validation batches: half of it
  config.train.num_epochs = 90
  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 500
  config.log.checkpoint_every_steps = 0  # 0: at the end of every epoch
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 128
  config.eval.every_steps = 0          # validated after every epoch by the probe itself

  for part in parts:
    if part.startswith("conv"):
      config.probe.layer = int(part[4:])
  if "places205" in parts:
    config.data.name = "image_folder_stream"
  if mnist:
    config.probe.layer = config.probe.layer if any(p.startswith("conv") for p in parts) else 3
    config.train.num_epochs = 30
    config.train.batch_size = 64
    config.eval.batch_size = 32
    config.probe.train_size = 4000
    config.probe.ten_crops = False
    config.data.resize_size = config.data.crop_size = 28  # no crops: the whole digit
  return config
