"""Converted DeepCluster weights reproduce an independent NCHW forward of the original net.

The tiny checkpoint has the original's key names and layout (``features.module.N`` under
DataParallel, ``classifier.N``, ``top_layer``, ``sobel.*``; CUDA storages in the legacy
torch.save layout, wrapped like deepcluster's main.py saves it) and AlexNet's real conv
shapes, with fc6/fc7 only 16 wide. The reference forward is plain numpy on the torch-layout
weights, so a wrong transpose, flatten order or BN mapping shows up as a value mismatch.
"""

import collections
import os
import subprocess
import sys

import flax
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from dti_jax.methods.deepcluster import weights as deepcluster_weights
from dti_jax.interop import torch_files
from dti_jax.methods.deepcluster import network as network_lib
from scripts import convert_deepcluster_checkpoint
from tests.interop import torch_writer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FC_WIDTH, K = 16, 5
# (features index, out, in, kernel, stride, pad, pool after) of the original AlexNet.
ALEXNET_CONVS = ((0, 96, 2, 11, 4, 2, True), (4, 256, 96, 5, 1, 2, True),
                 (8, 384, 256, 3, 1, 1, False), (11, 384, 384, 3, 1, 1, False),
                 (14, 256, 384, 3, 1, 1, True))
SOBEL = {"sobel.0.weight": np.full((1, 3, 1, 1), 1 / 3, np.float32),
         "sobel.0.bias": np.zeros(1, np.float32),
         "sobel.1.weight": np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]],
                                     [[[1, 2, 1], [0, 0, 0], [-1, -2, -1]]]], np.float32),
         "sobel.1.bias": np.zeros(2, np.float32)}


def _conv_bn(rng, state, prefix_conv, prefix_bn, out, inp, kernel):
  std = np.sqrt(2.0 / (kernel * kernel * out))
  state[f"{prefix_conv}.weight"] = rng.normal(0, std, (out, inp, kernel, kernel)).astype(np.float32)
  state[f"{prefix_conv}.bias"] = rng.normal(0, 0.1, out).astype(np.float32)
  state[f"{prefix_bn}.weight"] = rng.uniform(0.5, 1.5, out).astype(np.float32)
  state[f"{prefix_bn}.bias"] = rng.normal(0, 0.1, out).astype(np.float32)
  state[f"{prefix_bn}.running_mean"] = rng.normal(0, 0.1, out).astype(np.float32)
  state[f"{prefix_bn}.running_var"] = rng.uniform(0.5, 2.0, out).astype(np.float32)
  state[f"{prefix_bn}.num_batches_tracked"] = np.array(100, np.int64)


def _linear(rng, state, prefix, out, inp):
  state[f"{prefix}.weight"] = rng.normal(0, 1 / np.sqrt(inp), (out, inp)).astype(np.float32)
  state[f"{prefix}.bias"] = rng.normal(0, 0.1, out).astype(np.float32)


def alexnet_state_dict() -> collections.OrderedDict:
  rng = np.random.default_rng(0)
  state = collections.OrderedDict()
  for index, out, inp, kernel, *_ in ALEXNET_CONVS:
    _conv_bn(rng, state, f"features.module.{index}", f"features.module.{index + 1}", out, inp,
             kernel)
  _linear(rng, state, "classifier.1", FC_WIDTH, 256 * 6 * 6)
  _linear(rng, state, "classifier.4", FC_WIDTH, FC_WIDTH)
  _linear(rng, state, "top_layer", K, FC_WIDTH)
  state.update(SOBEL)
  return state


def _conv(x, weight, bias, stride, pad):
  """PyTorch's Conv2d (cross-correlation, zero padding) on [B, C, H, W]."""
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  windows = sliding_window_view(x, weight.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
  return np.einsum("bchwij,ocij->bohw", windows, weight, optimize=True) + bias[:, None, None]


def reference_alexnet(state, images):
  """[B, 3, 224, 224] -> ({relu1..relu5: [B, C, H, W]}, fc7 before ReLU), eval mode, float64."""
  get = lambda key: state[key].astype(np.float64)  # noqa: E731
  x = _conv(images.astype(np.float64), get("sobel.0.weight"), get("sobel.0.bias"), 1, 0)
  x = _conv(x, get("sobel.1.weight"), get("sobel.1.bias"), 1, 1)
  taps = {}
  for layer, (index, _, _, _, stride, pad, pool) in enumerate(ALEXNET_CONVS, start=1):
    conv, bn = f"features.module.{index}", f"features.module.{index + 1}"
    x = _conv(x, get(f"{conv}.weight"), get(f"{conv}.bias"), stride, pad)
    scale = get(f"{bn}.weight") / np.sqrt(get(f"{bn}.running_var") + 1e-5)
    x = (x - get(f"{bn}.running_mean")[:, None, None]) * scale[:, None, None]
    x = taps[f"relu{layer}"] = np.maximum(x + get(f"{bn}.bias")[:, None, None], 0)
    if pool:
      x = sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))
  x = x.reshape(len(x), -1)
  x = np.maximum(x @ get("classifier.1.weight").T + get("classifier.1.bias"), 0)
  return taps, x @ get("classifier.4.weight").T + get("classifier.4.bias")


def _assert_close(actual, expected, rtol=1e-4):
  scale = np.max(np.abs(expected))
  assert scale > 0 and np.max(np.abs(np.asarray(actual) - expected)) <= rtol * scale


def _run(variables, images_nhwc):
  network = deepcluster_weights.network_for_variables("alexnet", variables)
  features, state = network.apply(
      {"params": variables["params"], "batch_stats": variables["batch_stats"]}, images_nhwc,
      train=False, mutable=["intermediates"])
  return network, features, state["intermediates"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  state = alexnet_state_dict()
  path = str(tmp_path_factory.mktemp("deepcluster") / "checkpoint.pth.tar")
  torch_writer.save_legacy(path, {"epoch": 7, "arch": "alexnet", "state_dict": state,
                                  "optimizer": {"state": {}, "param_groups": []}},
                           location="cuda:0")
  images = np.random.default_rng(1).normal(size=(2, 3, 224, 224)).astype(np.float32)
  taps, fc7 = reference_alexnet(state, images)
  return {"path": path, "state": state, "images_nhwc": images.transpose(0, 2, 3, 1),
          "relu1": taps["relu1"].transpose(0, 2, 3, 1), "fc7": fc7}


def test_converted_alexnet_matches_the_reference_forward(tiny):
  checkpoint = torch_files.load_torch_file(tiny["path"])
  variables = deepcluster_weights.convert_state_dict(checkpoint["state_dict"], "alexnet")
  network, features, intermediates = _run(variables, tiny["images_nhwc"])
  assert (network.fc_width, network.sobel) == (FC_WIDTH, True)
  _assert_close(intermediates["relu1"][0], tiny["relu1"])
  _assert_close(features, tiny["fc7"])
  np.testing.assert_array_equal(variables["top_layer"]["kernel"],
                                tiny["state"]["top_layer.weight"].T)
  np.testing.assert_array_equal(variables["batch_stats"]["bn5"]["var"],
                                tiny["state"]["features.module.15.running_var"])


def test_cli_writes_a_file_that_load_variables_runs(tiny, tmp_path):
  output = str(tmp_path / "alexnet.msgpack")
  result = subprocess.run(
      [sys.executable, "scripts/convert_deepcluster_checkpoint.py",
       f"--checkpoint={tiny['path']}", f"--output={output}"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  count = sum(v.size for k, v in tiny["state"].items()
              if not k.startswith(("sobel", "top_layer")) and "running" not in k
              and "num_batches" not in k)
  assert result.stdout.strip() == (f"alexnet epoch 7: {count:,} parameters, fc width 16, "
                                   f"top layer k=5 -> {output}")
  variables = network_lib.load_variables(output)
  _, features, _ = _run(variables, tiny["images_nhwc"])
  _assert_close(features, tiny["fc7"])
  with open(output, "rb") as f:
    saved = flax.serialization.msgpack_restore(f.read())
  np.testing.assert_array_equal(saved["top_layer"]["bias"], tiny["state"]["top_layer.bias"])


def test_cli_bad_input_is_one_error_line_and_exit_code_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    convert_deepcluster_checkpoint.main([f"--checkpoint={tmp_path / 'none.pth.tar'}",
                                         f"--output={tmp_path / 'out.msgpack'}"])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == f"error: {tmp_path / 'none.pth.tar'}: no such file\n"


def _edited(state, changes):
  """A copy of ``state`` with keys replaced, or removed where the new value is None."""
  edited = collections.OrderedDict(state)
  for key, value in changes.items():
    if value is None:
      del edited[key]
    else:
      edited[key] = value
  return edited


@pytest.mark.parametrize("changes, message", [
    ({"sobel.1.weight": -SOBEL["sobel.1.weight"]},
     r"^sobel\.1\.weight differs from the fixed Sobel front end .*max abs difference 4"),
    ({"features.module.4.weight": np.zeros((256, 96, 3, 3), np.float32)},
     r"^features\.module\.4\.weight has shape \(256, 96, 3, 3\), the alexnet network expects "
     r"\(256, 96, 5, 5\)$"),
    ({"classifier.4.bias": np.zeros(FC_WIDTH + 1, np.float32)},
     r"^classifier\.4\.bias has shape \(17,\), the alexnet network expects \(16,\)$"),
    (dict.fromkeys(SOBEL),
     r"^features\.module\.0\.weight has shape \(96, 2, 11, 11\): 2 input channels is the "
     r"Sobel input, but the checkpoint has no sobel\.\* weights$"),
    ({"classifier.7.weight": np.zeros((2, 2), np.float32)},
     r"^checkpoint has classifier\.7\.weight, not part of alexnet"),
    ({"features.module.12.running_var": None},
     r"^checkpoint lacks features\.12\.running_var"),
])
def test_bad_checkpoints_raise_one_line_naming_the_key(tiny, changes, message):
  with pytest.raises(ValueError, match=message) as error:
    deepcluster_weights.convert_state_dict(_edited(tiny["state"], changes), "alexnet")
  assert "\n" not in str(error.value)


def test_vgg16_layers_land_on_the_right_modules():
  rng = np.random.default_rng(2)
  state, inp = collections.OrderedDict(), 2
  # The original features indices: conv, BN, ReLU per conv, one index per max-pool.
  conv_indices = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)
  widths = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
  for index, out in zip(conv_indices, widths):
    _conv_bn(rng, state, f"module.features.{index}", f"module.features.{index + 1}", out, inp, 3)
    inp = out
  _linear(rng, state, "module.classifier.0", FC_WIDTH, 512 * 7 * 7)
  _linear(rng, state, "module.classifier.3", FC_WIDTH, FC_WIDTH)
  state.update(SOBEL)
  variables = deepcluster_weights.convert_state_dict(state, "vgg16")
  network = deepcluster_weights.network_for_variables("vgg16", variables)
  assert (type(network).__name__, network.fc_width) == ("VGG16", FC_WIDTH)
  assert "top_layer" not in variables
  params, stats = variables["params"], variables["batch_stats"]
  np.testing.assert_array_equal(params["conv13"]["kernel"],
                                state["module.features.40.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["bn8"]["scale"], state["module.features.25.weight"])
  np.testing.assert_array_equal(stats["bn1"]["mean"], state["module.features.1.running_mean"])
  np.testing.assert_array_equal(params["fc6"]["kernel"], state["module.classifier.0.weight"].T)
  np.testing.assert_array_equal(params["fc7"]["bias"], state["module.classifier.3.bias"])
