"""DTI-Clustering on affNIST-test (320,000 affinely transformed digits, 40x40).

identity -> affine -> morpho -> TPS, curriculum [5, 20, 25], lr 1e-4, 45 epochs,
lr x0.1 after 37. File: affNIST_test.mat (python scripts/download_data.py affnist_test).

  python -m dti_jax.main --config=configs/affnist_test.py --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("affnist_test", variant, ("",))
  config = common.dti_clustering_config()
  config.seed = 5912
  config.data.name = "affnist_test"
  config.data.data_dir = "data/affnist"
  config.optim.lr = 1e-4
  config.train.num_epochs = 45
  config.train.curriculum_epochs = (5, 20, 25)
  config.optim.lr_decay_epochs = (37,)
  common.set_intervals(config, log=200, eval_every=400, check=400)
  return config
