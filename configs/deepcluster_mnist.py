"""DeepCluster (Caron et al., ECCV 2018) on the embedded 5,000-image MNIST sample, offline.

The specification's offline benchmark: the MNIST-sized AlexNet (Sobel, 3 conv blocks,
fc 256 pre-ReLU clustering feature), k = 100 clusters (10 x the classes, as ImageNet's
10,000), PCA-whitening to 64 + L2, faiss-style k-means with 20 iterations, the uniform
sampler, constant-lr SGD 0.05 / momentum 0.9 / weight decay 1e-5 with a momentum-free
head re-created every epoch, batch 64, RandomResizedCrop(28, scale (0.5, 1)) without
flips, 40 epochs.

Variants: (none) the benchmark; ``smoke``: scikit-learn's 8x8 digits, k = 20, 3 epochs.

  python -m dti_jax.main --config=configs/deepcluster_mnist.py --workdir=/tmp/deepcluster
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "smoke"):
    raise ValueError(f"configs/deepcluster_mnist.py: unknown variant {variant!r}; one of "
                     "('', 'smoke')")
  config = ml_collections.ConfigDict()
  config.method = "deepcluster"
  config.seed = 31
  config.eval_only = False
  config.allow_config_change = False

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist_embedded"
  config.data.data_dir = ""
  config.data.image_size = 0
  config.data.mean = 0.1307           # input normalisation of x / 255
  config.data.std = 0.3081

  config.model = ml_collections.ConfigDict()
  config.model.arch = "mini_alexnet"
  config.model.sobel = True
  config.model.feature_dim = 256     # width of the clustering feature (fc7)

  config.cluster = ml_collections.ConfigDict()
  config.cluster.k = 100
  config.cluster.pca_dim = 64
  config.cluster.pca_relative_eps = 0.0
  config.cluster.niter = 20

  config.sampler = ml_collections.ConfigDict()
  config.sampler.compat_index_bug = False

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.num_epochs = 40
  config.train.lr = 0.05
  config.train.momentum = 0.9
  config.train.weight_decay = 1e-5
  config.train.crop_scale = (0.5, 1.0)   # RandomResizedCrop to the input size, nearest pixel
  config.train.flip = False              # flips change digit identity

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 500
  config.eval.knn_k = 20
  config.eval.probe_train_size = 4000   # kNN / linear probe: 4,000 of a fixed random split
  config.eval.nmi_seeds = 3
  config.eval.representation_scores = True  # k-means NMI, kNN, logistic probe vs random init

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 50

  if variant == "smoke":
    config.data.name = "digits_embedded"
    config.data.mean, config.data.std = 0.27, 0.38
    config.cluster.k = 20
    config.cluster.pca_dim = 32
    config.train.num_epochs = 3
    config.eval.probe_train_size = 1400
  return config
