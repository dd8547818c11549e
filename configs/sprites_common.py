"""Defaults shared by every DTI-Sprites config; experiment files change what differs.

Every key a run reads is defined here, so a misspelt override fails at parse time.
Durations are in epochs (as the original configs) or steps (`*_every_steps`).
"""

import ml_collections

from configs import common


def dti_sprites_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.method = "dti_sprites"
  config.seed = 0
  config.eval_only = False
  config.mixed_precision = False     # encoder convolutions in bfloat16 (params stay float32)
  config.allow_config_change = False  # resume a workdir saved with another config

  config.data = ml_collections.ConfigDict()
  config.data.name = "tetrominoes_procedural"
  config.data.split = "train"
  config.data.data_dir = ""
  config.data.image_size = 0
  config.data.channels = 0             # image folders: 0 as the files, 1 grey, 3 RGB
  config.data.num_examples = 0         # procedural / multi-object sets: 0 = the default 60,000
  config.data.final_eval_split = ""

  config.model = ml_collections.ConfigDict()
  config.model.n_sprites = 19          # K0, learned sprites
  config.model.add_empty_sprite = False
  config.model.n_layers = 3            # L
  config.model.n_backgrounds = 0       # M
  config.model.bkg_init = "constant"   # or 'mean' of 100 random training images
  config.model.bkg_value = 0.5
  config.model.sprite_size = 24
  config.model.proto_init_value = 0.9
  config.model.mask_std = 5.0          # Gaussian mask init
  config.model.sprite_transformation = "identity"
  config.model.layer_transformation = "color_position"
  config.model.bkg_transformation = "color"
  config.model.encoder = "resnet32"
  config.model.pool_grid = 1
  config.model.grid_size = 4
  config.model.pred_occlusion = False
  config.model.selection = "greedy"    # or 'exhaustive' (single-object, L = 1)
  config.model.greedy_iterations = 1
  config.model.lambda_empty = 0.0
  config.model.inject_noise = 0.4
  config.model.reassign_clusters = True
  config.model.empty_sprite_ratio = 0.2  # reassign when usage < ratio / K0
  config.model.reassign_noise_std = 1e-4

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 1e-4
  config.optim.sprite_lr = 0.0         # > 0: own lr of sprites and backgrounds (else lr)
  config.optim.weight_decay = 1e-6     # coupled L2, transformer group only
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.lr_milestones = (100, 200)
  config.optim.gamma_sprites = 1.0
  config.optim.gamma_transformer = 0.1
  config.optim.encoder_updates_per_step = 1  # the original's duplicated-encoder Adam steps

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32
  config.train.num_epochs = 210
  config.train.freeze_sprite_epochs = 1
  config.train.sprite_curriculum_epochs = ()
  config.train.bkg_curriculum_epochs = ()
  config.train.check_cluster_every_steps = 50

  config.eval = ml_collections.ConfigDict()
  config.eval.every_steps = 1000
  config.eval.num_images = 320         # the first images of the training set, as the original
  config.eval.batch_size = 320
  config.eval.semantic = True          # semantic mIoU against the shape classes

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 500
  config.log.checkpoint_every_steps = 1000
  config.log.num_probe_images = 8      # images shown decomposed in the summaries
  return config


check_variant = common.check_variant
set_intervals = common.set_intervals
