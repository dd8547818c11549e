"""Times the train step of the original unsupervised part discovery, beside benchmark.py.

Runs in the original's own environment (torch, numpy, PyYAML), never in dti_jax's. It
imports `models.model_factory`, `models.feature_extraction`, `tps.rand_tps` and `loss`
from the checkout of subhc/unsup-parts given by --repo (it copies none of their code),
reads the hyper-parameters from its `configs/config.yaml` and builds what
`Trainer.__init__` of `trainer_ours.py` builds: the segmenter of `model_generator`
(DeepLab50_2branch, K=4, N(0, 0.01) convs), the VGG19 relu3_2 / relu5_4 chain of
`FeatureExtraction` (weights 0.33 / 1.0, no L2 normalisation), `RandTPS` (affine, sigma
0.01, random_scale (0.7, 2.0), no mirror, zero padding), `nn.KLDivLoss(reduction='none')`,
the align_corners=True upsampling to the input size and the SGD of two parameter groups
(head at 10x lr, momentum 0.9, weight decay 5e-4). It then times what `Trainer.step` does
per iteration, in its order: train mode, zero_grad, the poly learning rate, branch 1 on the
jittered image, the perceptual features under no_grad, the part means, the feature loss
image by image, the Lab consistency loss, the contrastive loss (temperature 0.19), new TPS
control points (built on the host, as in the original) and the warps of the second
jittered image, the mask and the detached logits, branch 2, the masked KL, the weighted
total (5 / 30 / 2300 / 5700), backward, clip_grad_norm_ 5, the SGD step and the four
`.data.cpu().numpy()` reads of the loss values. Not timed: the data loader, the
host-to-device copy of the batch, the loss plot and print of every 100th step, and
train.py's visualisations and checkpoints.

  python scripts/benchmark_original_parts.py --repo=.originals/unsup-parts \
      --threads=2 --steps=2 --batch_size=3 --image_size=128
  python scripts/benchmark_original_parts.py --repo=.originals/unsup-parts \
      --device=cuda --steps=50

The batch is random: uint8 images, one random rectangle of foreground per image, two
colour-jittered copies minus the Caffe means (`img_cj1`, `img_cj2`), the ImageNet-normalised
image (`img_vgg`) and its CIE Lab (`img_rec`), all made before the timing. The method has a
single phase; a stage only sets the step of the poly learning-rate schedule ('first' 0,
'last' num_steps - 1, or a step number), which costs nothing, and is named like
benchmark.py's. Prints one JSON line per stage with the fields of benchmark.py; `compile_s`
is the time of the first, untimed step (allocator and kernel warm-up: PyTorch compiles
nothing). Like train.py the run sets cudnn.enabled True and leaves cudnn.benchmark and
cudnn.deterministic at their defaults (False; the trainer's lines that would set them are
commented out). Peak CUDA memory is reset per stage; on the CPU the peak RSS is the
process's.

Adaptations, all outside the original's files:
* `model_generator` would download the Caffe ResNet-50 when `restore_from` is null, and its
  'None' branch leaves `optimizer_state_dict` unbound; the script passes it a cached
  `resnet50-caffe-22edcc82.pth` from the torch hub cache when there is one, else a
  temporary file holding an empty state dict, so nothing is copied and the segmenter keeps
  the factory's N(0, 0.01) initialisation (the same cost); `backbone_weights` says which.
* `models/feature_extraction.py` imports `utils.deepcluster_vgg16`, which the repository
  does not contain (an ImportError at HEAD); it is only used for the DeepCluster vgg16_bn
  backbone, so the script registers a stand-in module whose `vgg16` raises.
* torchvision's `vgg19(pretrained=True)` would download ImageNet weights. With a working
  torchvision the script gives the module a `vgg19` that builds torchvision's network with
  the cached weights (`vgg19-dcbb9e9d.pth`) when they are there, else random ones. Where
  torchvision fails to import, a stand-in `torchvision.models.vgg19` builds the same
  layout in plain torch (`features`: 3x3 convolutions with padding 1, each followed by
  ReLU(inplace=True), 2x2 max pools, torchvision's indices; plus its avgpool and
  classifier, which the step never runs but which count in the host memory) and loads the
  cached weights the same way. `FeatureExtraction` slices `features` as in the original.
  `vgg` says which ("torchvision" or "stand-in"), `vgg_weights` "imagenet" or "random".
* Without the einops package (`loss.py` and the trainer use it), a stand-in module provides
  `rearrange`, `repeat` and `reduce` for exactly the three patterns the step uses; `einops`
  says which ran.
* Under torch >= 2.0 `zero_grad()` sets the gradients to None (torch 1.9, the original's
  version, zeroed them in place); the script calls it as the trainer does.
* The contrastive loss draws each positive with `torch.randint(1, B - 1)`, an empty range
  for a batch of 2, so the original needs at least 3 images per batch.
"""

import argparse
import contextlib
import importlib
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
import types
from typing import TYPE_CHECKING, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from scripts import machine  # pylint: disable=wrong-import-position

if TYPE_CHECKING:
  import torch

# Caffe BGR means that LitDataset subtracts from the RGB channels (trainer_ours.IMG_MEAN).
IMG_MEAN = (104.00698793, 116.66876762, 122.67891434)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# torchvision's VGG19 ("E") feature layout: channels of each 3x3 conv, "M" a 2x2 max pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's IMAGENET1K_V1 checkpoint name
RESNET50_CAFFE_FILE = "resnet50-caffe-22edcc82.pth"  # model_factory.PRETRAINED_MODEL
# The poly schedule's horizon, hard-coded in trainer_ours.adjust_learning_rate.
POLY_MAX_ITER = 100000
# The description of dti_jax.methods.unsup_parts.trainer' single stage, so the records line up.
STAGE_DESCRIPTION = "training (feature, visual-consistency, contrastive and equivariance losses)"


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repo", required=True, help="checkout of subhc/unsup-parts "
                      "(loss.py, models/, tps/, configs/config.yaml)")
  parser.add_argument("--batch_size", type=int, default=0, help="0: the config's (6)")
  parser.add_argument("--image_size", type=int, default=0,
                      help="side of the square input; 0: the config's input_size (256)")
  parser.add_argument("--steps", type=int, default=20, help="timed steps per stage")
  parser.add_argument("--stages", default="first",
                      help="first, last or step numbers, comma-separated (only the "
                      "learning rate differs)")
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
  parser.add_argument("--device", default="cpu", help="cpu or cuda")
  return parser.parse_args()


def _load_config(repo: str) -> types.SimpleNamespace:
  """configs/config.yaml as the attribute namespace the trainer reads (`args`)."""
  try:
    import yaml  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise SystemExit(f"reading the original's configs/config.yaml needs PyYAML ({error})") \
        from error
  with open(os.path.join(repo, "configs", "config.yaml")) as f:
    raw = yaml.safe_load(f)
  raw.pop("hydra", None)
  config = {}
  for key, value in raw.items():
    # YAML 1.1 reads 1e-05 and 3e1 as strings; hydra's OmegaConf reads them as floats.
    if isinstance(value, str):
      try:
        value = float(value)
      except ValueError:
        pass
    config[key] = value
  return types.SimpleNamespace(**config)


def _einops_stand_in() -> types.ModuleType:
  """The einops calls of loss.py and Trainer.step, for exactly their patterns."""
  module = types.ModuleType("einops")

  def rearrange(tensor, pattern):
    if pattern != "a b i j -> (a i) (b j)":
      raise NotImplementedError(f"einops stand-in: rearrange {pattern!r}")
    a, b, i, j = tensor.shape
    return tensor.permute(0, 2, 1, 3).reshape(a * i, b * j)

  def repeat(tensor, pattern, a, b):
    if pattern != "i j -> (a i) (b j)":
      raise NotImplementedError(f"einops stand-in: repeat {pattern!r}")
    return tensor.repeat(a, b)  # row a * I + i, column b * J + j holds tensor[i, j]

  def reduce(tensor, pattern, reduction):
    if pattern != "b r h w -> b r 1" or reduction != "sum":
      raise NotImplementedError(f"einops stand-in: reduce {pattern!r} {reduction!r}")
    return tensor.sum(dim=(2, 3)).unsqueeze(-1)

  module.rearrange, module.repeat, module.reduce = rearrange, repeat, reduce
  return module


def _provide_einops() -> str:
  try:
    import einops  # pylint: disable=import-outside-toplevel
    return f"einops {einops.__version__}"
  except ImportError:
    sys.modules["einops"] = _einops_stand_in()
    print("einops not installed: stand-in rearrange/repeat/reduce", file=sys.stderr)
    return "stand-in"


def _hub_checkpoint(name: str) -> str | None:
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  path = os.path.join(torch.hub.get_dir(), "checkpoints", name)
  return path if os.path.isfile(path) else None


def _load_vgg_features(network) -> str:
  """Copies cached ImageNet VGG19 weights into network; 'imagenet' or 'random'."""
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  path = _hub_checkpoint(VGG19_FILE)
  if path is None:
    print(f"no {VGG19_FILE} in the torch hub cache: VGG19 with random weights (same cost)",
          file=sys.stderr)
    return "random"
  network.load_state_dict(torch.load(path, map_location="cpu"))
  return "imagenet"


def _stand_in_vgg19(pretrained: bool = False):
  """torchvision.models.vgg19 in plain torch: the same modules, indices and init."""
  import torch.nn as nn  # pylint: disable=import-outside-toplevel
  layers, channels = [], 3
  for width in VGG19_LAYOUT:
    if width == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
      channels = width
  network = nn.Module()
  network.features = nn.Sequential(*layers)
  network.avgpool = nn.AdaptiveAvgPool2d((7, 7))
  network.classifier = nn.Sequential(
      nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
      nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, 1000))
  for module in network.modules():
    if isinstance(module, nn.Conv2d):
      nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
      nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.Linear):
      nn.init.normal_(module.weight, 0, 0.01)
      nn.init.constant_(module.bias, 0)
  network.weights_source = _load_vgg_features(network) if pretrained else "random"
  return network


def _provide_torchvision() -> str:
  """Makes `from torchvision import models` work; returns 'torchvision' or 'stand-in'."""
  try:
    importlib.import_module("torchvision")
    return "torchvision"
  except Exception as error:  # pylint: disable=broad-except
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
      del sys.modules[name]
    print(f"torchvision does not import ({type(error).__name__}: {error}): VGG19 from a "
          "plain torch stand-in of its layout", file=sys.stderr)
  stand_in = types.ModuleType("torchvision")
  stand_in.models = types.ModuleType("torchvision.models")
  stand_in.models.vgg19 = _stand_in_vgg19
  sys.modules["torchvision"], sys.modules["torchvision.models"] = stand_in, stand_in.models
  return "stand-in"


def _import_original(repo: str):
  """The original's loss, model_factory, feature_extraction and rand_tps modules."""
  repo = os.path.abspath(repo)
  for name in ("loss.py", "trainer_ours.py", "models", "tps", "configs/config.yaml"):
    if not os.path.exists(os.path.join(repo, name)):
      raise SystemExit(f"--repo={repo}: no {name}; expected a checkout of subhc/unsup-parts")
  einops_source = _provide_einops()
  vgg_source = _provide_torchvision()
  sys.path.insert(0, repo)
  import utils  # pylint: disable=import-outside-toplevel
  if not os.path.isfile(os.path.join(repo, "utils", "deepcluster_vgg16.py")):
    deepcluster = types.ModuleType("utils.deepcluster_vgg16")

    def vgg16(*args, **kwargs):
      raise NotImplementedError("utils/deepcluster_vgg16.py is not in the repository")

    deepcluster.vgg16 = vgg16
    sys.modules["utils.deepcluster_vgg16"] = utils.deepcluster_vgg16 = deepcluster
  import einops  # pylint: disable=import-outside-toplevel
  import loss  # pylint: disable=import-outside-toplevel
  from models import feature_extraction  # pylint: disable=import-outside-toplevel
  from models import model_factory  # pylint: disable=import-outside-toplevel
  from tps import rand_tps  # pylint: disable=import-outside-toplevel
  return (types.SimpleNamespace(einops=einops, loss=loss, feature_extraction=feature_extraction,
                                model_factory=model_factory, rand_tps=rand_tps),
          einops_source, vgg_source)


def _feature_net(original, args, vgg_source: str, device) -> tuple[object, str]:
  """FeatureExtraction as Trainer.__init__ builds it, without downloading VGG19."""
  if args.ref_net != "vgg19":
    raise SystemExit(f"ref_net={args.ref_net!r}: the script provides vgg19 only")
  built = {}

  def vgg19(pretrained: bool = False):
    if vgg_source == "stand-in":
      network = _stand_in_vgg19(pretrained)
      built["weights"] = network.weights_source
      return network
    import torchvision  # pylint: disable=import-outside-toplevel
    network = torchvision.models.vgg19(weights=None)
    built["weights"] = _load_vgg_features(network) if pretrained else "random"
    return network

  # Trainer.__init__: the layers in network order and their weights with them.
  layer1, layer2 = args.ref_layer1, args.ref_layer2
  if int(layer1[-3] + layer1[-1]) <= int(layer2[-3] + layer2[-1]):
    last_layer, weights = f"{layer1},{layer2}", [args.ref_weight1, args.ref_weight2]
  else:
    last_layer, weights = f"{layer2},{layer1}", [args.ref_weight2, args.ref_weight1]
  module = original.feature_extraction
  saved, module.models = module.models, types.SimpleNamespace(vgg19=vgg19)
  try:
    with contextlib.redirect_stdout(sys.stderr):  # it prints its layers and weights
      net = module.FeatureExtraction(
          feature_extraction_cnn=args.ref_net, normalization=args.ref_norm,
          last_layer=last_layer, weights=weights, use_cuda=device.type == "cuda",
          gpu=device.index or 0)
  finally:
    module.models = saved
  net.eval()
  return net, built["weights"]


def _segmenter(original, args, device) -> tuple[object, str]:
  """model_generator's segmenter, from the cached Caffe ResNet-50 or none."""
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  cached = _hub_checkpoint(RESNET50_CAFFE_FILE)
  with tempfile.TemporaryDirectory() as tmp:
    if cached is None:
      print(f"no {RESNET50_CAFFE_FILE} in the torch hub cache: the segmenter keeps its "
            "N(0, 0.01) initialisation (same cost)", file=sys.stderr)
      restore_from = os.path.join(tmp, "empty_state_dict.pth")
      torch.save({}, restore_from)
    else:
      restore_from = cached
    factory_args = types.SimpleNamespace(**{**vars(args), "restore_from": restore_from})
    with contextlib.redirect_stdout(sys.stderr):  # it prints the file it loads
      model, optimizer_state_dict = original.model_factory.model_generator(
          factory_args, add_bg_mask=False)
  assert optimizer_state_dict is None
  model.train()
  return model.to(device), "random" if cached is None else "caffe resnet50"


def _rgb_to_lab(rgb: "torch.Tensor") -> "torch.Tensor":
  """sRGB in [0, 1], [B, 3, H, W] -> CIE Lab (D65, 2 degrees), skimage.color.rgb2lab's formula."""
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
  to_xyz = torch.tensor([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
  xyz = torch.einsum("xc,bchw->bxhw", to_xyz, linear)
  xyz = xyz / torch.tensor([0.95047, 1.0, 1.08883]).view(1, 3, 1, 1)
  f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
  return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                      200 * (f[:, 1] - f[:, 2])], dim=1)


def make_batch(batch_size: int, size: int, generator) -> dict:
  """A LitDataset-like batch of random images, on the host (float32, NCHW)."""
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  rgb = torch.randint(0, 256, (batch_size, 3, size, size), generator=generator).float()
  mask = torch.zeros(batch_size, 1, size, size)
  for b in range(batch_size):  # one random rectangle of foreground per image
    h, w = (int(v) for v in torch.randint(size // 4, size + 1, (2,), generator=generator))
    top = int(torch.randint(0, size - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, size - w + 1, (1,), generator=generator))
    mask[b, 0, top:top + h, left:left + w] = 1
  caffe_mean = torch.tensor(IMG_MEAN).view(1, 3, 1, 1)

  def jitter():  # random brightness and contrast per image, then the Caffe means
    shape = (batch_size, 1, 1, 1)
    brightness = 0.7 + 0.6 * torch.rand(shape, generator=generator)
    contrast = 0.7 + 0.6 * torch.rand(shape, generator=generator)
    out = rgb * brightness
    grey = out.mean(dim=(1, 2, 3), keepdim=True)
    return (grey + contrast * (out - grey)).clamp(0, 255) - caffe_mean

  unit = rgb / 255
  vgg = (unit - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
      IMAGENET_STD).view(1, 3, 1, 1)
  return {"img_cj1": jitter(), "img_cj2": jitter(), "img_vgg": vgg,
          "img_rec": _rgb_to_lab(unit), "mask": mask}


def make_train_step(original, args, model, optimizer, feature_net, tps, batch: dict,
                    current_step: int) -> Callable[[], list]:
  """One iteration of Trainer.step on the fixed device batch, as a closure.

  Args:
    original: the original's modules (from _import_original).
    args: the config namespace (configs/config.yaml with the flag overrides).
    model: the segmenter, on the device.
    optimizer: its SGD (Trainer.optimizer_seg).
    feature_net: FeatureExtraction, in eval mode.
    tps: RandTPS on the device.
    batch: img_cj1, img_cj2, img_vgg, img_rec and mask, already on the device.
    current_step: the step that sets the poly learning rate.

  Returns:
    A function that runs the step and returns the four loss values the step reads back
    (loss_sc, loss_rgb, loss_contrastive, loss_eqv, each times its weight).
  """
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  import torch.nn as nn  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel,invalid-name

  einops, loss = original.einops, original.loss
  kl = nn.KLDivLoss(reduction="none")
  interp = nn.Upsample(size=(args.input_size, args.input_size), mode="bilinear",
                       align_corners=True)
  lr = args.learning_rate * (1 - float(current_step) / POLY_MAX_ITER) ** args.power
  images, mask = batch["img_cj1"], batch["mask"].float()
  images_vgg, images_rec, images_cj = batch["img_vgg"], batch["img_rec"], batch["img_cj2"]

  def get_zoo_feat(images_zoo):
    with torch.no_grad():
      zoo_feats = feature_net(images_zoo)
      return torch.cat([interp(zoo_feat) for zoo_feat in zoo_feats], dim=1)

  def train_step():
    model.train()
    optimizer.zero_grad()
    optimizer.param_groups[0]["lr"] = lr  # adjust_learning_rate
    optimizer.param_groups[1]["lr"] = lr * 10

    _, _, pred_low, _ = model(images)
    pred = interp(pred_low)
    zoo_feat = get_zoo_feat(images_vgg) * mask
    pred_softmax = torch.softmax(pred, dim=1)
    basis = torch.einsum("brhw, bchw -> brc", pred_softmax * mask, zoo_feat)
    basis /= einops.reduce(pred_softmax * mask, "b r h w -> b r 1", "sum") + 1e-7
    loss_sc = 0
    for pred_sm_, zoo_feat_, mask_ in zip(pred_softmax * mask, zoo_feat, mask):
      loss_sc += loss.consistency_loss(pred_sm_.unsqueeze(0), zoo_feat_.unsqueeze(0),
                                       mask_.unsqueeze(0))
    reads = [args.lambda_sc * loss_sc.data.cpu().numpy()]
    loss_rgb = loss.consistency_loss(pred_softmax * mask, images_rec, mask)
    reads.append(args.lambda_rgb * loss_rgb.data.cpu().numpy())
    loss_contrastive = loss.contrastive_loss(
        basis[:, :, -args.layer_len:] if args.layer_len > 0 else basis, args.temperature)
    reads.append(args.lambda_contrastive * loss_contrastive.data.cpu().numpy())

    tps.reset_control_points()
    images_tps = tps(images_cj)
    mask_tps = tps(mask, padding_mode="zeros")
    _, _, pred_low_tps, _ = model(images_tps)
    pred_tps = interp(pred_low_tps)
    pred_d = pred.detach()
    pred_d.requires_grad = False
    pred_tps_org = tps(pred_d, padding_mode="zeros")
    loss_eqv = kl(F.log_softmax(pred_tps, dim=1), F.softmax(pred_tps_org, dim=1))
    loss_eqv = (loss_eqv * mask_tps).flatten(1).sum(1) / (mask_tps.flatten(1).sum(1) + 1e-7)
    loss_eqv = loss_eqv.mean()
    reads.append(args.lambda_eqv * loss_eqv.data.cpu().numpy())

    total_loss = (args.lambda_eqv * loss_eqv + args.lambda_sc * loss_sc
                  + args.lambda_rgb * loss_rgb + args.lambda_contrastive * loss_contrastive)
    total_loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), args.clip_gradients)
    optimizer.step()
    return reads

  return train_step


def _stage_step(stage: str, num_steps: int) -> int:
  if stage == "first":
    return 0
  if stage == "last":
    return num_steps - 1
  if not stage.isdigit():
    raise SystemExit(f"--stages: unknown stage {stage!r}; use first, last or step numbers")
  return int(stage)


def main():
  cli = _parse_args()
  import numpy as np
  import torch  # pylint: disable=redefined-outer-name

  if cli.threads:
    torch.set_num_threads(cli.threads)
  torch.backends.cudnn.enabled = True  # as train.py sets it; benchmark and deterministic
  torch.backends.cudnn.benchmark = False  # keep the defaults, as in trainer_ours.py
  torch.backends.cudnn.deterministic = False
  repo = os.path.abspath(cli.repo)
  original, einops_source, vgg_source = _import_original(repo)
  args = _load_config(repo)
  args.batch_size = cli.batch_size or args.batch_size
  args.input_size = cli.image_size or args.input_size
  if args.batch_size < 3:
    raise SystemExit(f"--batch_size={args.batch_size}: the original's contrastive loss draws "
                     "positives with torch.randint(1, B - 1), which needs B >= 3")
  device = torch.device(cli.device)
  size, batch_size = args.input_size, args.batch_size
  host_batch = make_batch(batch_size, size, torch.Generator().manual_seed(0))
  batch = {name: value.to(device) for name, value in host_batch.items()}
  feature_net, vgg_weights = _feature_net(original, args, vgg_source, device)

  def synchronize():
    if device.type == "cuda":
      torch.cuda.synchronize(device)

  for stage in cli.stages.split(","):
    current_step = _stage_step(stage, args.num_steps)
    torch.manual_seed(args.random_seed)  # Trainer.__init__ seeds these
    np.random.seed(args.random_seed)
    random.seed(args.random_seed)
    model, backbone_weights = _segmenter(original, args, device)
    tps = original.rand_tps.RandTPS(
        size, size, batch_size=batch_size, sigma=args.tps_sigma,
        border_padding=args.eqv_border_padding, random_mirror=args.eqv_random_mirror,
        random_scale=(args.random_scale_low, args.random_scale_high),
        mode=args.tps_mode).to(device)
    optimizer = torch.optim.SGD(model.optim_parameters(args), lr=args.learning_rate,
                                momentum=args.momentum, weight_decay=args.weight_decay)
    optimizer.zero_grad()
    train_step = make_train_step(original, args, model, optimizer, feature_net, tps, batch,
                                 current_step)
    if device.type == "cuda":
      torch.cuda.reset_peak_memory_stats(device)
    synchronize()
    start = time.perf_counter()
    first_reads = train_step()  # allocator and kernel warm-up
    synchronize()
    first_step_s = time.perf_counter() - start
    if not all(np.isfinite(first_reads)):
      print(f"warning: non-finite values in the first step: {first_reads}", file=sys.stderr)
    times = []
    for _ in range(cli.steps):
      synchronize()
      start = time.perf_counter()
      train_step()
      synchronize()
      times.append(time.perf_counter() - start)
    median = statistics.median(times)
    if device.type == "cuda":
      peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
      device_name = torch.cuda.get_device_name(device)
    else:
      peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
      device_name = "cpu"
    print(json.dumps({
        "config": "configs/config.yaml", "method": "unsup_parts",
        "implementation": "pytorch original", "repo": os.path.basename(repo),
        "stage": f"{stage}: {STAGE_DESCRIPTION}",
        "device": device_name, "devices": 1, "host_cpu": machine.cpu_model(),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size, "image_shape": [size, size, 3],
        "compile_s": round(first_step_s, 2), "step_ms_median": round(1e3 * median, 2),
        "step_ms_p90": round(1e3 * float(np.percentile(times, 90)), 2),
        "images_per_s": round(batch_size / median, 1), "peak_memory_mb": round(peak_mb, 1),
        "model": args.model, "num_parts": args.num_parts,
        "backbone_weights": backbone_weights, "vgg": vgg_source, "vgg_weights": vgg_weights,
        "einops": einops_source, "torch": torch.__version__,
        "python": platform.python_version()}), flush=True)
    del model, optimizer, tps, train_step


if __name__ == "__main__":
  main()
