"""DTI-Clustering of an unlabelled photo collection (the original ``instagram`` and
``megadepth`` experiments): 128x128 centre crops, ResNet-18 encoder, identity -> colour
-> projective; no labels, so only the loss, cluster sizes and pictures are reported.

Variants: ``instagram`` (#santaphoto, K = 40, curriculum [5, 15], 110 epochs, lr x0.1
after 100) and ``megadepth`` (firenze, K = 20, curriculum [150, 400], 1,100 epochs, lr
x0.1 after 900). The folder is ``--config.data.data_dir=<root>/<tag>/train``.
"""

import ml_collections

from configs import common


def collection_config(variant: str) -> ml_collections.ConfigDict:
  config = common.dti_clustering_config()
  config.seed = 7832
  config.data.name = "image_folder"
  config.data.image_size = 128
  config.model.encoder = "resnet18"
  config.model.transformation_sequence = "identity_color_projective"
  config.train.batch_size = 64
  config.eval.subset_size = 0
  common.set_intervals(config, log=50, eval_every=100, check=100)
  if variant == "instagram":
    config.data.data_dir = "data/instagram/santaphoto/train"
    config.model.n_prototypes = 40
    config.train.num_epochs = 110
    config.train.curriculum_epochs = (5, 15)
    config.optim.lr_decay_epochs = (100,)
  elif variant == "megadepth":
    config.data.data_dir = "data/megadepth/firenze/train"
    config.model.n_prototypes = 20
    config.train.num_epochs = 1100
    config.train.curriculum_epochs = (150, 400)
    config.optim.lr_decay_epochs = (900,)
  else:
    raise ValueError(f"unknown photo collection {variant!r}; 'instagram' or 'megadepth'")
  return config


def get_config(variant: str = "instagram") -> ml_collections.ConfigDict:
  return collection_config(variant)
