"""DTI-Clustering on FRGC (2,462 faces of 32x32x3, 20 subjects), K = 20.

identity -> colour -> affine -> TPS, curriculum [50, 200, 400], 700 epochs, lr x0.1
after 650. File: data/frgc/data4torch.h5 (python scripts/download_data.py frgc).

  python -m dti_jax.main --config=configs/frgc.py --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("frgc", variant, ("",))
  config = common.dti_clustering_config()
  config.seed = 8903
  config.data.name = "frgc"
  config.data.data_dir = "data/frgc"
  config.model.n_prototypes = 20
  config.model.transformation_sequence = "identity_color_affine_tps"
  config.train.num_epochs = 700
  config.train.curriculum_epochs = (50, 200, 400)
  config.optim.lr_decay_epochs = (650,)
  config.eval.subset_size = 246
  common.set_intervals(config, log=10, eval_every=20, check=20)
  return config
