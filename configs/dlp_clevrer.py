"""Deep Latent Particles (Daniel & Tamar, ICML 2022) on CLEVRER video frames.

The original's CLEVRER preset (`train_dlp.py`; spec sections 4.3 and 5.3): single
128x128 frames of the official training videos (every 3rd of frames 27..128, about
34 per video), the object model (glimpse decoder with alpha masks over a decoded
background), encoder channels (32, 64, 128, 256) (16x16 feature maps), prior
channels (16, 32, 64), K = 10 particles, M = 20 prior proposals from 16x16 patches,
feature dim 5, glimpses of 32 px (anchor 0.25), sigma 0.1, VGG perceptual
reconstruction loss, beta_kl 40, kl_balance 0.001, no exclusive patches, Adam lr 2e-4
(eps 1e-4) halved at epochs 50, 100 and 200, batch 64, 100 epochs, one warm-up epoch
then four noisy-mask epochs. These are also the settings of the released demo
checkpoint (K 10, M 20, D 5).

Data: write the frames once with
  python scripts/prepare_dlp_frames.py --dataset=clevrer --frames=FRAMES/train --out=DIR
  python scripts/prepare_dlp_frames.py --dataset=clevrer --frames=FRAMES/validation \
      --out=DIR --split=validation
and pass DIR as --config.data.data_dir (train.npy trains; validation.npy is what the
original's validation ELBO reads). The VGG loss needs ImageNet VGG-16 weights:
convert torchvision's `vgg16` weights with `scripts/convert_vgg16.py` and pass the
file as --config.loss.vgg_weights.

Scores: the original's model-selection criterion is the validation "ELBO" (spec 6.1:
the beta-weighted training loss with sampled particles and the background particle in
the Chamfer-KL, on the first 5,000 validation frames, lower is better), reported here
as `elbo` beside PSNR, both on the first `eval.num_images` frames of validation.npy
(`eval.split = "eval"`). No published number is quoted (the spec gives none for
CLEVRER).

Variants: (none) the original's schedule (a GPU job: about 340,000 training frames,
5,312 steps per epoch at batch 64; `eval.every_steps` is 2 epochs of that size, as the
original evaluates every 2 epochs: scale it to your frame count); ``cpu``: the same
mechanisms (object model, step-based warm-up and noisy-mask phases, validation ELBO)
at a size meant for a 2-core CPU within the hour: the first 3,000 frames, 128 px kept
(the source cannot resize), narrower CNNs, 6 particles from 12 proposals, MSE
reconstruction (the VGG loss would multiply the step time and needs the converted
weights) with beta_kl 0.05 as the original's MSE preset (40 is scaled to the VGG
loss), batch 16, a 100-step warm-up, lr 2e-3 (the shapes :cpu calibration) for 935
steps (2.3 to 2.7 s per step on 2 CPU cores shared with other jobs: about 40 minutes
plus the evaluations). The ``cpu`` variant was not run on real CLEVRER frames (the data is
not here): only its step was timed, on random frames.

  python -m dti_jax.main --config=configs/dlp_clevrer.py:cpu \
      --config.data.data_dir=DIR --workdir=/tmp/dlp_clevrer
"""

import ml_collections

from configs import common
from configs import dlp_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("dlp_clevrer", variant, ("", "cpu"))
  config = dlp_common.video_frames_config()
  config.model.num_particles = 10       # K
  config.model.num_prior = 20           # M
  config.model.feature_dim = 5
  config.loss.beta_kl = 40.0
  config.train.warmup_epochs = 1
  config.eval.every_steps = 10_624      # 2 epochs of 340,000 frames at batch 64
  config.log.checkpoint_every_steps = 5312
  if variant == "cpu":
    dlp_common.shrink_video_frames_for_cpu(config, num_particles=6, num_prior=12)
  return config
