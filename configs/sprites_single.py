"""Shared recipe of DTI-Sprites' single-object experiments (one layer, exhaustive choice).

This is DTI-Clustering plus a mask per sprite and a learned background: every sprite
is tried with every background, the best pair explains the image.
"""

import ml_collections

from configs import sprites_common


def single_object_config(*, n_sprites: int, sequence: str, curriculum: tuple[int, ...],
                         mask_std: float, encoder: str) -> ml_collections.ConfigDict:
  config = sprites_common.dti_sprites_config()
  config.model.n_sprites = n_sprites
  config.model.n_layers = 1
  config.model.n_backgrounds = 1
  config.model.bkg_init = "mean"
  config.model.sprite_transformation = sequence
  config.model.layer_transformation = "identity"
  config.model.bkg_transformation = sequence
  config.model.encoder = encoder
  config.model.mask_std = mask_std
  config.model.selection = "exhaustive"
  config.train.freeze_sprite_epochs = 0
  config.train.sprite_curriculum_epochs = curriculum
  config.train.bkg_curriculum_epochs = curriculum
  config.optim.lr = 1e-3
  config.optim.gamma_sprites = config.optim.gamma_transformer = 0.1
  # The encoder sits in the sprite and the background transformer.
  config.optim.encoder_updates_per_step = 2
  config.eval.semantic = False
  return config
