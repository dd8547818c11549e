"""DeepCluster (Caron et al., ECCV 2018): AlexNet with BN and Sobel on ImageNet train.

The paper's main model (spec sections 2-5): the fc7 feature before its ReLU (4096-d),
PCA-whitening to 256 + L2, faiss-style k-means with k = 10,000 and 20 iterations every
epoch, the uniform-over-clusters sampler, constant-lr SGD 0.05 / momentum 0.9 / weight
decay 1e-5 (a momentum-free top layer re-created every epoch), batch 256, feature pass
on Resize(256) + CenterCrop(224), training on RandomResizedCrop(224) + flip, 500 epochs
(the paper; the public main.sh leaves 200). ImageNet streams from disk: tfds
`imagenet2012` (prepared once, see docs/deepcluster.md), or a class-folder copy with
--config.data.name=image_folder_stream --config.data.data_dir=/path/to/train.

Paper, AlexNet linear probes on ImageNet (top-1 %): conv4 39.8 (best layer; other layers
unverified). 500 epochs took 12 days on one P100.

Variants: (none) ImageNet; ``smoke``: 512 procedural 64x64 colour images in memory,
k = 8, fc 512 wide, 1 epoch, a CPU-sized check of the whole loop.

  python -m dti_jax.main --config=configs/deepcluster_alexnet.py --workdir=/tmp/dc_alexnet
"""

import ml_collections

from configs import common, deepcluster_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("deepcluster_alexnet", variant, ("", "smoke"))
  config = deepcluster_common.deepcluster_config()
  if variant == "smoke":
    config.data.name = "multi_dsprites_procedural"
    config.data.num_examples = 512
    config.data.crop_size = 64
    config.model.feature_dim = 512     # the 4096-d scatter's host eigh alone takes 10 s on a CPU
    config.cluster.k = 8
    config.cluster.pca_dim = 32
    config.cluster.tile_size = 256
    config.train.batch_size = 64
    config.train.num_epochs = 1
    config.eval.batch_size = 256
  return config
