"""Converted unsup-parts weights land in the right places and reproduce a reference forward.

The tiny checkpoints have the original key names (``unsup-parts:models/deeplab_2branch.py``
attributes, the Caffe ResNet-50 file's ``fc.*``, the released checkpoints' ``module.``
prefix and ``model_state_dict`` wrapper) at width 4 instead of 64. The reference forward
is plain float64 numpy on the torch-layout weights (NCHW), so a wrong transpose, BN
mapping, stride placement or dilation shows up as a value mismatch.
"""

import collections
import os
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from dti_jax.methods.unsup_parts import weights as unsup_parts_weights
from dti_jax.methods.unsup_parts import deeplab_resnet
from dti_jax.methods.unsup_parts import vgg19_features
from scripts import convert_torch_weights
from tests.interop import torch_writer
from tests.models.test_deeplab_resnet import reference_ceil_max_pool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIDTH, K = 4, 3
IMAGE = (2, 3, 40, 52)  # NCHW; 40 -> 20 -> 11 (ceil-mode pool) -> 6
LAYERS = ((1, 3, 1, 1), (2, 4, 2, 1), (3, 6, 1, 2), (4, 3, 1, 4))  # (layer, blocks, stride, dil.)


def _conv(state, rng, name, out, inp, kernel, bias=False):
  state[f"{name}.weight"] = rng.normal(0, np.sqrt(2 / (inp * kernel * kernel)),
                                       (out, inp, kernel, kernel)).astype(np.float32)
  if bias:
    state[f"{name}.bias"] = rng.uniform(-0.5, 0.5, out).astype(np.float32)


def _bn(state, rng, name, channels):
  state[f"{name}.weight"] = rng.uniform(0.5, 1.5, channels).astype(np.float32)
  state[f"{name}.bias"] = rng.normal(0, 0.1, channels).astype(np.float32)
  state[f"{name}.running_mean"] = rng.normal(0, 0.2, channels).astype(np.float32)
  state[f"{name}.running_var"] = rng.uniform(0.5, 2.0, channels).astype(np.float32)
  state[f"{name}.num_batches_tracked"] = np.array(1000, np.int64)


def segmenter_state_dict(head: bool) -> collections.OrderedDict:
  """``Res50_Deeplab_2branch``'s state dict at width 4 (the original's _make_layer)."""
  rng = np.random.default_rng(0)
  state = collections.OrderedDict()
  _conv(state, rng, "conv1", WIDTH, 3, 7)
  _bn(state, rng, "bn1", WIDTH)
  inplanes = WIDTH
  for layer, blocks, _, _ in LAYERS:
    planes = WIDTH * 2 ** (layer - 1)
    for block in range(blocks):
      prefix = f"layer{layer}.{block}"
      _conv(state, rng, f"{prefix}.conv1", planes, inplanes, 1)
      _bn(state, rng, f"{prefix}.bn1", planes)
      _conv(state, rng, f"{prefix}.conv2", planes, planes, 3)
      _bn(state, rng, f"{prefix}.bn2", planes)
      _conv(state, rng, f"{prefix}.conv3", planes * 4, planes, 1)
      _bn(state, rng, f"{prefix}.bn3", planes * 4)
      if block == 0:
        _conv(state, rng, f"{prefix}.downsample.0", planes * 4, inplanes, 1)
        _bn(state, rng, f"{prefix}.downsample.1", planes * 4)
      inplanes = planes * 4
  if head:
    for i in range(4):
      _conv(state, rng, f"layer5.conv2d_list.{i}", K, inplanes // 2, 3, bias=True)
  else:  # the ImageNet classifier of the Caffe file
    state["fc.weight"] = rng.normal(0, 0.01, (1000, inplanes)).astype(np.float32)
    state["fc.bias"] = np.zeros(1000, np.float32)
  return state


def conv_nchw(x, weight, bias=None, stride=1, pad=0, dilation=1):
  """PyTorch's Conv2d (cross-correlation, zero padding, dilation) on [B, C, H, W]."""
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  span = dilation * (weight.shape[2] - 1) + 1
  windows = sliding_window_view(x, (span, span), axis=(2, 3))
  windows = windows[:, :, ::stride, ::stride, ::dilation, ::dilation]
  out = np.einsum("bchwij,ocij->bohw", windows, weight, optimize=True)
  return out if bias is None else out + bias[:, None, None]


def reference_segmenter(state, images):
  """Eval-mode logits [B, K, h, w] of ``Res50_Deeplab_2branch``, float64."""
  get = lambda key: state[key].astype(np.float64)  # noqa: E731

  def bn(x, name):
    scale = get(f"{name}.weight") / np.sqrt(get(f"{name}.running_var") + 1e-5)
    shift = get(f"{name}.bias") - get(f"{name}.running_mean") * scale
    return x * scale[:, None, None] + shift[:, None, None]

  relu = lambda x: np.maximum(x, 0)  # noqa: E731
  x = relu(bn(conv_nchw(images.astype(np.float64), get("conv1.weight"), stride=2, pad=3),
              "bn1"))
  x = reference_ceil_max_pool(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
  for layer, blocks, stride, dilation in LAYERS:
    for block in range(blocks):
      p, s = f"layer{layer}.{block}", stride if block == 0 else 1
      y = relu(bn(conv_nchw(x, get(f"{p}.conv1.weight"), stride=s), f"{p}.bn1"))
      y = relu(bn(conv_nchw(y, get(f"{p}.conv2.weight"), pad=dilation, dilation=dilation),
                  f"{p}.bn2"))
      y = bn(conv_nchw(y, get(f"{p}.conv3.weight")), f"{p}.bn3")
      if block == 0:
        x = bn(conv_nchw(x, get(f"{p}.downsample.0.weight"), stride=s), f"{p}.downsample.1")
      x = relu(y + x)
  x = x[:, x.shape[1] // 2:]
  return sum(conv_nchw(x, get(f"layer5.conv2d_list.{i}.weight"),
                       get(f"layer5.conv2d_list.{i}.bias"), pad=d, dilation=d)
             for i, d in enumerate((6, 12, 18, 24)))


def _target(num_parts=K, width=WIDTH):
  """Zero variables with the model's structure (no compilation)."""
  model = deeplab_resnet.DeepLabV2ResNet50(num_parts=num_parts, width=width)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                             train=False))
  return model, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """The two checkpoints, converted by the script's main."""
  root = tmp_path_factory.mktemp("unsup_parts")
  caffe, parts = segmenter_state_dict(head=False), segmenter_state_dict(head=True)
  torch_writer.save_legacy(str(root / "resnet50-caffe.pth"), caffe)
  optimizer = {"state": {0: {"momentum_buffer": np.zeros((2, 2), np.float32)}},
               "param_groups": [{"lr": 1e-5, "momentum": 0.9, "params": [0]}]}
  torch_writer.save_zip(str(root / "model_60000.pth"), {
      "model_state_dict": collections.OrderedDict((f"module.{k}", v) for k, v in parts.items()),
      "optimizer_state_dict": optimizer})
  outputs = {}
  for kind, name in (("resnet50_caffe", "resnet50-caffe"), ("unsup_parts", "model_60000")):
    outputs[kind] = str(root / f"{name}.npz")
    convert_torch_weights.main([f"--kind={kind}", f"--input={root / name}.pth",
                                f"--output={outputs[kind]}"])
  return {"root": root, "caffe": caffe, "parts": parts, **outputs}


def test_table_covers_the_model_exactly():
  _, target = _target()
  flat = flax.traverse_util.flatten_dict(target, sep="/")
  table = unsup_parts_weights.segmenter_table()
  assert sorted(flax_key for flax_key, _ in table.values()) == sorted(flat)
  assert table["layer2.0.downsample.1.running_mean"] == (
      "batch_stats/layer2_0/downsample_bn/mean", "vector")
  assert table["layer5.conv2d_list.3.weight"] == ("params/layer5/conv3/kernel", "conv")


def test_converted_values_land_in_place_and_reproduce_the_forward(files):
  model, target = _target()
  variables = unsup_parts_weights.load_segmenter_variables(files["unsup_parts"], target,
                                                           "model.backbone_weights")
  state = files["parts"]
  np.testing.assert_array_equal(variables["params"]["layer3_1"]["conv2"]["kernel"],
                                state["layer3.1.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["batch_stats"]["layer2_0"]["downsample_bn"]["mean"],
                                state["layer2.0.downsample.1.running_mean"])
  np.testing.assert_array_equal(variables["params"]["bn1"]["scale"], state["bn1.weight"])
  np.testing.assert_array_equal(variables["params"]["layer5"]["conv2"]["bias"],
                                state["layer5.conv2d_list.2.bias"])
  images = np.random.default_rng(1).normal(0, 50, IMAGE).astype(np.float32)
  expected = reference_segmenter(state, images)
  actual = np.asarray(model.apply(variables, jnp.asarray(images.transpose(0, 2, 3, 1)),
                                  train=False)).transpose(0, 3, 1, 2)
  assert actual.shape == expected.shape == (2, K, 6, 7)
  scale = np.max(np.abs(expected))
  assert scale > 1 and np.max(np.abs(actual - expected)) <= 1e-4 * scale


def test_caffe_file_without_head_keeps_the_initial_head(files):
  _, target = _target()
  target["params"]["layer5"]["conv0"]["bias"] = np.full(K, 7.0, np.float32)
  variables = unsup_parts_weights.load_segmenter_variables(files["resnet50_caffe"], target,
                                                           "model.backbone_weights")
  np.testing.assert_array_equal(variables["params"]["layer5"]["conv0"]["bias"], np.full(K, 7.0))
  np.testing.assert_array_equal(variables["params"]["layer4_2"]["bn3"]["bias"],
                                files["caffe"]["layer4.2.bn3.bias"])
  np.testing.assert_array_equal(variables["batch_stats"]["bn1"]["var"],
                                files["caffe"]["bn1.running_var"])
  with np.load(files["resnet50_caffe"]) as data:
    assert not any(key.startswith("params/layer5/") or "fc" in key for key in data.files)


def _rewrite(path, out, changes):
  with np.load(path) as data:
    flat = {key: data[key] for key in data.files}
  for key, value in changes.items():
    if value is None:
      del flat[key]
    else:
      flat[key] = value
  unsup_parts_weights.save_npz(out, flat)
  return out


@pytest.mark.parametrize("changes, message", [
    ({"batch_stats/layer3_2/bn2/var": None},
     r"missing key batch_stats/layer3_2/bn2/var \(expected shape \(16,\)\)$"),
    ({"params/layer1_0/conv2/kernel": np.zeros((3, 3, 4, 5), np.float32)},
     r"params/layer1_0/conv2/kernel has shape \(3, 3, 4, 5\), expected \(3, 3, 4, 4\)$"),
    ({"params/layer5/conv1/bias": None}, r"missing key params/layer5/conv1/bias"),
    ({"params/extra/kernel": np.zeros(1, np.float32)},
     r"unexpected key params/extra/kernel \(1 such keys\)$"),
])
def test_loader_errors_name_the_key_and_the_file(files, tmp_path, changes, message):
  model, _ = _target()
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                               train=False))
  unsup_parts_weights.check_segmenter_file(files["unsup_parts"], abstract,
                                           "model.backbone_weights")
  path = _rewrite(files["unsup_parts"], str(tmp_path / "bad.npz"), changes)
  with pytest.raises(ValueError, match=message) as error:
    unsup_parts_weights.load_segmenter_variables(path, _target()[1], "model.backbone_weights")
  assert str(error.value).startswith(f"model.backbone_weights={path!r}: ")
  assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match=message):
    unsup_parts_weights.check_segmenter_file(path, abstract, "model.backbone_weights")


def test_loader_missing_file_names_the_config_key_and_the_command(tmp_path):
  path = str(tmp_path / "nothing.npz")
  with pytest.raises(FileNotFoundError) as error:
    unsup_parts_weights.load_segmenter_variables(path, {}, "model.backbone_weights")
  message = str(error.value)
  assert message.startswith(f"model.backbone_weights={path!r}: no such file")
  assert ("python -m scripts.convert_torch_weights --kind=resnet50_caffe "
          f"--input=resnet50-caffe-22edcc82.pth --output={path}") in message
  assert "\n" not in message
  with pytest.raises(FileNotFoundError, match=r"^perceptual\.weights=.*--kind=vgg19 "):
    unsup_parts_weights.load_vgg19(path, "perceptual.weights")


def _edited(state, changes):
  edited = collections.OrderedDict(state)
  for key, value in changes.items():
    if value is None:
      del edited[key]
    else:
      edited[key] = value
  return edited


@pytest.mark.parametrize("kind, head, changes, message", [
    ("resnet50_caffe", False, {"layer3.2.bn2.running_var": None},
     r"missing key layer3\.2\.bn2\.running_var for kind=resnet50_caffe$"),
    ("unsup_parts", True, {"layer5.conv2d_list.3.weight": None},
     r"missing key layer5\.conv2d_list\.3\.weight for kind=unsup_parts$"),
    ("unsup_parts", False, {}, r"unexpected key fc\.weight for kind=unsup_parts$"),
    ("resnet50_caffe", False,
     {"layer2.0.conv1.weight": np.zeros((8, 16, 3, 3), np.float32)},
     r"layer2\.0\.conv1\.weight has shape \(8, 16, 3, 3\), the network of its first conv "
     r"expects \(8, 16, 1, 1\)$"),
    ("resnet50_caffe", False, {"layer1.0.bn1.running_mean": np.zeros(4, np.int64)},
     r"layer1\.0\.bn1\.running_mean has dtype int64, expected float$"),
])
def test_converter_errors_name_the_torch_key(kind, head, changes, message):
  state = _edited(segmenter_state_dict(head), changes)
  with pytest.raises(ValueError, match=message) as error:
    unsup_parts_weights.convert_state_dict(state, kind, "file.pth")
  assert str(error.value).startswith("file.pth: ") and "\n" not in str(error.value)


def test_cli_errors_are_one_line(files, tmp_path, capsys):
  existing = files["unsup_parts"]
  cases = [
      (["--kind=resnet101", "--input=x.pth", f"--output={tmp_path / 'a.npz'}"],
       "error: --kind='resnet101' is not one of resnet50_caffe, vgg19, unsup_parts\n"),
      (["--kind=vgg19", f"--input={tmp_path / 'none.pth'}", f"--output={tmp_path / 'a.npz'}"],
       f"error: {tmp_path / 'none.pth'}: no such file\n"),
      (["--kind=unsup_parts", f"--input={files['root'] / 'model_60000.pth'}",
        f"--output={existing}"], f"error: {existing} exists; pass --overwrite to replace it\n"),
  ]
  for argv, expected in cases:
    with pytest.raises(SystemExit) as exit_info:
      convert_torch_weights.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == expected


def test_cli_as_a_module_overwrites_only_when_asked(files, tmp_path):
  output = str(tmp_path / "caffe.npz")
  with open(output, "wb") as f:
    f.write(b"old")
  result = subprocess.run(
      [sys.executable, "-m", "scripts.convert_torch_weights", "--kind=resnet50_caffe",
       f"--input={files['root'] / 'resnet50-caffe.pth'}", f"--output={output}", "--overwrite"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  count = sum(v.size for k, v in files["caffe"].items()
              if not k.startswith("fc.") and "running" not in k and "num_batches" not in k)
  assert result.stdout == (f"resnet50_caffe: {len(unsup_parts_weights.segmenter_table()) - 8} "
                           f"tensors, {count:,} parameters, no ASPP head -> {output}\n")
  assert not os.path.exists(f"{output}.partial")


def vgg19_state_dict(divisor):
  rng = np.random.default_rng(2)
  state, channels = collections.OrderedDict(), 3
  index = 0
  for item in vgg19_features.VGG19_LAYOUT:
    if item == "M":
      index += 1
      continue
    _conv(state, rng, f"features.{index}", item // divisor, channels, 3, bias=True)
    channels, index = item // divisor, index + 2
  state["classifier.0.weight"] = np.zeros((8, 5), np.float32)
  state["classifier.0.bias"] = np.zeros(8, np.float32)
  return state


def reference_vgg19(state, images, weights):
  """(relu3_2, relu5_4) of torchvision's vgg19 ``features`` slices 0-13 and 14-35, NCHW."""
  x, taps = images.astype(np.float64), []
  for index in range(36):
    if f"features.{index}.weight" in state:
      x = np.maximum(conv_nchw(x, state[f"features.{index}.weight"].astype(np.float64),
                               state[f"features.{index}.bias"].astype(np.float64), pad=1), 0)
    elif index in (4, 9, 18, 27):
      x = sliding_window_view(x, (2, 2), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))
    if index in (13, 35):
      taps.append(x * weights[len(taps)])
  return taps


def test_vgg19_conversion_and_features(tmp_path):
  divisor = 16
  state = vgg19_state_dict(divisor)
  source, output = str(tmp_path / "vgg19.pth"), str(tmp_path / "vgg19.npz")
  torch_writer.save_zip(source, state)
  convert_torch_weights.main(["--kind=vgg19", f"--input={source}", f"--output={output}"])
  params = unsup_parts_weights.load_vgg19(output, "perceptual.weights", divisor)
  assert list(params) == list(vgg19_features.CONVS)
  np.testing.assert_array_equal(params["conv5_4"]["kernel"],
                                state["features.34.weight"].transpose(2, 3, 1, 0))
  images = np.random.default_rng(3).normal(size=(2, 3, 32, 48)).astype(np.float32)
  relu3_2, relu5_4 = vgg19_features.features(params, jnp.asarray(images.transpose(0, 2, 3, 1)),
                                             (0.33, 2.0))
  expected = reference_vgg19(state, images, (0.33, 2.0))
  for actual, reference in zip((relu3_2, relu5_4), expected):
    actual = np.asarray(actual).transpose(0, 3, 1, 2)
    assert actual.shape == reference.shape
    np.testing.assert_allclose(actual, reference, atol=1e-5 * np.abs(reference).max())
  assert relu3_2.shape == (2, 8, 12, 256 // divisor) and relu5_4.shape == (2, 2, 3, 512 // divisor)
  with pytest.raises(ValueError, match=r"params/conv1_1/kernel has shape \(3, 3, 3, 4\), "
                                       r"expected \(3, 3, 3, 64\)$"):
    unsup_parts_weights.load_vgg19(output, "perceptual.weights")


def test_vgg19_real_shapes_table():
  shapes = vgg19_features.expected_shapes()
  assert sum(np.prod(k) + np.prod(b) for k, b in shapes.values()) == 20_024_384
  table = unsup_parts_weights.vgg19_table()
  assert table["features.34.weight"] == ("params/conv5_4/kernel", "conv")
  assert table["features.12.bias"] == ("params/conv3_2/bias", "vector")
  assert len(table) == 32
