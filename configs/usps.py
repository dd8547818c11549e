"""DTI-Clustering on USPS (9,298 images of 16x16, test + train), zero padding.

identity -> colour -> affine -> TPS, curriculum [60, 120, 200], 270 epochs, lr x0.1
after 250. Files: python scripts/download_data.py usps --data_dir=data/usps

  python -m dti_jax.main --config=configs/usps.py --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("usps", variant, ("",))
  config = common.dti_clustering_config()
  config.seed = 9995
  config.data.name = "usps"
  config.data.data_dir = "data/usps"
  config.model.transformation_sequence = "identity_color_affine_tps"
  config.model.padding_mode = "zeros"
  config.train.num_epochs = 270
  config.train.curriculum_epochs = (60, 120, 200)
  config.optim.lr_decay_epochs = (250,)
  config.eval.subset_size = 201
  common.set_intervals(config, log=25, eval_every=50, check=50)
  return config
