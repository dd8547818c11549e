"""DTI-Sprites on Tetrominoes (Monnier et al., ICCV 2021): 19 sprites, 3 layers, black.

Variants (``--config=configs/tetrominoes.py:VARIANT``):
  (none)      the original ``tetro`` experiment on the multi-object-datasets TFRecords
              (first 60,000 scenes; `python scripts/download_data.py tetrominoes`):
              210 epochs, lr 1e-4, transformer lr x0.1 after epochs 100 and 200.
  procedural  the same model on the offline generator (`data_pipelines.procedural`),
              on a schedule that fits a 2-core CPU in under an hour (see below and
              docs/dti_sprites.md for its numbers).

  python -m dti_jax.main --config=configs/tetrominoes.py:procedural --workdir=/tmp/tetro
"""

import ml_collections

from configs import sprites_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  sprites_common.check_variant("tetrominoes", variant, ("", "procedural"))
  config = sprites_common.dti_sprites_config()
  config.seed = 65176
  config.data.name = "tetrominoes"
  config.model.n_sprites = 19
  config.model.n_layers = 3
  config.model.n_backgrounds = 0
  config.model.sprite_size = 24
  config.model.sprite_transformation = "identity"
  config.model.layer_transformation = "color_position"
  config.model.encoder = "resnet32"
  config.model.pool_grid = 1
  config.model.mask_std = 5.0
  config.model.pred_occlusion = False
  config.model.greedy_iterations = 1
  config.train.freeze_sprite_epochs = 1
  config.optim.lr = 1e-4
  config.optim.lr_milestones = (100, 200)
  config.optim.gamma_sprites, config.optim.gamma_transformer = 1.0, 0.1
  config.train.batch_size = 32
  config.train.num_epochs = 210
  sprites_common.set_intervals(config, log=500, eval_every=1000, check=50)
  if variant == "procedural":
    # A schedule for a 2-core CPU: 25,000 generated scenes, batch 16 (twice the updates
    # per second of 32, the original's), 8 epochs of 1,562 steps, the first with frozen
    # sprites; sprites at lr 1e-3 so their masks take shape within the budget, the
    # transformer at the original's 1e-4, decayed x0.1 for the last two epochs.
    config.data.name = "tetrominoes_procedural"
    config.data.num_examples = 25_000
    config.train.batch_size = 16
    config.train.num_epochs = 8
    config.optim.sprite_lr = 1e-3
    config.optim.lr_milestones = (6,)
    sprites_common.set_intervals(config, log=250, eval_every=1000, check=50)
  return config
