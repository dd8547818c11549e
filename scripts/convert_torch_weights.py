"""Converts the PyTorch weights of unsupervised part discovery into flat .npz files.

  python -m scripts.convert_torch_weights --kind=resnet50_caffe \
      --input=resnet50-caffe-22edcc82.pth --output=resnet50_caffe.npz
  python -m scripts.convert_torch_weights --kind=unsup_parts --input=model_60000.pth \
      --output=unsup_parts_cub.npz
  python -m scripts.convert_torch_weights --kind=vgg19 --input=vgg19-dcbb9e9d.pth \
      --output=vgg19.npz

Torch is not needed: the files are read by ``dti_jax.interop.torch_files``. Kinds and
the key mapping are described in ``dti_jax.methods.unsup_parts.weights``; point
``model.backbone_weights`` (segmenter) or ``perceptual.weights`` (vgg19) at the output.
An existing output is only replaced with --overwrite. Prints one summary line; bad
input is one ``error: ...`` line and exit code 2.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dti_jax.interop import torch_files  # pylint: disable=wrong-import-position
from dti_jax.methods.unsup_parts import weights as unsup_parts_weights  # pylint: disable=wrong-import-position


def convert(kind: str, input_path: str, output_path: str, overwrite: bool = False) -> str:
  """Converts and writes; returns the summary line.

  Raises:
    ValueError: an unknown kind, an existing output without ``overwrite``, or a file
      that is not a state dict of ``kind``.
    FileNotFoundError: no input file.
  """
  if kind not in unsup_parts_weights.KINDS:
    raise ValueError(f"--kind={kind!r} is not one of {', '.join(unsup_parts_weights.KINDS)}")
  if os.path.exists(output_path) and not overwrite:
    raise ValueError(f"{output_path} exists; pass --overwrite to replace it")
  checkpoint = torch_files.load_torch_file(input_path)
  state_dict = unsup_parts_weights.unwrap_checkpoint(checkpoint, input_path)
  flat = unsup_parts_weights.convert_state_dict(state_dict, kind, input_path)
  unsup_parts_weights.save_npz(output_path, flat)
  count = sum(int(np.size(value)) for key, value in flat.items() if key.startswith("params/"))
  summary = f"{kind}: {len(flat)} tensors, {count:,} parameters"
  if kind != "vgg19":
    has_head = any(key.startswith("params/layer5/") for key in flat)
    summary += ", with the ASPP head" if has_head else ", no ASPP head"
  return f"{summary} -> {output_path}"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kind", required=True,
                      help=f"one of {', '.join(unsup_parts_weights.KINDS)}")
  parser.add_argument("--input", required=True, help="the torch.save file (.pth)")
  parser.add_argument("--output", required=True, help="the .npz file to write")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
  args = parser.parse_args(argv)
  try:
    print(convert(args.kind, args.input, args.output, args.overwrite))
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
