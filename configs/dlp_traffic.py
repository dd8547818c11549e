"""Deep Latent Particles (Daniel & Tamar, ICML 2022) on the Traffic video frames.

The original's Traffic preset (`train_dlp.py`; spec sections 4.3 and 5.4): single
128x128 frames of the authors' own traffic recordings (not public; every 3rd frame,
cropped to the box (60, 0, 480, 420), the first 90 % train and the last 10 %
validation), the object model (glimpse decoder with alpha masks over a decoded
background), encoder channels (32, 64, 128, 256) (16x16 feature maps), prior
channels (16, 32, 64), K = 15 particles, M = 20 prior proposals from 16x16 patches,
feature dim 10 (the training scripts; the README and the released demo checkpoint
use 20: `--config.model.feature_dim=20`), glimpses of 32 px (anchor 0.25), sigma 0.1,
VGG perceptual reconstruction loss, beta_kl 30, kl_balance 0.001, no exclusive
patches, Adam lr 2e-4 (eps 1e-4) halved at epochs 50, 100 and 200, batch 64, 100
epochs, two warm-up epochs then eight noisy-mask epochs.

Data: write the frames once with
  python scripts/prepare_dlp_frames.py --dataset=traffic --frames=FRAMES --out=DIR
(train.npy and validation.npy) and pass DIR as --config.data.data_dir, or pass one
uint8 [N, 128, 128, 3] .npy file of your own (used whole: a file is not split). The
VGG loss needs ImageNet VGG-16 weights: convert torchvision's `vgg16` weights with
`scripts/convert_vgg16.py` and pass the file as --config.loss.vgg_weights.

Scores: the original's model-selection criterion is the validation "ELBO" (spec 6.1:
the beta-weighted training loss with sampled particles and the background particle in
the Chamfer-KL, on all validation frames, lower is better), reported here as `elbo`
beside PSNR, on the first `eval.num_images` frames of validation.npy (`eval.split =
"eval"`; 5,000 to bound the cost, 0: all; a single .npy as data_dir serves every split,
so then the scores are on training frames). No published number is quoted (the spec
gives none for Traffic).

Variants: (none) the original's schedule (a GPU job; the frame count of the private
set is unknown, so `eval.every_steps`, 2 epochs in the original, assumes 64,000
training frames: set it to 2 x N // 64 for yours); ``cpu``: the same mechanisms (object
model, step-based warm-up and noisy-mask phases, validation ELBO) at a size meant for
a 2-core CPU within the hour: the first 3,000 frames, 128 px kept (the source cannot
resize), narrower CNNs, 8 particles from 16 proposals, MSE reconstruction (the VGG
loss would multiply the step time and needs the converted weights) with beta_kl 0.05
as the original's MSE preset (30 is scaled to the VGG loss), batch 16, a 100-step
warm-up (noisy masks until step 500), lr 2e-3 (the shapes :cpu calibration) for 935
steps (2.6 s per step on 2 CPU cores shared with other jobs: about 40 minutes plus
the evaluations). The ``cpu`` variant was not run on real Traffic frames (the data is
not here): only its step was timed, on random frames. ``released``: the preset with
feature dim 20, the settings of the released checkpoint
``dlp_traffic_gauss_pointnetpp.pth`` (convert it with scripts/convert_dlp_weights.py,
see docs/dlp.md).

  python -m dti_jax.main --config=configs/dlp_traffic.py:cpu \
      --config.data.data_dir=DIR --workdir=/tmp/dlp_traffic
"""

import ml_collections

from configs import common
from configs import dlp_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("dlp_traffic", variant, ("", "cpu", "released"))
  config = dlp_common.video_frames_config()
  config.model.num_particles = 15       # K
  config.model.num_prior = 20           # M
  config.model.feature_dim = 10         # 20 in the README and the demo checkpoint
  config.loss.beta_kl = 30.0
  config.train.warmup_epochs = 2
  config.eval.every_steps = 2000        # 2 epochs of 64,000 frames at batch 64
  config.log.checkpoint_every_steps = 1000
  if variant == "released":
    config.model.feature_dim = 20       # the released checkpoint (README, demo script)
  if variant == "cpu":
    dlp_common.shrink_video_frames_for_cpu(config, num_particles=8, num_prior=16)
  return config
