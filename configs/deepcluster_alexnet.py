"""DeepCluster (Caron et al., ECCV 2018): AlexNet with BN and Sobel on ImageNet train.

The paper's main model (spec sections 2-5): the fc7 feature before its ReLU (4096-d),
PCA-whitening to 256 + L2, faiss-style k-means with k = 10,000 and 20 iterations every
epoch, the uniform-over-clusters sampler, constant-lr SGD 0.05 / momentum 0.9 / weight
decay 1e-5 (a momentum-free top layer re-created every epoch), batch 256, feature pass
on Resize(256) + CenterCrop(224), training on RandomResizedCrop(224) + flip, 500 epochs
(the paper; the public main.sh leaves 200). ImageNet streams from disk: tfds
`imagenet2012` (prepared once, see the README), or a class-folder copy with
--config.data.name=image_folder_stream --config.data.data_dir=/path/to/train.

Paper, AlexNet linear probes on ImageNet (top-1 %): conv4 39.8 (best layer; other layers
unverified). 500 epochs took 12 days on one P100.

Variants: (none) ImageNet; ``smoke``: 512 procedural 64x64 colour images in memory,
k = 8, fc 512 wide, 1 epoch, a CPU-sized check of the whole loop.

  python -m dti_jax.main --config=configs/deepcluster_alexnet.py --workdir=/tmp/dc_alexnet
"""

import ml_collections

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "smoke"):
    raise ValueError(f"configs/deepcluster_alexnet.py: unknown variant {variant!r}; one of "
                     "('', 'smoke')")
  config = ml_collections.ConfigDict()
  config.method = "deepcluster"
  config.seed = 31
  config.eval_only = False
  config.allow_config_change = False

  config.data = ml_collections.ConfigDict()
  config.data.name = "tfds_stream"     # or image_folder_stream with data_dir
  config.data.tfds_name = "imagenet2012"
  config.data.split = "train"
  config.data.data_dir = ""
  config.data.num_examples = 0         # procedural sources only
  config.data.resize_size = 256        # feature pass: Resize(256) + CenterCrop(224)
  config.data.crop_size = 224
  config.data.shuffle_buffer = 50_000  # tfds: the draws are shuffled in this buffer
  config.data.mean = IMAGENET_MEAN
  config.data.std = IMAGENET_STD

  config.model = ml_collections.ConfigDict()
  config.model.arch = "alexnet"
  config.model.sobel = True
  config.model.feature_dim = 4096

  config.cluster = ml_collections.ConfigDict()
  config.cluster.k = 10_000
  config.cluster.pca_dim = 256
  config.cluster.pca_relative_eps = 0.0
  config.cluster.niter = 20
  config.cluster.tile_size = 4096      # points per distance tile: 4096 x k floats

  config.sampler = ml_collections.ConfigDict()
  config.sampler.compat_index_bug = False

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 256
  config.train.num_epochs = 500
  config.train.lr = 0.05
  config.train.momentum = 0.9
  config.train.weight_decay = 1e-5
  config.train.crop_scale = (0.08, 1.0)
  config.train.flip = True

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 512         # feature pass
  config.eval.representation_scores = False  # kNN / logistic probe hold features on host

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 500

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
