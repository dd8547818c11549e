"""Unsupervised Part Discovery on DeepFashion in-shop clothes (the paper's second set).

The same model, losses and optimiser as CUB (`configs/unsup_parts_cub.py`, spec 6-7),
K = 4, trained for the full 100,000 steps (the released model_100000.pth) on the
DeepFashion segmentation training images at 256x256 with masks from their ground-truth
part maps. Scores (spec 9.3): on the 6,922 query + gallery test images (longer side
256, padded), pixel FG-NMI / FG-ARI x 100 between the argmax part and the 15 garment
labels over every ground-truth foreground pixel; with eval.masks_dir (the original's
supervised masks) also NMI / ARI over all pixels of the images resized to a shorter
side of 256, background from those masks. Paper (draft, §4.4): FG-NMI 44.8,
FG-ARI 46.6, NMI 68.1, ARI 90.6; released checkpoint with the original notebook:
44.54 / 46.20 / 68.10 / 90.60.

Data (--config.data.data_dir): the DeepFashion in-shop folder with img_highres_seg/
images and their *_segment.png maps and the DeepFashion_segmentation_{train,query,
gallery}.json split files; see docs/unsup_parts.md. Weights as for CUB.

Variants: (none) the paper's run (a GPU job); ``smoke``: a width-8 ResNet and a random
phi on the first 12 training images, 2 steps, no weights needed.
"""

import ml_collections

from configs import common
from configs import unsup_parts_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("unsup_parts_deepfashion", variant, ("", "smoke"))
  config = unsup_parts_common.base_config()
  config.data.name = "deepfashion_parts"
  config.data.split = "train"
  config.train.num_steps = 100_000
  config.eval.protocol = "pixels"
  config.eval.split = "test"
  config.eval.every_steps = 5000
  config.eval.masks_dir = ""            # supervised masks (<file_name>.png): NMI / ARI full
  config.eval.legacy_label_resize = False   # True: the notebook's bilinear label resize
  if variant == "smoke":
    unsup_parts_common.shrink_for_smoke(config)
    config.eval.batch_size = 4
  return config
