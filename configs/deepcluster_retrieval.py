"""Instance-level retrieval with a frozen DeepCluster network (Oxford5k, Paris6k; spec 6.4).

The original's eval_retrieval.sh: the last conv ReLU map, images resized to a longer
side of 1024, R-MAC with 3 levels, PCA-whitening to 512 learned on the other dataset
(Oxford <-> Paris), dot-product ranking, mAP by the official compute_ap. No training:
the run's final evaluation is the benchmark (final_scores.json: ``<dataset>_map`` and
each query's AP; rankings.json: every query's ranking).

Paper Table 5 (VGG-16 with Sobel, mAP %, single scale 1024, 3 levels): DeepCluster
Oxford5k 61.0, Paris6k 72.0 (unverified); supervised ImageNet VGG-16 with Sobel 72.4 /
81.5 (the authors quote them in deepcluster issue #58). The paper reports no AlexNet
retrieval number.

Variants (joined by commas): ``oxford`` (default) or ``paris``, the evaluated dataset
(the other one learns the whitening); ``vgg16`` (default) or ``alexnet``;
``multiscale``: longer sides 774, 1024, 1274, descriptors summed (deep_retrieval's
--multires); ``smoke``: tiny images, the MNIST-sized network unless an arch is named (tests).

  python -m dti_jax.main --config=configs/deepcluster_retrieval.py:oxford \\
      --config.retrieval.weights=runs/dc_vgg16 --config.data.data_dir=datasets/oxford5k \\
      --config.retrieval.whitening_data_dir=datasets/paris6k --workdir=runs/dc_oxford
"""

import ml_collections

from configs import deepcluster_alexnet

VARIANTS = ("oxford", "paris", "vgg16", "alexnet", "multiscale", "smoke")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  parts = [part for part in variant.split(",") if part]
  if set(parts) - set(VARIANTS):
    raise ValueError(f"configs/deepcluster_retrieval.py: unknown variant "
                     f"{sorted(set(parts) - set(VARIANTS))}; use {list(VARIANTS)} joined by commas")
  if {"oxford", "paris"} <= set(parts) or {"vgg16", "alexnet"} <= set(parts):
    raise ValueError("configs/deepcluster_retrieval.py: choose one of oxford / paris and one "
                     "of vgg16 / alexnet")
  base = deepcluster_alexnet.get_config()
  config = ml_collections.ConfigDict()
  config.method = "retrieval"
  config.seed = 31
  config.eval_only = False
  config.allow_config_change = False

  config.model = ml_collections.ConfigDict()
  config.model.arch = "alexnet" if "alexnet" in parts else "vgg16"

  config.data = ml_collections.ConfigDict()
  config.data.name = "retrieval"
  config.data.data_dir = ""            # the evaluated dataset: jpg/ and lab/ inside
  config.data.split = "eval"
  config.data.final_eval_split = ""
  config.data.mean = base.data.mean    # ImageNet's, as the original
  config.data.std = base.data.std
  config.data.crop_size = 1024         # (reported as the image shape; sizes vary)

  config.retrieval = ml_collections.ConfigDict()
  config.retrieval.weights = ""        # a DeepCluster workdir or a converted .msgpack file
  config.retrieval.dataset = "paris6k" if "paris" in parts else "oxford5k"
  config.retrieval.whitening_data_dir = ""  # the other dataset (Paris6k for Oxford5k)
  config.retrieval.image_dir = "jpg"
  config.retrieval.gt_dir = "lab"
  config.retrieval.max_side = 1024     # S: the longer side of the resized images
  config.retrieval.scale_offsets = (-250, 0, 250) if "multiscale" in parts else (0,)
  config.retrieval.levels = 3          # L: R-MAC levels
  config.retrieval.pca_dim = 512       # whitened dimensions (at most the channels)
  config.retrieval.pad_multiple = 256  # images padded to multiples of it, one compile each

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 8          # only for the loop's bookkeeping: nothing is trained
  config.train.num_epochs = 0
  config.train.num_steps = 0
  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 1
  config.log.checkpoint_every_steps = 0
  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 8           # images per network call
  config.eval.every_steps = 0

  if "smoke" in parts:
    if not {"vgg16", "alexnet"} & set(parts):
      config.model.arch = "mini_alexnet"
    config.data.crop_size = config.retrieval.max_side = 64
    config.retrieval.pad_multiple = 64
    config.retrieval.pca_dim = 32
    if "multiscale" in parts:
      config.retrieval.scale_offsets = (-16, 0, 16)
  return config
