"""Times the train step of the PyTorch originals, for a side-by-side with benchmark.py.

Runs in the originals' own environment (torch, kornia, PyYAML, scipy, scikit-learn;
see docs/benchmarks.md), never in dti_jax's. It imports the original's model and
optimizer modules from the checkout given by --repo, builds the model from one of
its YAML configs, feeds random images of the config's data shape, and times what its
trainer does per batch (`Trainer.single_train_batch_run`): zero_grad, forward,
backward, optimizer step, cluster proportions read back to the host.

  python scripts/benchmark_original.py --repo=../dti-clustering --config=configs/mnist.yml \
      --image_shape=28,28,1 --threads=2 --steps=20
  python scripts/benchmark_original.py --repo=../dti-sprites --config=configs/tetro.yml \
      --image_shape=35,35,3 --device=cuda

Stages: 'first' is the model as built (epoch 0 of its curriculum); 'last' calls the
model's own per-epoch `step()` until every transformation module is active (for
DTI-Sprites also past the frozen-sprite epochs); a number n calls it n times. Prints one JSON line per stage with
the fields of benchmark.py.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from scripts import machine  # pylint: disable=wrong-import-position


def _parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repo", required=True, help="checkout of monniert/dti-clustering "
                      "or monniert/dti-sprites")
  parser.add_argument("--config", required=True, help="YAML config, relative to --repo")
  parser.add_argument("--image_shape", required=True, help="H,W,C of the random images")
  parser.add_argument("--batch_size", type=int, default=0,
                      help="0: the config's training.batch_size")
  parser.add_argument("--steps", type=int, default=20, help="timed steps per stage")
  parser.add_argument("--stages", default="first,last",
                      help="first, last or epoch numbers, comma-separated")
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
  parser.add_argument("--device", default="cpu", help="cpu or cuda")
  return parser.parse_args()


class RandomImages:
  """The dataset interface the originals' models read at construction."""

  def __init__(self, torch, shape: tuple[int, int, int], size: int):
    height, width, channels = shape
    generator = torch.Generator().manual_seed(0)
    self.images = torch.rand((size, channels, height, width), generator=generator)
    self.n_channels, self.img_size, self.n_classes = channels, (height, width), 10

  def __len__(self):
    return len(self.images)

  def __getitem__(self, index):
    return self.images[index], 0


def _import_original(repo: str):
  """The original's `model` and `optimizer` packages, from <repo>/src."""
  src = os.path.join(os.path.abspath(repo), "src")
  if not os.path.isdir(os.path.join(src, "model")):
    raise SystemExit(f"--repo={repo}: no src/model folder; expected a checkout of "
                     "monniert/dti-clustering or monniert/dti-sprites")
  import kornia
  if not hasattr(kornia, "homography_warp"):
    # The originals pin kornia 0.3, where this function sat at the top level; later
    # releases keep the same function in kornia.geometry.transform.
    kornia.homography_warp = kornia.geometry.transform.homography_warp
  import scipy.signal
  if not hasattr(scipy.signal, "gaussian"):  # moved to scipy.signal.windows in SciPy 1.13
    scipy.signal.gaussian = scipy.signal.windows.gaussian
  sys.path.insert(0, src)
  import model as model_lib  # pylint: disable=import-outside-toplevel
  import optimizer as optimizer_lib  # pylint: disable=import-outside-toplevel
  return model_lib, optimizer_lib


def _describe_stage(model) -> str:
  """Active transformation modules of the first sequence, as the original counts them."""
  transformers = ([model.transformer] if hasattr(model, "transformer")
                  else list(getattr(model, "sprite_transformers", [])))
  sequences = [s for t in transformers for s in getattr(t, "tsf_sequences", [])[:1]]
  text = (f"{int(sequences[0].activations.sum())}/{sequences[0].n_tsf} modules active"
          if sequences else "identity")
  if getattr(model, "are_sprite_frozen", False):
    text += ", sprites frozen"
  return text


def _epochs_to_last_stage(model_cfg: dict) -> int:
  epochs = [0, int(model_cfg.get("freeze_sprite", 0) or 0)]
  for key in ("curriculum_learning", "curriculum_learning_bkg", "curriculum_learning_layer"):
    milestones = model_cfg.get(key) or []
    epochs += [int(m) for m in milestones]
  return max(epochs)


def main():
  args = _parse_args()
  import numpy as np
  import torch
  import yaml

  if args.threads:
    torch.set_num_threads(args.threads)
  model_lib, optimizer_lib = _import_original(args.repo)
  with open(os.path.join(args.repo, args.config)) as f:
    cfg = yaml.safe_load(f)
  shape = tuple(int(v) for v in args.image_shape.split(","))
  batch_size = args.batch_size or cfg["training"]["batch_size"]
  device = torch.device(args.device)
  torch.manual_seed(0)
  np.random.seed(0)
  dataset = RandomImages(torch, shape, batch_size * 2)
  images = dataset.images[:batch_size].to(device)

  for stage in args.stages.split(","):
    model_cfg = dict(cfg["model"])
    model = model_lib.get_model(model_cfg.pop("name"))(dataset, **model_cfg).to(device)
    opt_cfg = dict(cfg["training"]["optimizer"])
    cluster_kwargs, tsf_kwargs = opt_cfg.pop("cluster", {}), opt_cfg.pop("transformer", {})
    optimizer = optimizer_lib.get_optimizer(opt_cfg.pop("name"))([
        dict(params=model.cluster_parameters(), **cluster_kwargs),
        dict(params=model.transformer_parameters(), **tsf_kwargs)], **opt_cfg)
    model.set_optimizer(optimizer)
    epochs = {"first": 0, "last": _epochs_to_last_stage(cfg["model"])}.get(stage)
    if epochs is None and not stage.isdigit():
      raise SystemExit(f"--stages: unknown stage {stage!r}; use first, last or epoch numbers")
    for _ in range(int(stage) if epochs is None else epochs):
      model.step()
    model.train()

    def train_step():
      optimizer.zero_grad()
      loss, distances = model(images)
      loss.backward()
      optimizer.step()
      with torch.no_grad():
        proportions = torch.bincount(distances.min(1)[1], minlength=distances.size(1))
      return loss.item(), proportions.cpu()

    train_step()  # warm-up (cuDNN autotuning, allocator)
    times = []
    for _ in range(args.steps):
      start = time.perf_counter()
      train_step()
      times.append(time.perf_counter() - start)
    median = statistics.median(times)
    if device.type == "cuda":
      peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
      device_name = torch.cuda.get_device_name(device)
    else:
      peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
      device_name = "cpu"
    print(json.dumps({
        "implementation": "pytorch original", "repo": os.path.basename(
            os.path.abspath(args.repo)), "config": args.config,
        "stage": f"{stage}: {_describe_stage(model)}",
        "device": device_name, "host_cpu": machine.cpu_model(),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size, "image_shape": list(shape),
        "step_ms_median": round(1e3 * median, 2),
        "step_ms_p90": round(1e3 * float(np.percentile(times, 90)), 2),
        "images_per_s": round(batch_size / median, 1), "peak_memory_mb": round(peak_mb, 1),
        "torch": torch.__version__, "python": platform.python_version()}), flush=True)


if __name__ == "__main__":
  main()
