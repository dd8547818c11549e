"""Settings shared by the Deep Latent Particles configs (the original's global defaults).

Each experiment config starts from `base_config()` and sets its preset (spec 4.3):
model kind and sizes, loss weights, learning rate, warm-up, data and eval cadence.
CLEVRER and Traffic share `video_frames_config()` and its CPU variant.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.method = "dlp"
  config.seed = 0
  config.eval_only = False
  config.allow_config_change = False
  config.mixed_precision = False

  config.data = ml_collections.ConfigDict()
  config.data.data_dir = ""
  config.data.channels = 0              # image folders: 0 as the files, 1 grey, 3 RGB
  config.data.split = "train"
  config.data.final_eval_split = ""
  config.data.tps_pairs = False         # CelebA: x and x_prior are two TPS warps

  config.model = ml_collections.ConfigDict()
  config.model.prior_channels = (16, 32, 64)
  config.model.sigma = 0.1              # prior std of positions and std of the maps
  config.model.mask_threshold = 0.2
  config.model.pointnet_k = 10
  config.model.reassign_clusters = False
  # A converted checkpoint of the original (scripts/convert_dlp_weights.py): the initial
  # weights, and with eval_only the weights scored (no training checkpoint needed).
  config.model.weights = ""

  config.loss = ml_collections.ConfigDict()
  config.loss.vgg_weights = ""          # converted VGG-16 weights (scripts/convert_vgg16.py)
  config.loss.beta_rec = 1.0
  config.loss.kl_balance = 0.001

  config.optim = ml_collections.ConfigDict()   # Adam per module, as the two originals
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-4
  config.optim.gamma = 0.5              # MultiStepLR factor at each of lr_milestones

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.num_epochs = 100
  config.train.warmup_steps = 0         # > 0 overrides warmup_epochs
  config.train.noisy_factor = 5         # noisy masks until 5 x the warm-up
  config.train.check_cluster_every_steps = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 100
  config.eval.bn_recalibration_batches = 50   # BN statistics re-estimated before scoring
  # As the original's _best model: the state of the lowest validation loss (negative
  # ELBO) among the periodic evaluations, kept in checkpoints_best/.
  config.eval.best_metric = "elbo"
  config.eval.best_mode = "min"
  config.eval.checkpoint = "latest"    # with eval_only: "latest" or "best"
  config.eval.split = ""                # "": score the first images of the training data
  config.eval.heldout_seed = 1          # procedural data: the held-out draw
  config.eval.radii = (3, 4)            # data with instance masks: recall radii (px)

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 100
  return config


def video_frames_config() -> ml_collections.ConfigDict:
  """The object model on 128 px frames from `array_file` (CLEVRER, Traffic): glimpses
  of 32 px from 16 px patches, VGG loss, lr 2e-4, scored on validation.npy."""
  config = base_config()
  config.data.name = "array_file"
  config.data.image_size = 0            # the file's side; the model checks it is 128
  config.data.num_examples = 0          # 0: every frame; n: the first n

  config.model.kind = "object"          # glimpse decoder + alpha compositing (gauss_pointnetpp)
  config.model.image_size = 128
  config.model.enc_channels = (32, 64, 128, 256)
  config.model.patch_size = 16
  config.model.anchor_s = 0.25          # glimpse side round(0.25 * 127) = 32
  config.model.exclusive_patches = False

  config.loss.rec_loss = "vgg"
  config.optim.lr = 2e-4
  config.optim.lr_milestones = (50, 100, 200)   # epochs
  config.eval.num_images = 5000
  config.eval.split = "eval"            # validation.npy
  return config


def shrink_video_frames_for_cpu(config: ml_collections.ConfigDict, num_particles: int,
                                num_prior: int) -> None:
  """The CPU variant of `video_frames_config`: the first 3,000 frames, narrow nets, MSE
  (beta_kl 0.05, the original's MSE preset), batch 16, a 100-step warm-up, lr 2e-3."""
  config.data.num_examples = 3000
  config.model.enc_channels = (8, 16, 32, 64)
  config.model.prior_channels = (8, 16, 32)
  config.model.num_particles = num_particles
  config.model.num_prior = num_prior
  config.loss.rec_loss = "mse"
  config.loss.beta_kl = 0.05
  config.train.batch_size = 16
  config.train.num_epochs = 5           # 187 steps per epoch, 935 steps
  config.train.warmup_steps = 100
  config.optim.lr = 2e-3
  config.optim.lr_milestones = (4,)
  config.eval.num_images = 200
  config.eval.batch_size = 40
  config.eval.every_steps = 250
  config.log.every_steps = 25
  config.log.checkpoint_every_steps = 125
