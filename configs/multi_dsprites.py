"""DTI-Sprites on Multi-dSprites, colored_on_grayscale (Monnier et al., ICCV 2021).

3 sprites plus the empty sprite, 5 layers, one learned background; per-image predicted
occlusion; sprite-level similarity from epoch 20.

Variants (``--config=configs/multi_dsprites.py:VARIANT``):
  (none)      the original ``dsprites`` experiment on the multi-object-datasets TFRecords
              (first 60,000 scenes; `python scripts/download_data.py multi_dsprites`):
              510 epochs, lr 1e-4, transformer lr x0.1 after epochs 250 and 500.
  procedural  the same model on the offline generator, on a short schedule for a
              2-core CPU (750 steps): see docs/dti_sprites.md for its numbers.

  python -m dti_jax.main --config=configs/multi_dsprites.py:procedural --workdir=/tmp/dsprites
"""

import ml_collections

from configs import sprites_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  sprites_common.check_variant("multi_dsprites", variant, ("", "procedural"))
  config = sprites_common.dti_sprites_config()
  config.seed = 98469
  config.data.name = "multi_dsprites"
  config.model.n_sprites = 3
  config.model.add_empty_sprite = True
  config.model.n_layers = 5
  config.model.n_backgrounds = 1
  config.model.bkg_init = "constant"
  config.model.bkg_value = 0.5
  config.model.sprite_size = 28
  config.model.sprite_transformation = "identity_similarity"
  config.model.layer_transformation = "color_position"
  config.model.bkg_transformation = "color"
  config.model.encoder = "resnet32"
  config.model.pool_grid = 4
  config.model.mask_std = 7.0
  config.model.pred_occlusion = True
  config.model.greedy_iterations = 3
  config.model.lambda_empty = 1e-4
  config.train.freeze_sprite_epochs = 10
  config.train.sprite_curriculum_epochs = (20,)
  config.optim.lr = 1e-4
  config.optim.lr_milestones = (250, 500)
  config.optim.gamma_sprites, config.optim.gamma_transformer = 1.0, 0.1
  # The encoder sits in 5 sprite transformers, the layer and the background one.
  config.optim.encoder_updates_per_step = 7
  config.train.batch_size = 32
  config.train.num_epochs = 510
  sprites_common.set_intervals(config, log=2000, eval_every=4000, check=100)
  if variant == "procedural":
    # A short schedule for a 2-core CPU: 4,000 generated scenes, 6 epochs of 125 steps,
    # sprites frozen for the first, similarity from the third; sprites at lr 1e-3, the
    # transformer at 1e-4 decayed x0.1 for the last epoch.
    config.data.name = "multi_dsprites_procedural"
    config.data.num_examples = 4000
    config.train.num_epochs = 6
    config.train.freeze_sprite_epochs = 1
    config.train.sprite_curriculum_epochs = (2,)
    config.optim.sprite_lr = 1e-3
    config.optim.lr_milestones = (5,)
    sprites_common.set_intervals(config, log=25, eval_every=125, check=100)
  return config
