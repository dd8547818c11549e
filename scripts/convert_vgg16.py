"""Converts torchvision's ImageNet VGG-16 into the weights of DLP's "vgg" loss.

  python scripts/convert_vgg16.py --checkpoint=vgg16-397923af.pth \
      --output=vgg16_features.msgpack

(``--pth`` and ``--out`` are accepted too.) torchvision downloads the file to
~/.cache/torch/hub/checkpoints/ on ``torchvision.models.vgg16(pretrained=True)``; it is
read here without torch. Only the 13 convs of ``features`` are kept (kernels OIHW ->
HWIO); the classifier is dropped. Point ``config.loss.vgg_weights`` at the output;
``dti_jax.methods.dlp.perceptual.load_vgg16_features`` reads it. Prints one summary line;
bad input is one ``error: ...`` line and exit code 2.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dti_jax.interop import torch_files  # pylint: disable=wrong-import-position
from dti_jax.methods.dlp import perceptual as vgg_perceptual  # pylint: disable=wrong-import-position


def convert(checkpoint_path: str, output_path: str) -> str:
  """Converts and writes; returns the summary line. Raises ValueError on bad input."""
  state_dict = torch_files.load_torch_file(checkpoint_path)
  if isinstance(state_dict, dict) and "state_dict" in state_dict:
    state_dict = state_dict["state_dict"]
  if not isinstance(state_dict, dict):
    raise ValueError(f"{checkpoint_path}: holds a {type(state_dict).__name__}, not a state "
                     "dict")
  params = vgg_perceptual.convert_state_dict(state_dict, checkpoint_path)
  vgg_perceptual.save_params(output_path, params)
  count = sum(int(np.size(value)) for layer in params.values() for value in layer.values())
  return (f"vgg16 features: {len(params)} convs, {count:,} parameters, taps "
          f"{', '.join(vgg_perceptual.TAPS)} -> {output_path}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", "--pth", required=True, help="vgg16-397923af.pth")
  parser.add_argument("--output", "--out", required=True, help="the .msgpack file to write")
  args = parser.parse_args(argv)
  try:
    print(convert(args.checkpoint, args.output))
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
