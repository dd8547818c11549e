"""Every method's small offline config as 2 processes x 2 CPU devices (started by
scripts/launch.py) against 1 process x 4 CPU devices, on this machine.

  python scripts/multihost_matrix.py --out=/tmp/multihost_matrix [--methods=dlp,deepcluster]

Prints one JSON line per method and a Markdown table: the number of logged steps, the
largest relative difference of the logged losses, the first step where it exceeds
1e-5 (collectives sum in another order, and training amplifies the last bits), the
largest difference of the final scores, and what the 2-process workdir holds (event
files, checkpoints, config.json) to show that no file is written twice.
"""

import argparse
import glob
import json
import math
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# method -> the config and the overrides that shorten it to a few dozen steps.
RUNS = {
    "dti_clustering": ("configs/digits.py", [
        "--config.model.transformation_sequence=identity_affine",
        "--config.train.curriculum_epochs=(1,)", "--config.train.num_epochs=1",
        "--config.log.checkpoint_every_steps=10", "--config.eval.every_steps=1000000"]),
    "dti_sprites": ("configs/tetrominoes.py:procedural", [
        "--config.data.num_examples=640", "--config.train.num_epochs=3",
        "--config.eval.every_steps=1000000"]),
    "deepcluster": ("configs/deepcluster_mnist.py:smoke", ["--config.eval.nmi_seeds=1"]),
    "dlp": ("configs/dlp_shapes.py:cpu", [
        "--config.data.num_examples=256", "--config.train.num_epochs=3",
        "--config.eval.every_steps=1000000"]),
    "unsup_parts": ("configs/unsup_parts_toy.py", [
        "--config.train.num_steps=40", "--config.eval.every_steps=1000000"]),
}


def _environment(devices: int | None = None) -> dict[str, str]:
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  if devices:
    env["JAX_NUM_CPU_DEVICES"] = str(devices)
  return env


def _losses(workdir: str) -> dict[int, float]:
  """train/loss per logged step, from TensorBoard's event files."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=import-outside-toplevel
  losses = {}
  for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
    accumulator = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    accumulator.Reload()
    if "train/loss" in accumulator.Tags().get("tensors", []):
      for event in accumulator.Tensors("train/loss"):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        losses[event.step] = float(tf.make_ndarray(event.tensor_proto))
  return losses


def _numbers(tree, prefix=""):
  """Flattened numeric leaves of a final_scores.json."""
  if isinstance(tree, dict):
    for key, value in tree.items():
      yield from _numbers(value, f"{prefix}{key}/")
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    yield prefix.rstrip("/"), float(tree)


def compare(method: str, out: str) -> dict:
  config, overrides = RUNS[method]
  main = [sys.executable, "-m", "dti_jax.main", f"--config={config}",
          "--config.log.every_steps=1", *overrides]
  single, pair = os.path.join(out, method, "one_x4"), os.path.join(out, method, "two_x2")
  one = subprocess.run(main + [f"--workdir={single}"], cwd=REPO, env=_environment(4),
                       capture_output=True, text=True)
  two = subprocess.run([sys.executable, "scripts/launch.py", "--processes=2",
                        "--cpu_devices=2", "--", *main, f"--workdir={pair}"], cwd=REPO,
                       env=_environment(), capture_output=True, text=True)
  result = {"method": method, "config": config, "exit_codes": [one.returncode, two.returncode]}
  if one.returncode or two.returncode:
    result["error"] = (one.stderr or two.stderr).strip().splitlines()[-1:]
    return result
  a, b = _losses(single), _losses(pair)
  steps = sorted(set(a) & set(b))
  relative = [abs(a[s] - b[s]) / max(abs(a[s]), 1e-12) for s in steps]
  with open(os.path.join(single, "final_scores.json")) as f:
    scores_one = dict(_numbers(json.load(f)))
  with open(os.path.join(pair, "final_scores.json")) as f:
    scores_two = dict(_numbers(json.load(f)))
  score_diffs = [abs(scores_one[k] - scores_two[k]) for k in scores_one
                 if k in scores_two and math.isfinite(scores_one[k] + scores_two[k])]
  result.update(
      logged_steps=[len(a), len(b)], same_steps=sorted(a) == sorted(b),
      max_relative_loss_difference=max(relative),
      first_step_over_1e_5=next((s for s, r in zip(steps, relative) if r > 1e-5), None),
      max_final_score_difference=max(score_diffs) if score_diffs else None,
      same_score_keys=sorted(scores_one) == sorted(scores_two),
      event_files=len(glob.glob(os.path.join(pair, "events.out.tfevents.*"))),
      checkpoints=sorted(os.listdir(os.path.join(pair, "checkpoints")), key=int),
      config_files=sorted(n for n in os.listdir(pair) if n.startswith("config")))
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="folder for the workdirs")
  parser.add_argument("--methods", default=",".join(RUNS), help="comma-separated")
  args = parser.parse_args()
  methods = [m for m in args.methods.split(",") if m]
  unknown = sorted(set(methods) - set(RUNS))
  if unknown:
    sys.exit(f"error: --methods: unknown {unknown}; one of {sorted(RUNS)}")
  rows = []
  for method in methods:
    row = compare(method, args.out)
    print(json.dumps(row), flush=True)
    rows.append(row)
  print("\n| method | steps | max rel. loss diff | first step > 1e-5 | max final-score diff |"
        " event files | checkpoints |\n|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['method']} | failed: {r['error']} | | | | | |")
      continue
    print(f"| {r['method']} | {r['logged_steps'][0]} | {r['max_relative_loss_difference']:.2e}"
          f" | {r['first_step_over_1e_5']} | {r['max_final_score_difference']:.2e} |"
          f" {r['event_files']} | {', '.join(r['checkpoints'])} |")


if __name__ == "__main__":
  main()
