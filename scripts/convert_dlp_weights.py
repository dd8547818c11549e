"""Converts a released PyTorch Deep Latent Particles checkpoint into a flax msgpack file.

  python scripts/convert_dlp_weights.py --config=celeba \
      --input=dlp_celeba_gauss_pointnetpp_feat.pth --output=dlp_celeba.msgpack
  python scripts/convert_dlp_weights.py --config=traffic \
      --input=dlp_traffic_gauss_pointnetpp.pth --output=dlp_traffic.msgpack
  python scripts/convert_dlp_weights.py --config=clevrer \
      --input=dlp_clevrer_gauss_pointnetpp.pth --output=dlp_clevrer.msgpack

--config is a released checkpoint's name (celeba, traffic, clevrer: the configs with its
hyper-parameters, configs/dlp_traffic.py:released for traffic) or a DLP config file
(``configs/dlp_shapes.py:cpu``) for a checkpoint trained with other settings. Torch is
not needed: the file is read by ``dti_jax.interop.torch_files``; the key mapping is in
``dti_jax.methods.dlp.weights``. The output holds params, batch_stats and the config, so
``--weights=FILE`` of the demo and the editor needs nothing else, and an evaluation
(``--config.model.weights=FILE``) checks its config against it. An existing output is
only replaced with --overwrite. Prints one summary line; bad input is one
``error: ...`` line and exit code 2.
"""

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dti_jax.interop import torch_files  # pylint: disable=wrong-import-position
from dti_jax.methods.dlp import weights as dlp_weights  # pylint: disable=wrong-import-position


def convert(config_spec: str, input_path: str, output_path: str,
            overwrite: bool = False) -> str:
  """Converts and writes; returns the summary line.

  Raises:
    ValueError: an existing output without ``overwrite``, a bad config, or a file that
      is not a state dict of the config's model.
    FileNotFoundError: no input or config file.
  """
  if os.path.exists(output_path) and not overwrite:
    raise ValueError(f"{output_path} exists; pass --overwrite to replace it")
  config = dlp_weights.load_config(config_spec)
  if not os.path.isfile(input_path):
    raise FileNotFoundError(f"--input={input_path!r}: no such file")
  state_dict = torch_files.load_torch_file(input_path)
  if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
    state_dict = state_dict["state_dict"]
  variables = dlp_weights.convert_state_dict(state_dict, config, input_path)
  dlp_weights.save(output_path, variables, config)
  params = jax.tree.leaves(variables["params"])
  count = sum(int(np.size(leaf)) for leaf in params)
  m = config.model
  return (f"{m.kind} model, {m.image_size} px, K={m.num_particles}, D={m.feature_dim}: "
          f"{len(params) + len(jax.tree.leaves(variables['batch_stats']))} "
          f"tensors, {count:,} parameters -> {output_path}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True,
                      help=f"one of {', '.join(dlp_weights.RELEASED)} or a DLP config file "
                           "(file.py[:variant])")
  parser.add_argument("--input", required=True, help="the torch.save state dict (.pth)")
  parser.add_argument("--output", required=True, help="the .msgpack file to write")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
  args = parser.parse_args(argv)
  try:
    print(convert(args.config, args.input, args.output, args.overwrite))
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
