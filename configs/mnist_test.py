"""DTI-Clustering on the 10,000 MNIST test images (the original ``mnist_test`` experiment).

300 epochs of 79 steps (~23.7k steps), curriculum [50, 150, 200], lr x0.1 after epoch 280.
The README's 10-run protocol of the original: scripts/multi_run.py --seeds=10.

  python -m dti_jax.main --config=configs/mnist_test.py --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("mnist_test", variant, ("",))
  config = common.dti_clustering_config()
  config.seed = 4760
  config.data.name = "mnist"
  config.data.split = "test"
  config.train.num_epochs = 300
  config.train.curriculum_epochs = (50, 150, 200)
  config.optim.lr_decay_epochs = (280,)
  common.set_intervals(config, log=25, eval_every=50, check=50)
  return config
