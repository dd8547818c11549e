"""DTI-Sprites on GTSRB-8 (8 traffic-sign classes, 28x28): clustering with masks.

  python scripts/download_data.py gtsrb8
  python -m dti_jax.main --config=configs/gtsrb8.py --workdir=/tmp/gtsrb8
"""

import ml_collections

from configs import sprites_common, sprites_single


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  sprites_common.check_variant("gtsrb8", variant, ("",))
  config = sprites_single.single_object_config(
      n_sprites=8, sequence="color_projective_tps", curriculum=(100, 350), mask_std=5.0,
      encoder="resnet32")
  config.seed = 4820
  config.data.name = "gtsrb8"
  config.model.sprite_size = 28
  config.model.empty_sprite_ratio = 0.2      # 0.2 / 8 = 0.025
  config.optim.lr_milestones = (600,)
  config.train.batch_size = 128
  config.train.num_epochs = 700
  config.eval.num_images = 0                 # every image is scored
  config.eval.batch_size = 500
  sprites_common.set_intervals(config, log=100, eval_every=200, check=25)
  return config
