"""DTI-Clustering on MNIST-color: the 70,000 digits coloured per image (28x28x3).

Colour instead of morpho (colour images): identity -> colour -> affine -> TPS,
curriculum [5, 15, 30], 50 epochs, lr x0.1 after 45.

  python -m dti_jax.main --config=configs/mnist_color.py --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("mnist_color", variant, ("",))
  config = common.dti_clustering_config()
  config.seed = 5788
  config.data.name = "mnist_color"
  config.model.transformation_sequence = "identity_color_affine_tps"
  config.train.num_epochs = 50
  config.train.curriculum_epochs = (5, 15, 30)
  config.optim.lr_decay_epochs = (45,)
  common.set_intervals(config, log=25, eval_every=50, check=50)
  return config
