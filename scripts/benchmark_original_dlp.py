"""Times the train step of the original Deep Latent Particles, for a side-by-side with benchmark.py.

Runs in the original's own environment (torch, torchvision, torch_geometric, opencv),
never in dti_jax's. It imports `models.KeyPointVAE` and `utils.loss_functions` from the
checkout of taldatech/deep-latent-particles-pytorch given by --repo (it copies none of
their code), builds the model with a preset of the original's `train_dlp.py`, feeds
random images and times what the inner loop of `train_dlp.py` does per batch: the
forward pass, the reconstruction loss (the glimpse loss in the warm-up, else the full
image plus the PSNR under no_grad), the Chamfer-KL against the prior proposals, the
feature KL, zero_grad of both Adam optimizers, backward, both steps and the loop's
`.item()` reads (loss, rec, kl, kl_kp, kl_feat and the progress bar's loss, rec, kl).
Not timed: the data loader, the host-to-device copy and tqdm.

  python scripts/benchmark_original_dlp.py --repo=.originals/deep-latent-particles-pytorch \
      --preset=shapes --threads=2 --steps=5 --batch_size=8
  python scripts/benchmark_original_dlp.py --repo=.originals/deep-latent-particles-pytorch \
      --preset=shapes --device=cuda --steps=50

Stages: 'first' is epoch 0 (shapes: warm-up with noisy masks), 'last' the normal phase
(learned presences, no mask noise); a number n is epoch n (warm-up while n <
warmup_epoch, noisy masks while n < 5 * warmup_epoch). Prints one JSON line per stage
with the fields of benchmark.py; `compile_s` is the time of the first, untimed step
(allocator and kernel warm-up: PyTorch compiles nothing). Like `train_dlp.py` the run
sets cudnn.benchmark False and cudnn.deterministic True. Peak CUDA memory is reset
per stage; on the CPU the peak RSS is the process's.

Adaptations, all outside the original's files:
* Its `PointNetPPToCNN` reads an undefined global `patch_size` (a NameError at HEAD);
  the script defines it as (F, F), F the posterior feature-map side, which gives the
  intended one upsampling block.
* Without `torch_cluster`, `knn_graph` comes from pyg-lib through torch_geometric
  where that has it, else from a dense torch stand-in (cdist + topk); the record's
  `knn` field says which ran, since it changes the time.
* The CelebA preset's VGG loss uses ImageNet weights from the torch hub cache when
  they are there, else random weights (the same cost); `vgg_weights` says which.
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time
import types
from typing import TYPE_CHECKING, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from scripts import machine  # pylint: disable=wrong-import-position

if TYPE_CHECKING:
  import torch

# The `__main__` presets of train_dlp.py (single GPU), with their dataset branch's
# image size and channel widths. Shapes is also the tutorial notebook's setting, except
# that the notebook has exclusive_patches False. CelebA's sigma, kp_range and the
# other globals are the shared defaults below.
PRESETS = {
    "shapes": dict(
        image_size=64, enc_channels=(32, 64, 128), prior_channels=(16, 32, 64),
        n_kp_enc=10, n_kp_prior=15, patch_size=8, learned_feature_dim=6, anchor_s=0.25,
        dec_bone="gauss_pointnetpp", use_object_enc=True, use_object_dec=True,
        exclusive_patches=True, warmup_epoch=1, recon_loss_type="mse", beta_kl=0.05,
        beta_rec=1.0, kl_balance=0.001, lr=1e-3, batch_size=64),
    "celeba": dict(
        image_size=128, enc_channels=(32, 64, 128, 256), prior_channels=(16, 32, 64),
        n_kp_enc=30, n_kp_prior=50, patch_size=8, learned_feature_dim=10, anchor_s=0.125,
        dec_bone="gauss_pointnetpp_feat", use_object_enc=True, use_object_dec=False,
        exclusive_patches=False, warmup_epoch=0, recon_loss_type="vgg", beta_kl=40.0,
        beta_rec=1.0, kl_balance=0.001, lr=2e-4, batch_size=64),
}
# Globals of train_dlp.py's `__main__`, the same for every dataset.
COMMON = dict(cdim=3, n_kp=1, sigma=0.1, kp_range=(-1, 1), kp_activation="tanh",
              pad_mode="replicate", dropout=0.0, use_logsoftmax=False,
              mask_threshold=0.2, learn_order=False)
MODEL_KEYS = ("image_size", "enc_channels", "prior_channels", "n_kp_enc", "n_kp_prior",
              "patch_size", "learned_feature_dim", "anchor_s", "dec_bone", "use_object_enc",
              "use_object_dec", "exclusive_patches")
# The phase names and descriptions of dti_jax.methods.dlp.trainer, so the records line up.
PHASES = {"warmup": "warm-up (glimpse loss, no background branch, random presences)",
          "noisy": "noisy masks (random presences, alpha noise)",
          "normal": "normal (learned presences)"}


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repo", required=True, help="checkout of "
                      "taldatech/deep-latent-particles-pytorch (models.py, modules/, utils/)")
  parser.add_argument("--preset", default="shapes", choices=sorted(PRESETS),
                      help="train_dlp.py dataset preset")
  parser.add_argument("--batch_size", type=int, default=0, help="0: the preset's (64)")
  parser.add_argument("--steps", type=int, default=20, help="timed steps per stage")
  parser.add_argument("--stages", default="first,last",
                      help="first, last or epoch numbers, comma-separated")
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
  parser.add_argument("--device", default="cpu", help="cpu or cuda")
  return parser.parse_args()


def dense_knn_graph(x: "torch.Tensor", k: int, batch: "torch.Tensor | None" = None,
                    loop: bool = False, flow: str = "source_to_target",
                    cosine: bool = False, num_workers: int = 1,
                    batch_size: int | None = None) -> "torch.Tensor":
  """torch_cluster.knn_graph on dense [B, N, N] distances, for equal contiguous batches.

  Returns edge_index [2, E]: with flow source_to_target row 0 holds the neighbour j and
  row 1 the centre i, each centre having its min(k, N) nearest points of the same
  batch entry (itself included when loop is True; else k + 1 are taken and self edges
  dropped, as torch_cluster does). Euclidean distances: the order of torch_cluster's
  squared ones.
  """
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  del num_workers
  if cosine:
    raise NotImplementedError("dense_knn_graph: cosine distance")
  if flow not in ("source_to_target", "target_to_source"):
    raise ValueError(f"flow={flow!r}")
  x = x.view(-1, 1) if x.dim() == 1 else x
  n = x.shape[0]
  if batch is None:
    batch = torch.zeros(n, dtype=torch.long, device=x.device)
  # torch_cluster reads the batch count back to the host the same way.
  num_graphs = batch_size or int(batch.max()) + 1
  per_graph = n // num_graphs
  expected = torch.arange(n, device=x.device) // max(per_graph, 1)
  if n % num_graphs or not torch.equal(batch.to(x.device), expected):
    raise ValueError("dense_knn_graph needs equal-sized contiguous batch entries")
  points = x.view(num_graphs, per_graph, -1)
  distances = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
  k_eff = min(k if loop else k + 1, per_graph)
  neighbours = distances.topk(k_eff, dim=-1, largest=False).indices  # [B, N, k]
  offsets = (torch.arange(num_graphs, device=x.device) * per_graph).view(-1, 1, 1)
  neighbours = (neighbours + offsets).reshape(-1)
  centres = torch.arange(n, device=x.device).repeat_interleave(k_eff)
  if not loop:
    keep = neighbours != centres
    neighbours, centres = neighbours[keep], centres[keep]
  if flow == "source_to_target":
    return torch.stack([neighbours, centres], dim=0)
  return torch.stack([centres, neighbours], dim=0)


def _fps(*args, **kwargs):
  raise NotImplementedError("torch_cluster.fps stand-in: unused by DLP (with_fps=False)")


def _provide_knn() -> str:
  """Makes `from torch_cluster import knn_graph, fps` work; returns which kNN runs."""
  try:
    import torch_cluster  # pylint: disable=import-outside-toplevel,unused-import
    return "torch_cluster"
  except (ImportError, OSError):
    pass
  import torch_geometric.typing  # pylint: disable=import-outside-toplevel
  stand_in = types.ModuleType("torch_cluster")
  stand_in.fps = _fps
  if getattr(torch_geometric.typing, "WITH_KNN", False):
    # torch_geometric >= 2.8 moved torch_cluster's kNN kernel into pyg-lib.
    from torch_geometric.nn import knn_graph  # pylint: disable=import-outside-toplevel
    stand_in.knn_graph, knn = knn_graph, "pyg-lib (torch_geometric.nn.knn_graph)"
  else:
    stand_in.knn_graph, knn = dense_knn_graph, "dense torch stand-in"
  sys.modules["torch_cluster"] = stand_in
  print(f"torch_cluster not installed: knn_graph from {knn}", file=sys.stderr)
  return knn


def _import_original(repo: str):
  """The original's `models` and `utils.loss_functions` modules, from --repo."""
  repo = os.path.abspath(repo)
  if not os.path.isfile(os.path.join(repo, "models.py")) or not os.path.isdir(
      os.path.join(repo, "modules")):
    raise SystemExit(f"--repo={repo}: no models.py and modules/; expected a checkout of "
                     "taldatech/deep-latent-particles-pytorch")
  try:
    import cv2  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as error:
    raise SystemExit(f"the original's utils/util_func.py imports cv2 ({error}): "
                     "pip install opencv-python-headless") from error
  knn = _provide_knn()
  sys.path.insert(0, repo)
  import modules.modules as modules_lib  # pylint: disable=import-outside-toplevel
  import models as models_lib  # pylint: disable=import-outside-toplevel
  from utils import loss_functions  # pylint: disable=import-outside-toplevel
  return models_lib, modules_lib, loss_functions, knn


def _stage_phase(stage: str, warmup_epoch: int) -> str:
  """warmup, noisy or normal, as train_dlp.py derives them from the epoch."""
  if stage == "last":
    return "normal"
  if stage != "first" and not stage.isdigit():
    raise SystemExit(f"--stages: unknown stage {stage!r}; use first, last or epoch numbers")
  epoch = 0 if stage == "first" else int(stage)
  if epoch < warmup_epoch:
    return "warmup"
  return "noisy" if epoch < 5 * warmup_epoch else "normal"


def _vgg_distance(loss_functions, device) -> tuple[object, str]:
  """The original's VGGDistance; random VGG16 weights when ImageNet's are not cached."""
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  import torchvision  # pylint: disable=import-outside-toplevel
  url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
  cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
  if os.path.isfile(cached):
    return loss_functions.VGGDistance(device=device), "imagenet"
  print(f"no {cached}: VGG16 with random weights (same cost)", file=sys.stderr)
  original = loss_functions.models
  loss_functions.models = types.SimpleNamespace(
      vgg16=lambda pretrained=False: torchvision.models.vgg16(weights=None))
  try:
    return loss_functions.VGGDistance(device=device), "random"
  finally:
    loss_functions.models = original


def make_train_step(model, optimizers: tuple, x: "torch.Tensor", preset: dict,
                    phase: str, loss_functions, recon_loss_func=None) -> Callable[[], list]:
  """One batch of train_dlp.py's inner loop on the fixed batch x, as a closure.

  Args:
    model: the original's KeyPointVAE, in train mode.
    optimizers: (encoder + prior Adam, decoder Adam).
    x: images [B, C, S, S] on the model's device, also the prior's input.
    preset: an entry of PRESETS.
    phase: warmup, noisy or normal.
    loss_functions: the original's utils.loss_functions module.
    recon_loss_func: the VGG distance for presets with recon_loss_type 'vgg'.

  Returns:
    A function that runs the step and returns the host reads the loop makes (the PSNR
    first outside the warm-up; then loss, rec, kl, kl_kp, kl_feat, loss, rec, kl).
  """
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel,invalid-name

  warmup, noisy_masks = phase == "warmup", phase != "normal"
  use_object_dec, vgg = preset["use_object_dec"], preset["recon_loss_type"] == "vgg"
  calc_reconstruction_loss = loss_functions.calc_reconstruction_loss
  kl_loss_func = loss_functions.ChamferLossKL(use_reverse_kl=False)
  logvar_p = torch.log(torch.tensor(COMMON["sigma"] ** 2)).to(x.device)
  beta_rec, beta_kl, kl_balance = preset["beta_rec"], preset["beta_kl"], preset["kl_balance"]
  optimizer_e, optimizer_d = optimizers

  def train_step():
    output = model(x, x_prior=x, warmup=warmup, noisy_masks=noisy_masks)
    mu_p, mu, logvar, rec_x = output["kp_p"], output["mu"], output["logvar"], output["rec"]
    mu_features, logvar_features = output["mu_features"], output["logvar_features"]
    dec_objects = output["dec_objects_original"]
    cropped_objects = output["cropped_objects_original"]
    reads = []
    if use_object_dec and dec_objects is not None and warmup:  # glimpse loss
      _, dec_objects_rgb = torch.split(dec_objects, [1, 3], dim=2)
      dec_objects_rgb = dec_objects_rgb.reshape(-1, *dec_objects_rgb.shape[2:])
      if vgg:
        cropped_objects = cropped_objects.reshape(-1, *cropped_objects.shape[2:])
        if cropped_objects.shape[-1] < 32:
          cropped_objects = F.interpolate(cropped_objects, size=32, mode="bilinear",
                                          align_corners=False)
          dec_objects_rgb = F.interpolate(dec_objects_rgb, size=32, mode="bilinear",
                                          align_corners=False)
        loss_rec = recon_loss_func(cropped_objects, dec_objects_rgb, reduction="mean")
      else:
        cropped_objects = cropped_objects.clone().reshape(-1, *cropped_objects.shape[2:])
        loss_rec = calc_reconstruction_loss(cropped_objects, dec_objects_rgb,
                                            loss_type="mse", reduction="mean")
    else:
      if vgg:
        loss_rec = recon_loss_func(x, rec_x, reduction="mean")
      else:
        loss_rec = calc_reconstruction_loss(x, rec_x, loss_type="mse", reduction="mean")
      with torch.no_grad():
        psnr = -10 * torch.log10(F.mse_loss(rec_x, x))
        reads.append(psnr.data.cpu().item())
    # The background particle (last) is left out of the Chamfer-KL, as in train_dlp.py.
    loss_kl_kp = kl_loss_func(mu_preds=mu[:, :-1], logvar_preds=logvar[:, :-1], mu_gts=mu_p,
                              logvar_gts=logvar_p.expand_as(mu_p)).mean()
    loss_kl_feat = loss_functions.calc_kl(
        logvar_features.view(-1, logvar_features.shape[-1]),
        mu_features.view(-1, mu_features.shape[-1]), reduce="none")
    loss_kl_feat = loss_kl_feat.view(x.shape[0], preset["n_kp_enc"] + 1).sum(1).mean()
    loss_kl = loss_kl_kp + kl_balance * loss_kl_feat
    loss = beta_rec * loss_rec + beta_kl * loss_kl
    optimizer_e.zero_grad()
    optimizer_d.zero_grad()
    loss.backward()
    optimizer_e.step()
    optimizer_d.step()
    for value in (loss, loss_rec, loss_kl, loss_kl_kp, loss_kl_feat,  # the epoch logs
                  loss, loss_rec, loss_kl):  # the progress bar
      reads.append(value.data.cpu().item())
    return reads

  return train_step


def build_model(models_lib, preset: dict, device: "torch.device") -> tuple:
  """KeyPointVAE in train mode and its two Adam optimizers, as train_dlp.py builds them."""
  import torch  # pylint: disable=import-outside-toplevel,redefined-outer-name
  with contextlib.redirect_stdout(sys.stderr):  # the constructor prints its settings
    model = models_lib.KeyPointVAE(**COMMON, **{k: preset[k] for k in MODEL_KEYS}).to(device)
  adam = dict(lr=preset["lr"], betas=(0.9, 0.999), eps=1e-4, weight_decay=0.0)
  optimizer_e = torch.optim.Adam(
      model.get_parameters(encoder=True, prior=True, decoder=False), **adam)
  optimizer_d = torch.optim.Adam(
      model.get_parameters(encoder=False, prior=False, decoder=True), **adam)
  model.train()
  return model, (optimizer_e, optimizer_d)


def main():
  args = _parse_args()
  import numpy as np
  import torch  # pylint: disable=redefined-outer-name

  if args.threads:
    torch.set_num_threads(args.threads)
  torch.backends.cudnn.benchmark = False  # as train_dlp.py sets them
  torch.backends.cudnn.deterministic = True
  models_lib, modules_lib, loss_functions, knn = _import_original(args.repo)
  preset = PRESETS[args.preset]
  batch_size = args.batch_size or preset["batch_size"]
  size = preset["image_size"]
  feature_side = size // 2 ** (len(preset["enc_channels"]) - 1)
  if not hasattr(modules_lib, "patch_size"):
    modules_lib.patch_size = (feature_side, feature_side)  # the NameError at HEAD
  device = torch.device(args.device)
  generator = torch.Generator().manual_seed(0)
  x = torch.rand((batch_size, COMMON["cdim"], size, size), generator=generator).to(device)
  extra, recon_loss_func = {"knn": knn}, None
  if preset["recon_loss_type"] == "vgg":
    recon_loss_func, extra["vgg_weights"] = _vgg_distance(loss_functions, device)

  def synchronize():
    if device.type == "cuda":
      torch.cuda.synchronize(device)

  for stage in args.stages.split(","):
    phase = _stage_phase(stage, preset["warmup_epoch"])
    torch.manual_seed(0)
    np.random.seed(0)
    model, optimizers = build_model(models_lib, preset, device)
    train_step = make_train_step(model, optimizers, x, preset, phase, loss_functions,
                                 recon_loss_func)
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
    for _ in range(args.steps):
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
        "config": args.preset, "method": "dlp", "implementation": "pytorch original",
        "repo": os.path.basename(os.path.abspath(args.repo)),
        "stage": f"{stage}: {PHASES[phase]}",
        "device": device_name, "devices": 1, "host_cpu": machine.cpu_model(),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size, "image_shape": [size, size, COMMON["cdim"]],
        "compile_s": round(first_step_s, 2), "step_ms_median": round(1e3 * median, 2),
        "step_ms_p90": round(1e3 * float(np.percentile(times, 90)), 2),
        "images_per_s": round(batch_size / median, 1), "peak_memory_mb": round(peak_mb, 1),
        **extra, "torch": torch.__version__, "python": platform.python_version()}),
          flush=True)
    del model, optimizers, train_step


if __name__ == "__main__":
  main()
