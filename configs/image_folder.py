"""Your own images: a folder (flat, or one subfolder per class to be scored), trained
with the recipe that fits its kind.

Variants (``--config=configs/image_folder.py:VARIANT``; always pass
``--config.data.data_dir=FOLDER``):
  small           (default) digits, icons, scans, sprites: DTI-KMeans with the MNIST-5k
                  recipe (identity -> colour -> affine -> morphological -> TPS, 40
                  epochs), images resized to ``data.image_size`` (28) with the files'
                  channels (grey stays grey, so the morphological stage applies).
                  Run length follows the folder: 40 passes over it, about 4.6 minutes
                  per 1,000 images of 28x28 on a 2-core CPU (the MNIST-5k run: 23 min).
  photos          photo collections: the original's Instagram recipe (128x128 centre
                  crops, ResNet-18, identity -> colour -> projective, 110 epochs).
  sprites_small   DTI-Sprites, one sprite over a learned background per image: the
                  SVHN recipe (10 sprites, colour -> projective -> TPS, 55 epochs) at
                  32x32; set ``--config.data.image_size=S --config.model.sprite_size=S``
                  together for another size.
  sprites_photos  DTI-Sprites at 128x128: the original's Instagram recipe (40 sprites).
Set the number of clusters / sprites with ``--config.model.n_prototypes`` (DTI-Clustering)
or ``--config.model.n_sprites`` (DTI-Sprites).

  python -m dti_jax.main --config=configs/image_folder.py --workdir=workdirs/my_digits \\
      --config.data.data_dir=my_digits --config.model.n_prototypes=10
"""

import ml_collections

from configs import common, image_collection, mnist, sprites_instagram, sprites_svhn

VARIANTS = ("small", "photos", "sprites_small", "sprites_photos")


def get_config(variant: str = "small") -> ml_collections.ConfigDict:
  common.check_variant("image_folder", variant, VARIANTS)
  if variant == "small":
    config = mnist.get_config("embedded")
    config.data.image_size = 28
  elif variant == "photos":
    config = image_collection.collection_config("instagram")
  elif variant == "sprites_small":
    config = sprites_svhn.get_config()
    config.data.image_size = 32
    config.train.batch_size = 64
    config.eval.num_images = 320
    config.eval.batch_size = 64
  else:
    config = sprites_instagram.get_config()
  config.data.name = "image_folder"
  config.data.data_dir = ""
  config.data.channels = 0
  return config
