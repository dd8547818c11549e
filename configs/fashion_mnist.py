"""DTI-Clustering on Fashion-MNIST (70,000 images, test + train, tensorflow-datasets).

identity -> colour -> affine -> TPS, curriculum [5, 15, 25], 40 epochs, lr x0.1 after 35.

  python -m dti_jax.main --config=configs/fashion_mnist.py --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("fashion_mnist", variant, ("",))
  config = common.dti_clustering_config()
  config.seed = 2895
  config.data.name = "fashion_mnist"
  config.model.transformation_sequence = "identity_color_affine_tps"
  config.train.num_epochs = 40
  config.train.curriculum_epochs = (5, 15, 25)
  config.optim.lr_decay_epochs = (35,)
  common.set_intervals(config, log=25, eval_every=50, check=50)
  return config
