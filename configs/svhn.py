"""DTI-Clustering on SVHN (32x32x3): train on test + train + extra (630,420 images).

identity -> colour -> projective, curriculum [2, 18], Gaussian pixel weights (std 7),
33 epochs, lr x0.1 after 30; final scores on test + train (99,289), as the original.

  python -m dti_jax.main --config=configs/svhn.py --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("svhn", variant, ("",))
  config = common.dti_clustering_config()
  config.seed = 4873
  config.data.name = "svhn"
  config.data.final_eval_split = "eval"
  config.model.transformation_sequence = "identity_color_projective"
  config.model.gaussian_weights = True
  config.model.gaussian_weights_std = 7.0
  config.train.num_epochs = 33
  config.train.curriculum_epochs = (2, 18)
  config.optim.lr_decay_epochs = (30,)
  config.eval.subset_size = 2603
  common.set_intervals(config, log=500, eval_every=1000, check=100)
  return config
