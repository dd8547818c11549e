"""DTI-Clustering on MNIST-1k: 1,000 test images drawn with NumPy seed 46, as the original.

Batch 100 (10 steps/epoch), 1,700 epochs, curriculum [100, 500, 700], lr x0.1 after 1,200.

  python -m dti_jax.main --config=configs/mnist_1k.py --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("mnist_1k", variant, ("",))
  config = common.dti_clustering_config()
  config.seed = 6065
  config.data.name = "mnist_1k"
  config.train.batch_size = 100
  config.train.num_epochs = 1700
  config.train.curriculum_epochs = (100, 500, 700)
  config.optim.lr_decay_epochs = (1200,)
  config.eval.subset_size = 100
  common.set_intervals(config, log=20, eval_every=40, check=40)
  return config
