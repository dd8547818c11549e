"""DeepCluster with VGG-16 (BN, Sobel) on ImageNet train: the model of the paper's
detection (VOC 2007, all layers: 65.9 mAP, unverified) and instance-retrieval tables.

Everything else as configs/deepcluster_alexnet.py: k = 10,000, PCA 256, batch 256,
SGD 0.05 / 0.9 / 1e-5, 500 epochs; the VGG classifier has one dropout, after fc6.

Variants: (none) ImageNet; ``smoke``: 256 procedural 64x64 images, k = 8, 1 epoch.

  python -m dti_jax.main --config=configs/deepcluster_vgg16.py --workdir=/tmp/dc_vgg16
"""

import ml_collections

from configs import common, deepcluster_alexnet


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("deepcluster_vgg16", variant, ("", "smoke"))
  config = deepcluster_alexnet.get_config(variant)
  config.model.arch = "vgg16"
  if variant == "smoke":
    config.data.num_examples = 256
  return config
