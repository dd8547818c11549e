"""Defaults shared by the DeepCluster configs: the paper's ImageNet setting (spec section 5).

Every key a run reads is defined here, so a misspelt override fails at parse time;
experiment files change what differs.
"""

import ml_collections

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def deepcluster_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.method = "deepcluster"
  config.seed = 31
  config.eval_only = False
  config.allow_config_change = False

  config.data = ml_collections.ConfigDict()
  config.data.name = "tfds_stream"     # or image_folder_stream with data_dir
  config.data.tfds_name = "imagenet2012"
  config.data.split = "train"
  config.data.final_eval_split = ""    # "" = the training split
  config.data.image_size = 0           # in-memory sources: native size
  config.data.channels = 0
  config.data.data_dir = ""
  config.data.num_examples = 0         # procedural sources only
  config.data.resize_size = 256        # feature pass: Resize(256) + CenterCrop(224)
  config.data.crop_size = 224
  config.data.shuffle_buffer = 50_000  # tfds: the draws are shuffled in this buffer
  config.data.mean = IMAGENET_MEAN     # normalisation of x / 255, per channel
  config.data.std = IMAGENET_STD

  config.model = ml_collections.ConfigDict()
  config.model.arch = "alexnet"
  config.model.sobel = True
  config.model.feature_dim = 4096      # width of the clustering feature (fc7)

  config.cluster = ml_collections.ConfigDict()
  config.cluster.k = 10_000
  config.cluster.pca_dim = 256
  config.cluster.pca_relative_eps = 0.0
  config.cluster.niter = 20
  config.cluster.tile_size = 4096      # points per distance tile: tile_size x k floats
  config.cluster.method = "kmeans"     # or "pic": power iteration clustering (k: its cap)
  config.cluster.reassign_epochs = 1   # epochs between two clusterings (--reassign)
  config.cluster.pic = ml_collections.ConfigDict()
  config.cluster.pic.neighbours = 5    # the original's PIC defaults
  config.cluster.pic.sigma = 0.2
  config.cluster.pic.alpha = 0.001
  config.cluster.pic.iterations = 200
  config.cluster.pic.distribute_singletons = True

  config.sampler = ml_collections.ConfigDict()
  config.sampler.compat_index_bug = False

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 256
  config.train.num_epochs = 500
  config.train.lr = 0.05
  config.train.momentum = 0.9
  config.train.weight_decay = 1e-5
  config.train.crop_scale = (0.08, 1.0)  # RandomResizedCrop area fraction
  config.train.flip = True

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 512         # feature pass
  config.eval.representation_scores = False  # kNN / logistic probe hold features on host
  config.eval.knn_k = 20
  config.eval.probe_train_size = 4000
  config.eval.nmi_seeds = 3
  config.eval.nmi_k = 0                # final k-means NMI: its k (0: cluster.k)
  config.eval.every_steps = 0          # 0: scored once, at the end (with random init)

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 500
  config.log.checkpoint_every_steps = 0  # 0: at the end of every epoch
  return config
