"""Defaults shared by every DTI-Clustering config; experiment files change what differs.

Every key a run reads is defined here, so a misspelt override fails at parse time.
Durations are in epochs (as the original configs) or steps (`*_every_steps`); the loop
converts epochs to steps with steps_per_epoch = N // batch_size.
"""

import ml_collections


def dti_clustering_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.method = "dti_clustering"
  config.seed = 4321
  config.eval_only = False            # evaluate the workdir's latest checkpoint, no training
  config.mixed_precision = False     # encoder convolutions in bfloat16 (params stay float32)
  config.allow_config_change = False  # resume a workdir saved with another config

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist"          # see data_pipelines.load_source
  config.data.split = "train"
  config.data.data_dir = ""           # tfds directory or data folder; "" = the source's default
  config.data.image_size = 0          # image folders: shorter side resized, centre crop; 0 = native
  config.data.channels = 0            # image folders: 0 as the files, 1 grey, 3 RGB
  config.data.final_eval_split = ""   # split scored at the end; "" = the training split

  config.model = ml_collections.ConfigDict()
  config.model.name = "dtikmeans"     # or "dtigmm"
  config.model.n_prototypes = 10
  config.model.encoder = "resnet20"
  config.model.transformation_sequence = "identity_affine_morpho_tps"
  config.model.grid_size = 4          # TPS control grid
  config.model.kernel_size = 7        # morphological window
  config.model.padding_mode = "border"
  config.model.init_type = "sample"
  config.model.empty_cluster_ratio = 0.2   # reassign when share < ratio / K
  config.model.reassign_clusters = True
  config.model.reassign_noise_std = 1e-4
  config.model.gaussian_weights = False
  config.model.gaussian_weights_std = 7.0
  config.model.sigma_init = 0.5       # DTI-GMM only
  config.model.var_min = 0.0625       # DTI-GMM only: 0.25 ** 2

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 1e-3
  config.optim.weight_decay = 1e-6    # coupled L2, transformer groups only
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.lr_decay_epochs = (35,)
  config.optim.lr_decay_factor = 0.1

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128
  config.train.num_epochs = 40
  config.train.curriculum_epochs = (5, 15, 20)  # one milestone per module after the first
  config.train.check_cluster_every_steps = 50

  config.eval = ml_collections.ConfigDict()
  config.eval.every_steps = 500
  config.eval.subset_size = 1000      # periodic validation subset; 0 = every image
  config.eval.subset_seed = 46        # the original's validation-subset seed
  config.eval.batch_size = 500

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 50
  config.log.checkpoint_every_steps = 500
  config.log.num_probe_images = 4     # images whose transformed prototypes are shown
  return config


def check_variant(config_name: str, variant: str, variants: tuple[str, ...]) -> None:
  """One-line error for an unknown ``file.py:variant``."""
  if variant not in variants:
    raise ValueError(f"configs/{config_name}.py: unknown variant {variant!r}; one of {variants}")


def set_intervals(config: ml_collections.ConfigDict, *, log: int, eval_every: int,
                  check: int) -> None:
  """The original's train_stat / val_stat / check_cluster intervals (iterations)."""
  config.log.every_steps = log
  config.eval.every_steps = eval_every
  config.train.check_cluster_every_steps = check
  config.log.checkpoint_every_steps = max(eval_every, 500)
