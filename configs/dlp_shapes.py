"""Deep Latent Particles (Daniel & Tamar, ICML 2022) on procedural shapes.

The original's shapes preset (`train_dlp.py`; spec sections 4.3 and 9): 40,000 generated
64x64 scenes of 2-5 non-overlapping shapes on cyan, the object model (glimpse decoder
with alpha masks over a decoded background), K = 10 particles, M = 15 prior proposals
from 8x8 patches, feature dim 6, glimpses of 16 px (anchor 0.25), sigma 0.1, MSE
reconstruction, beta_kl 0.05, kl_balance 0.001, exclusive patches, Adam lr 1e-3
(eps 1e-4) halved at epochs 20, 40 and 80, batch 64, 100 epochs, one warm-up epoch then
four noisy-mask epochs. The tutorial notebook differs only in exclusive_patches=False;
its training PSNR reaches 25.1 dB after 10 epochs and 29.7 dB after 100
(`--config.model.exclusive_patches=False` reproduces its setting: 25.1 dB after 10
epochs here too, on one GPU).

Variants: (none) the original's schedule (a GPU job: one epoch takes about 7 s on an
H200, about 2.6 h on 2 CPU cores); ``cpu``: the same mechanisms at a size that learns
on a 2-core CPU within the hour (narrower CNNs, 8 particles, 4,000 images, batch 32,
a 100-step warm-up, lr 2e-3 for 1,500 steps). Measured on 2 CPU cores: held-out PSNR
22.3 dB (background floor 15.9), recall@4 px 57.7 % (chance 9.4 %) in 56.5 min.

  python -m dti_jax.main --config=configs/dlp_shapes.py:cpu --workdir=/tmp/dlp_shapes
"""

import ml_collections

from configs import common
from configs import dlp_common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  common.check_variant("dlp_shapes", variant, ("", "cpu"))
  config = dlp_common.base_config()
  config.data.name = "dlp_shapes_procedural"
  config.data.image_size = 0
  config.data.num_examples = 40_000

  config.model.kind = "object"          # glimpse decoder + alpha compositing (gauss_pointnetpp)
  config.model.image_size = 64
  config.model.enc_channels = (32, 64, 128)
  config.model.num_particles = 10       # K
  config.model.num_prior = 15           # M
  config.model.patch_size = 8
  config.model.feature_dim = 6
  config.model.anchor_s = 0.25          # glimpse side round(0.25 * 63) = 16
  config.model.exclusive_patches = True

  config.loss.rec_loss = "mse"
  config.loss.beta_kl = 0.05
  # rec_loss "vgg": the file written by scripts/convert_vgg16.py from torchvision's
  # vgg16-397923af.pth (ImageNet VGG-16, not downloadable offline).

  config.optim.lr = 1e-3
  config.optim.lr_milestones = (20, 40, 80)   # epochs

  config.train.warmup_epochs = 1

  config.eval.every_steps = 1250        # every 2 epochs, as the original
  config.eval.num_images = 1000         # held-out scenes

  config.log.checkpoint_every_steps = 625

  if variant == "cpu":
    config.data.num_examples = 4000
    config.model.enc_channels = (16, 32, 64)
    config.model.prior_channels = (8, 16, 32)
    config.model.num_particles = 8
    config.train.batch_size = 32
    config.train.num_epochs = 12          # 1,500 steps
    config.train.warmup_steps = 100
    config.optim.lr = 2e-3                # narrow nets at 1e-3 stay near the background floor
    config.optim.lr_milestones = (6, 10)
    config.eval.num_images = 200
    config.eval.batch_size = 40
    config.eval.every_steps = 250
    config.log.every_steps = 25
    config.log.checkpoint_every_steps = 125
  return config
