"""DTI-Sprites on the Weizmann Horse database (128x128): one sprite, cosegmentation.

  python scripts/download_data.py weizmann_horse
  python -m dti_jax.main --config=configs/weizmann_horse.py --workdir=/tmp/horse
"""

import ml_collections

from configs import sprites_common, sprites_single


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  sprites_common.check_variant("weizmann_horse", variant, ("",))
  config = sprites_single.single_object_config(
      n_sprites=1, sequence="color_projective_tps", curriculum=(3000, 8000), mask_std=20.0,
      encoder="resnet18")
  config.seed = 3830
  config.data.name = "weizmann_horse"
  config.model.sprite_size = 128
  config.optim.lr_milestones = (14000,)
  config.train.batch_size = 32
  config.train.num_epochs = 15000
  config.eval.num_images = 0
  config.eval.batch_size = 32
  sprites_common.set_intervals(config, log=300, eval_every=600, check=300)
  return config
