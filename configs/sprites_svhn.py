"""DTI-Sprites on SVHN (32x32, 10 sprites): clustering with masks and a background.

Trains on test + train + extra (630,420 images, tensorflow-datasets `svhn_cropped`).

  python -m dti_jax.main --config=configs/sprites_svhn.py --workdir=/tmp/sprites_svhn
"""

import ml_collections

from configs import sprites_common, sprites_single


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  sprites_common.check_variant("sprites_svhn", variant, ("",))
  config = sprites_single.single_object_config(
      n_sprites=10, sequence="color_projective_tps", curriculum=(10, 35), mask_std=8.0,
      encoder="resnet32")
  config.seed = 2971
  config.data.name = "svhn"
  config.model.sprite_size = 32
  config.optim.lr_milestones = (50,)
  config.train.batch_size = 128
  config.train.num_epochs = 55
  config.eval.num_images = 0
  config.eval.batch_size = 1000
  sprites_common.set_intervals(config, log=400, eval_every=800, check=100)
  return config
