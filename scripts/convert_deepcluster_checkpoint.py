"""Converts a released PyTorch DeepCluster checkpoint into a flax msgpack file.

  python scripts/convert_deepcluster_checkpoint.py --checkpoint=checkpoint.pth.tar \
      --output=deepcluster_alexnet.msgpack [--arch=alexnet|vgg16]

Reads the ``{'epoch', 'arch', 'state_dict', 'optimizer'}`` dict that deepcluster's
main.py saves (or a bare state dict), legacy or zip ``torch.save`` layout, without
torch. The output holds "params", "batch_stats" and, when the checkpoint has one,
"top_layer"; ``dti_jax.methods.deepcluster.trainer.load_variables`` reads it, and
``deepcluster_weights.network_for_variables`` builds the module that runs it. The
optimizer state is not converted. Prints one summary line; bad input is one
``error: ...`` line and exit code 2.
"""

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dti_jax.methods.deepcluster import weights as deepcluster_weights  # pylint: disable=wrong-import-position
from dti_jax.interop import torch_files  # pylint: disable=wrong-import-position


def convert(checkpoint_path: str, output_path: str, arch: str | None) -> str:
  """Converts and writes; returns the summary line. Raises ValueError on bad input."""
  checkpoint = torch_files.load_torch_file(checkpoint_path)
  if not isinstance(checkpoint, dict):
    raise ValueError(f"{checkpoint_path} holds a {type(checkpoint).__name__}, not a dict")
  if "state_dict" in checkpoint:
    state_dict = checkpoint["state_dict"]
  elif checkpoint and all(isinstance(v, np.ndarray) for v in checkpoint.values()):
    state_dict, checkpoint = checkpoint, {}
  else:
    raise ValueError(f"{checkpoint_path} has no 'state_dict' (keys {sorted(checkpoint)[:5]})")
  saved_arch = checkpoint.get("arch")
  if arch is not None and saved_arch is not None and arch != saved_arch:
    raise ValueError(f"--arch={arch} but {checkpoint_path} says arch={saved_arch!r}")
  arch = arch or saved_arch
  if arch is None:
    raise ValueError(f"{checkpoint_path} does not name its arch; pass --arch")
  variables = deepcluster_weights.convert_state_dict(state_dict, arch)
  deepcluster_weights.save_variables(output_path, variables)
  count = sum(int(np.size(x)) for x in jax.tree.leaves(variables["params"]))
  fc_width = variables["params"]["fc7"]["bias"].shape[0]
  top = variables.get("top_layer")
  k = top["bias"].shape[0] if top is not None else "none"
  return (f"{arch} epoch {checkpoint.get('epoch', '?')}: {count:,} parameters, fc width "
          f"{fc_width}, top layer k={k} -> {output_path}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True, help="checkpoint.pth.tar")
  parser.add_argument("--output", required=True, help="the .msgpack file to write")
  parser.add_argument("--arch", choices=deepcluster_weights.ARCHS,
                      help="default: the checkpoint's 'arch' entry")
  args = parser.parse_args(argv)
  try:
    print(convert(args.checkpoint, args.output, args.arch))
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
