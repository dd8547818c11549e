"""Settings shared by the Unsupervised Part Discovery configs (the original's config.yaml).

Every key a run reads is defined here, so a misspelt override fails at parse time.
The experiment files set data, segmenter, weights and schedule; the loss weights,
temperature, warp and colour jitter below are the released config's (spec 4-7).
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.method = "unsup_parts"
  config.seed = 1234
  config.eval_only = False
  config.allow_config_change = False
  config.mixed_precision = False

  config.data = ml_collections.ConfigDict()
  config.data.name = ""
  config.data.data_dir = ""
  config.data.split = "train"
  config.data.image_size = 0
  config.data.channels = 0              # image folders: 0 as the files, 1 grey, 3 RGB
  config.data.num_examples = 0
  config.data.final_eval_split = ""
  config.data.random_flip = True        # horizontal flip of image and mask, p = 0.5

  config.model = ml_collections.ConfigDict()
  config.model.segmenter = "deeplab"    # DeepLab-v2 ResNet-50 (Caffe), output stride 8
  config.model.num_parts = 4            # K
  config.model.width = 64               # channels of the first ResNet stage (64: ResNet-50)
  config.model.bn_mode = "batch"        # "frozen": running statistics also in training
  config.model.backbone_weights = ""    # .npz from scripts/convert_torch_weights.py
  config.model.allow_random_init = False
  config.model.reassign_clusters = False

  config.perceptual = ml_collections.ConfigDict()
  config.perceptual.kind = "vgg19"      # frozen ImageNet VGG-19: relu3_2, relu5_4
  config.perceptual.weights = ""        # .npz from scripts/convert_torch_weights.py --kind=vgg19
  config.perceptual.tap_weights = (0.33, 1.0)
  config.perceptual.seed = 0            # kind "random_vgg" only

  config.loss = ml_collections.ConfigDict()
  config.loss.w_feature = 5.0           # lambda_sc
  config.loss.w_visual = 30.0           # lambda_rgb
  config.loss.w_contrastive = 2300.0    # lambda_contrastive
  config.loss.w_equiv = 5700.0          # lambda_eqv
  config.loss.w_concentration = 0.0     # SCOPS' concentration; not in the released trainer
  config.loss.temperature = 0.19
  config.loss.feature_reduction = "sum"  # the original sums L_f over the batch
  config.loss.lab_scale = 1.0           # Lab as skimage gives it (L in 0..100)

  config.warp = ml_collections.ConfigDict()   # RandTPS, affine mode
  config.warp.sigma = 0.01
  config.warp.max_rotation_degrees = 60.0
  config.warp.scale_range = (0.7, 2.0)  # random_scale_low/high; rho ~ U(1/2.0, 1/0.7)
  config.warp.max_translation = 0.1

  config.jitter = ml_collections.ConfigDict()  # ColorJitter + RandomGrayscale
  config.jitter.brightness = 0.3
  config.jitter.contrast = 0.3
  config.jitter.saturation = 0.2
  config.jitter.hue = 0.2
  config.jitter.p_jitter = 0.8
  config.jitter.p_grayscale = 0.2

  config.optim = ml_collections.ConfigDict()
  config.optim.kind = "sgd"
  config.optim.lr = 1e-5
  config.optim.head_lr_multiplier = 10.0
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4
  config.optim.clip_norm = 5.0
  config.optim.schedule = "poly"
  config.optim.poly_power = 0.9
  config.optim.poly_total_steps = 100_000   # fixed horizon, whatever num_steps is

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 6
  config.train.num_steps = 100_000
  config.train.num_epochs = 0           # unused: the schedule counts steps
  config.train.check_cluster_every_steps = 0

  config.eval = ml_collections.ConfigDict()
  config.eval.protocol = "pixels"
  config.eval.split = "test"
  config.eval.num_images = 0            # 0: the whole split
  config.eval.batch_size = 16
  config.eval.every_steps = 5000
  config.eval.heldout_seed = 1
  config.eval.baselines = False

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 100
  config.log.checkpoint_every_steps = 5000
  return config


def shrink_for_smoke(config: ml_collections.ConfigDict) -> None:
  """The ``smoke`` variant of the dataset configs: a width-8 ResNet and the random phi
  (no weight files), the first 12 training images, 2 steps; mechanics only."""
  config.data.num_examples = 12
  config.model.width = 8
  config.model.allow_random_init = True
  config.perceptual.kind = "random_vgg"
  config.train.num_steps = 2
  config.eval.num_images = 4
  config.eval.every_steps = 1000
  config.log.every_steps = 1
  config.log.checkpoint_every_steps = 2
