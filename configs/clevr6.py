"""DTI-Sprites on CLEVR6 (Monnier et al., ICCV 2021): 6 sprites + empty, 6 layers.

The original ``clevr6`` experiment on the multi-object-datasets CLEVR TFRecords
(scenes with at most 6 objects among the first 70,000, cropped and resized to 128x128;
`python scripts/download_data.py clevr6`): 450 epochs, lr 1e-4, transformer lr x0.1
after epochs 250 and 400.

  python -m dti_jax.main --config=configs/clevr6.py --workdir=/tmp/clevr6
"""

import ml_collections

from configs import sprites_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  sprites_common.check_variant("clevr6", variant, ("",))
  config = sprites_common.dti_sprites_config()
  config.seed = 41459
  config.data.name = "clevr6"
  config.model.n_sprites = 6
  config.model.add_empty_sprite = True
  config.model.n_layers = 6
  config.model.n_backgrounds = 1
  config.model.bkg_init = "mean"
  config.model.sprite_size = 40
  config.model.sprite_transformation = "identity_projective"
  config.model.layer_transformation = "color_position"
  config.model.bkg_transformation = "color"
  config.model.encoder = "resnet18"
  config.model.pool_grid = 2
  config.model.mask_std = 10.0
  config.model.pred_occlusion = True
  config.model.greedy_iterations = 3
  config.model.lambda_empty = 1e-4
  config.train.freeze_sprite_epochs = 40
  config.train.sprite_curriculum_epochs = (150,)
  config.optim.lr = 1e-4
  config.optim.lr_milestones = (250, 400)
  config.optim.gamma_sprites, config.optim.gamma_transformer = 1.0, 0.1
  # The encoder sits in 6 sprite transformers, the layer and the background one.
  config.optim.encoder_updates_per_step = 8
  config.train.batch_size = 32
  config.train.num_epochs = 450
  config.eval.semantic = True
  sprites_common.set_intervals(config, log=1000, eval_every=2000, check=250)
  return config
