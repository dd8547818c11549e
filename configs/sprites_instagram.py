"""DTI-Sprites on an Instagram hashtag collection (#santaphoto in the paper), 128x128.

40 sprites over a learned background; qualitative (per-sprite members in `clusters/`).
Point config.data.data_dir at a folder of images (shorter side resized, centre crop).

  python -m dti_jax.main --config=configs/sprites_instagram.py --workdir=/tmp/santa \\
      --config.data.data_dir=/path/to/santaphoto
"""

import ml_collections

from configs import sprites_common, sprites_single


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  sprites_common.check_variant("sprites_instagram", variant, ("",))
  config = sprites_single.single_object_config(
      n_sprites=40, sequence="color_projective", curriculum=(100,), mask_std=20.0,
      encoder="resnet18")
  config.seed = 32903
  config.data.name = "image_folder"
  config.data.image_size = 128
  config.model.sprite_size = 128
  config.model.empty_sprite_ratio = 0.2      # 0.2 / 40 = 0.005
  config.optim.lr_milestones = (700,)
  config.train.batch_size = 32
  config.train.num_epochs = 850
  config.eval.num_images = 320
  config.eval.batch_size = 32
  sprites_common.set_intervals(config, log=1000, eval_every=2000, check=250)
  return config
