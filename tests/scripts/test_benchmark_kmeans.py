"""The k-means benchmark runs and agrees with scikit-learn from the same start."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_benchmark_kmeans_prints_one_line_per_library_with_agreeing_objectives():
  result = subprocess.run(
      [sys.executable, "scripts/benchmark_kmeans.py", "--n=3000", "--d=16", "--k=30",
       "--iters=5", "--libs=profile,jax,sklearn", "--devices=1", "--tile_size=1024"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
  assert [r["lib"] for r in records] == ["profile", "jax", "sklearn"]
  profile = records.pop(0)
  assert profile["points"] == 3000 - 3000 % 1024 and profile["gemm_gflop"] == round(
      2 * profile["points"] * 30 * 16 / 1e9, 3)
  assert all(profile[key] > 0 for key in ("jax_gemm_ms", "jax_nearest_centroids_ms",
                                          "jax_segment_sum_ms", "numpy_gemm_ms"))
  assert records[0]["per_iter_ms"] > 0 and records[0]["total_s"] > 0
  assert abs(records[1]["objective_rel_diff"]) < 1e-5
  assert records[0]["objective"] == records[1]["objective"] or abs(
      records[0]["objective"] / records[1]["objective"] - 1) < 1e-5
