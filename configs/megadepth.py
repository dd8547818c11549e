"""The original ``megadepth`` experiment: see configs/image_collection.py.

  python -m dti_jax.main --config=configs/megadepth.py --workdir=DIR
"""

import ml_collections

from configs import common, image_collection


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("megadepth", variant, ("",))
  return image_collection.collection_config("megadepth")
