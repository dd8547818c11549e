"""Runs one config with several seeds and prints the paper-style mean +- std table.

  python scripts/multi_run.py --config=configs/mnist.py:embedded --seeds=3 \
      --workdir=workdirs/mnist5k_seeds [--parallel=1] [-- --config.train.num_epochs=20]

Each seed trains in ``<workdir>/seed_<s>`` (a rerun resumes or reuses finished runs);
the table lists every run, the mean +- std over runs, and the run of lowest final loss
(the label-free way to pick one run).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

SCORES = ("acc", "nmi", "ari", "fg_nmi", "fg_ari", "loss")
PERCENT = ("fg_nmi", "fg_ari")   # stored in % already (part discovery); acc/nmi/ari as fractions


def _command(args, seed, extra):
  return [sys.executable, "-m", "dti_jax.main", f"--config={args.config}",
          f"--workdir={os.path.join(args.workdir, f'seed_{seed}')}",
          f"--config.seed={seed}", *extra]


def run_seeds(args, extra: list[str]) -> dict[int, dict]:
  """Runs the seeds (``args.parallel`` at a time); returns {seed: final scores}."""
  seeds = [args.first_seed + i for i in range(args.seeds)]
  pending, running, failed = list(seeds), {}, []
  while pending or running:
    while pending and len(running) < args.parallel:
      seed = pending.pop(0)
      log = open(os.path.join(args.workdir, f"seed_{seed}.log"), "w")
      running[seed] = (subprocess.Popen(_command(args, seed, extra), stdout=log,
                                        stderr=subprocess.STDOUT), log)
      print(f"seed {seed}: started (log {log.name})", flush=True)
    seed = next(iter(running))
    process, log = running.pop(seed)
    process.wait()
    log.close()
    print(f"seed {seed}: exit {process.returncode}", flush=True)
    if process.returncode:
      failed.append(seed)
  if failed:
    sys.exit(f"error: seeds {failed} failed; see their logs in {args.workdir}")
  results = {}
  for seed in seeds:
    with open(os.path.join(args.workdir, f"seed_{seed}", "final_scores.json")) as f:
      results[seed] = json.load(f)
  return results


def markdown_table(results: dict[int, dict]) -> str:
  """Rows per seed, then mean +- std and the median (scores in %), then the lowest-loss run."""
  names = [n for n in SCORES if all(n in r for r in results.values())]
  scale = {n: (1.0 if n == "loss" or n in PERCENT else 100.0) for n in names}
  lines = ["| run | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
  for seed, scores in results.items():
    lines.append(f"| seed {seed} | " + " | ".join(
        f"{scale[n] * scores[n]:.{4 if n == 'loss' else 1}f}" for n in names) + " |")
  values = {n: np.array([scale[n] * r[n] for r in results.values()]) for n in names}
  lines.append("| mean ± std | " + " | ".join(
      f"{values[n].mean():.{4 if n == 'loss' else 1}f} ± {values[n].std():.{4 if n == 'loss' else 1}f}"
      for n in names) + " |")
  lines.append("| median | " + " | ".join(
      f"{np.median(values[n]):.{4 if n == 'loss' else 1}f}" for n in names) + " |")
  if "loss" in names:
    best = min(results, key=lambda s: results[s]["loss"])
    lines.append(f"| lowest loss (seed {best}) | " + " | ".join(
        f"{scale[n] * results[best][n]:.{4 if n == 'loss' else 1}f}" for n in names) + " |")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--seeds", type=int, required=True, help="number of runs")
  parser.add_argument("--first_seed", type=int, default=1)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--parallel", type=int, default=1, help="runs at the same time")
  args, extra = parser.parse_known_args(argv)
  extra = [a for a in extra if a != "--"]
  if args.seeds < 1 or args.parallel < 1:
    parser.error("--seeds and --parallel must be >= 1")
  os.makedirs(args.workdir, exist_ok=True)
  print(markdown_table(run_seeds(args, extra)))


if __name__ == "__main__":
  main()
