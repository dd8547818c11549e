"""Unsupervised Part Discovery on CUB-200-2011 birds (the paper's main experiment).

The released config (spec 6-7): DeepLab-v2 ResNet-50 (Caffe ImageNet weights) at
output stride 8, K = 4 parts, frozen ImageNet VGG-19 phi (relu3_2 x 0.33, relu5_4),
L = 5 L_f + 30 L_v + 2300 L_c + 5700 L_e with tau = 0.19, TPS warps (+-60 deg, zoom
1/2 .. 1/0.7, shift 0.1, sigma 0.01), colour jitter, SGD momentum 0.9, weight decay
5e-4, lr 1e-5 (head x 10) with poly decay over a fixed 100,000-step horizon, clip 5,
batch 6, 256x256 crops of the CMR-cleaned training split with their ground-truth
masks, horizontal flips. The released model is the 60,000-step snapshot, so
num_steps = 60,000.

Scores (spec 9.2; `eval.protocol = "cub_keypoints"`): on the official test split (5,794
images cropped to their boxes, shorter side 256, borders cut to multiples of 16), the
part under each visible keypoint against the keypoint's index: FG-NMI / FG-ARI x 100;
with eval.masks_dir (the original's supervised masks) also NMI / ARI on the
uncropped images with background from those masks. Paper (submission draft, Table 1):
FG-NMI 49.1, FG-ARI 21.9, NMI 43.6, ARI 19.5; the released checkpoint with the
original notebook: 46.03 / 21.03 / 43.52 / 19.58 (its FG-ARI from the with-background
labels; likely the camera-ready numbers, unverified).

Data (--config.data.data_dir): the CUB_200_2011 folder (images/, images.txt,
train_test_split.txt, bounding_boxes.txt, parts/part_locs.txt) with CMR's cachedir
(cachedir/cub/data/{train,test}_cub_cleaned.mat) inside it; see docs/unsup_parts.md.
Weights: --config.model.backbone_weights (resnet50-caffe-22edcc82.pth converted) and
--config.perceptual.weights (torchvision vgg19-dcbb9e9d.pth converted), both by
`python -m scripts.convert_torch_weights`.

Variants: (none) the paper's run (a GPU job); ``smoke``: a width-8 ResNet and a random
phi at 64 px on the first 12 training images, 2 steps, no weights needed.
"""

import ml_collections

from configs import common
from configs import unsup_parts_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("unsup_parts_cub", variant, ("", "smoke"))
  config = unsup_parts_common.base_config()
  config.data.name = "cub_parts"
  config.data.split = "train"
  config.train.num_steps = 60_000
  config.eval.protocol = "cub_keypoints"
  config.eval.split = "test"
  config.eval.masks_dir = ""            # supervisedlabels/ of the original: NMI / ARI full
  config.eval.every_steps = 5000
  config.eval.num_images = 0            # 0: all 5,794 test images
  config.eval.batch_size = 8            # unused: test images differ in size, one at a time
  config.eval.keypoint_regression = True   # SCOPS' keypoint error on the CMR crops
  config.eval.crop_batch_size = 16
  if variant == "smoke":
    unsup_parts_common.shrink_for_smoke(config)
  return config
