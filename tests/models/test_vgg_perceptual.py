"""DLP's VGG perceptual loss: converter, features, distance, loss wiring and errors.

The features are checked against a numpy re-run of the original's loop over torchvision's
``features`` modules, with ReLUs applied in place (``np.maximum(x, 0, out=x)``) so the
tensors stored at indices 2, 7, 12 and 21 are overwritten as in PyTorch; the network
is narrow (widths 4-8) and random, the image 32x32. (Against torch itself, by hand, with
full-width random weights on 128x128 images: max abs difference 6.7e-6 over the five taps
of magnitude up to 6, distances equal to 1e-7 relative.)
"""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from configs import dlp_shapes
from dti_jax.methods.dlp import blocks as dlp_blocks
from dti_jax.methods.dlp import losses as dlp_losses
from dti_jax.methods.dlp import perceptual as vgg_perceptual
from dti_jax.methods.dlp import trainer as dlp_trainer
from scripts import convert_vgg16
from tests.interop import torch_writer

# torchvision's vgg16 ``features`` (cfg "D"), written out independently of the code.
TORCHVISION_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
TORCHVISION_POOLS = (4, 9, 16, 23, 30)
WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
NARROW = (4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8)
LOSS = {"beta_rec": 1.0, "beta_kl": 0.05, "kl_balance": 0.001, "sigma": 0.1}


def torch_state_dict(rng, widths):
  """A torchvision-layout vgg16 state dict (OIHW kernels) of the given conv widths."""
  state, channels = collections.OrderedDict(), 3
  for index, width in zip(TORCHVISION_CONVS, widths):
    state[f"features.{index}.weight"] = (rng.standard_normal((width, channels, 3, 3),
                                                             dtype=np.float32)
                                         * np.float32(math.sqrt(2.0 / (9 * channels))))
    state[f"features.{index}.bias"] = (0.1 * rng.standard_normal(width)).astype(np.float32)
    channels = width
  return state


def as_params(state):
  """The converter's layout (HWIO) for a state dict of any widths."""
  return {name: {"kernel": state[f"features.{index}.weight"].transpose(2, 3, 1, 0),
                 "bias": state[f"features.{index}.bias"]}
          for name, index in zip(vgg_perceptual.CONVS, TORCHVISION_CONVS)}


def reference_taps(state, images_nchw):
  """The original's NetVGGFeatures loop in numpy, ReLUs in place."""
  x, stored = images_nchw.astype(np.float64), []
  for index in range(31):
    if index in TORCHVISION_CONVS:
      weight, bias = state[f"features.{index}.weight"], state[f"features.{index}.bias"]
      windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3),
                                    axis=(2, 3))
      x = np.einsum("nchwij,ocij->nohw", windows, weight) + bias[None, :, None, None]
    elif index in TORCHVISION_POOLS:
      n, c, h, w = x.shape
      x = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    else:
      np.maximum(x, 0, out=x)  # nn.ReLU(inplace=True)
    if index in vgg_perceptual.TORCHVISION_TAPS:
      stored.append(x)
  return stored


@pytest.fixture(scope="module")
def narrow():
  rng = np.random.default_rng(0)
  state = torch_state_dict(rng, NARROW)
  return state, as_params(state)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """Full-size random vgg16 weights in torch's legacy layout (as vgg16-397923af.pth),
  with a classifier, converted by the script."""
  directory = tmp_path_factory.mktemp("vgg16")
  state = torch_state_dict(np.random.default_rng(1), WIDTHS)
  state["classifier.0.weight"] = np.zeros((4, 8), np.float32)
  state["classifier.0.bias"] = np.zeros((4,), np.float32)
  checkpoint, output = str(directory / "vgg16-397923af.pth"), str(directory / "vgg16.msgpack")
  torch_writer.save_legacy(checkpoint, state)
  return state, checkpoint, output


def test_layer_table_is_torchvisions_and_taps_are_post_relu():
  layers = vgg_perceptual.LAYERS
  assert tuple(i for i, kind, _ in layers if kind == "conv") == TORCHVISION_CONVS
  assert tuple(i for i, kind, _ in layers if kind == "pool") == TORCHVISION_POOLS
  assert [i for i, _, _ in layers] == list(range(31))
  assert vgg_perceptual.CONVS[5] == "conv3_2" and layers[12] == (12, "conv", "conv3_2")
  assert vgg_perceptual.TAPS == ("relu1_2", "relu2_2", "relu3_2", "relu4_3", "pool5")


def test_converter_round_trip(converted, capsys):
  state, checkpoint, output = converted
  convert_vgg16.main([f"--pth={checkpoint}", f"--out={output}"])
  assert capsys.readouterr().out == (
      "vgg16 features: 13 convs, 14,714,688 parameters, taps relu1_2, relu2_2, relu3_2, "
      f"relu4_3, pool5 -> {output}\n")
  params = vgg_perceptual.load_vgg16_features(output)
  assert sorted(params) == sorted(vgg_perceptual.CONVS)
  for name, index in zip(vgg_perceptual.CONVS, TORCHVISION_CONVS):
    weight = state[f"features.{index}.weight"]
    assert params[name]["kernel"].shape == (3, 3, weight.shape[1], weight.shape[0])
    np.testing.assert_array_equal(params[name]["kernel"], weight.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params[name]["bias"], state[f"features.{index}.bias"])
  # one spot check of OIHW -> HWIO by element: out 5, in 2, row 0, column 2
  assert params["conv3_2"]["kernel"][0, 2, 2, 5] == state["features.12.weight"][5, 2, 0, 2]


@pytest.mark.parametrize("state, message", [
    ({}, r"^ckpt\.pth: lacks features\.0\.weight \(conv1_1\); not torchvision's vgg16"),
    ({"features.1.weight": np.zeros(64, np.float32)},
     r"^ckpt\.pth: has features\.1\.weight \(1 such keys\), not a layer of torchvision's "
     r"vgg16 \(vgg16_bn"),
    ({"features.0.weight": np.zeros((64, 3, 5, 5), np.float32)},
     r"^ckpt\.pth: features\.0\.weight \(conv1_1\) has shape \(64, 3, 5, 5\), "
     r"torchvision's vgg16 has \(64, 3, 3, 3\)$"),
    ({"features.0.weight": np.zeros((64, 3, 3, 3), np.int64)},
     r"^ckpt\.pth: features\.0\.weight \(conv1_1\) has dtype int64, expected float$"),
])
def test_converter_errors_are_one_line_naming_file_and_key(state, message):
  with pytest.raises(ValueError, match=message) as error:
    vgg_perceptual.convert_state_dict(state, "ckpt.pth")
  assert "\n" not in str(error.value)


def test_converter_cli_missing_file_is_one_error_line(tmp_path, capsys):
  missing = tmp_path / "vgg16-397923af.pth"
  with pytest.raises(SystemExit) as exit_info:
    convert_vgg16.main([f"--checkpoint={missing}", f"--output={tmp_path / 'out.msgpack'}"])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == f"error: {missing}: no such file\n"


def test_features_match_the_in_place_relu_reference(narrow):
  state, params = narrow
  images = np.random.default_rng(2).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  ours = vgg_perceptual.features(params, jnp.asarray(images))
  reference = reference_taps(state, images.transpose(0, 3, 1, 2))
  assert [t.shape for t in ours] == [(2, 32, 32, 4), (2, 16, 16, 6), (2, 8, 8, 8),
                                     (2, 4, 4, 8), (2, 1, 1, 8)]
  for tap, expected in zip(ours, reference):
    assert expected.min() == 0.0  # post-ReLU, not the conv output stored at 2, 7, 12, 21
    np.testing.assert_allclose(tap, expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
  grey = vgg_perceptual.features(params, jnp.asarray(images[..., :1]))
  np.testing.assert_allclose(grey[-1], vgg_perceptual.features(
      params, jnp.asarray(np.repeat(images[..., :1], 3, axis=-1)))[-1], rtol=1e-6)


def test_distance_sums_pixels_and_taps_per_image(narrow):
  _, params = narrow
  rng = np.random.default_rng(3)
  x = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
  y = np.clip(x + rng.normal(0, [[[[0.05]]], [[[0.2]]]], x.shape), 0, 1).astype(np.float32)
  distance = vgg_perceptual.vgg_distance(params, x, y)
  fx, fy = vgg_perceptual.features(params, x), vgg_perceptual.features(params, y)
  expected = ((x - y) ** 2).sum(axis=(1, 2, 3)) + sum(
      np.asarray((a - b) ** 2).sum(axis=(1, 2, 3)) for a, b in zip(fx, fy))
  np.testing.assert_allclose(distance, expected, rtol=1e-5)
  assert distance[0] < distance[1]  # images do not mix within the batch
  np.testing.assert_allclose(vgg_perceptual.vgg_distance(params, x[1:], y[1:]), distance[1:],
                             rtol=1e-5)
  zero = jax.tree.map(np.zeros_like, params)  # features all zero: the pixel part alone
  np.testing.assert_allclose(vgg_perceptual.vgg_distance(zero, np.zeros_like(x), x * 0 + 0.5),
                             [768.0, 768.0], rtol=1e-6)  # 32 * 32 * 3 * 0.25
  with pytest.raises(ValueError, match="at least 32x32, got 16x16"):
    vgg_perceptual.vgg_distance(params, x[:, :16, :16], y[:, :16, :16])


def test_no_gradient_reaches_the_vgg_weights(narrow):
  _, params = narrow
  x = jnp.asarray(np.random.default_rng(4).uniform(size=(1, 32, 32, 3)), jnp.float32)
  grads = jax.jit(jax.grad(lambda p, y: vgg_perceptual.vgg_distance(p, x, y).sum(),
                           argnums=(0, 1)))(params, x * 0.5)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads[0]))
  assert float(jnp.abs(grads[1]).max()) > 0.0


def _outputs(reconstruction):
  batch = reconstruction.shape[0]
  return {"reconstruction": reconstruction, "mu": jnp.zeros((batch, 3, 2)),
          "logvar": jnp.full((batch, 3, 2), math.log(0.01)),
          "kp_prior": jnp.zeros((batch, 1, 2)), "mu_features": jnp.zeros((batch, 3, 2)),
          "logvar_features": jnp.zeros((batch, 3, 2))}


def test_loss_vgg_full_image_is_the_batch_mean_of_per_image_distances(narrow):
  _, params = narrow
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32)
  _, same = dlp_losses.loss(_outputs(x), x, phase="normal", rec_loss="vgg", vgg_params=params,
                            **LOSS)
  assert float(same["rec"]) == 0.0
  xhat = x + jnp.asarray(rng.normal(0, 0.1, x.shape), jnp.float32)
  loss_fn = jax.jit(lambda r: dlp_losses.loss(_outputs(r), x, phase="normal", rec_loss="vgg",
                                              vgg_params=params, **LOSS))  # params closed over
  total, metrics = loss_fn(xhat)
  np.testing.assert_allclose(metrics["rec"],
                             np.mean(vgg_perceptual.vgg_distance(params, x, xhat)), rtol=1e-5)
  _, mse = dlp_losses.loss(_outputs(xhat), x, phase="normal", rec_loss="mse", **LOSS)
  np.testing.assert_allclose(total - metrics["rec"], mse["loss"] - mse["rec"], rtol=1e-6)
  assert metrics["rec"] > mse["rec"]  # pixel part plus the feature part
  with pytest.raises(ValueError, match="rec_loss='vgg' needs vgg_params"):
    dlp_losses.loss(_outputs(x), x, phase="normal", rec_loss="vgg", **LOSS)


def torch_bilinear(images, size):
  """F.interpolate(mode="bilinear", align_corners=False) of [N, H, W, C] to size x size."""
  for axis in (1, 2):
    n = images.shape[axis]
    source = np.maximum((np.arange(size) + 0.5) * n / size - 0.5, 0.0)
    low = np.floor(source).astype(int)
    high, weight = np.minimum(low + 1, n - 1), source - low
    shape = [1, 1, 1, 1]
    shape[axis] = size
    weight = weight.reshape(shape)
    images = (np.take(images, low, axis=axis) * (1 - weight)
              + np.take(images, high, axis=axis) * weight)
  return images


@pytest.mark.parametrize("side", [8, 16, 24, 32])
def test_warmup_glimpses_are_upsampled_to_32_like_pytorch(narrow, side):
  _, params = narrow
  rng = np.random.default_rng(side)
  glimpses = jnp.asarray(rng.uniform(size=(2, 3, side, side, 3)), jnp.float32)
  decoded = jnp.asarray(rng.uniform(size=(2, 3, side, side, 3)), jnp.float32)
  outputs = dict(_outputs(jnp.zeros((2, 32, 32, 3))), glimpses=glimpses,
                 decoded_glimpses=decoded)
  _, metrics = dlp_losses.loss(outputs, jnp.zeros((2, 32, 32, 3)), phase="warmup",
                               rec_loss="vgg", vgg_params=params, **LOSS)
  a = torch_bilinear(np.asarray(glimpses).reshape(6, side, side, 3), 32)
  b = torch_bilinear(np.asarray(decoded).reshape(6, side, side, 3), 32)
  if side == 16:  # the same as the decoders' x2 upsampling
    np.testing.assert_allclose(a, dlp_blocks.upsample_bilinear(glimpses.reshape(6, 16, 16, 3)),
                               atol=1e-6)
  np.testing.assert_allclose(metrics["rec"],
                             np.mean(vgg_perceptual.vgg_distance(params, a, b)), rtol=1e-5)


def test_load_errors_are_one_line_naming_the_config_key(tmp_path):
  with pytest.raises(ValueError) as error:
    vgg_perceptual.load_vgg16_features("")
  assert str(error.value) == (
      "config.loss.rec_loss='vgg' needs config.loss.vgg_weights: convert torchvision's "
      "vgg16-397923af.pth with scripts/convert_vgg16.py")
  missing = str(tmp_path / "vgg16.msgpack")
  with pytest.raises(ValueError) as error:
    vgg_perceptual.load_vgg16_features(missing)
  assert str(error.value) == (
      f"config.loss.vgg_weights={missing!r}: no such file; convert torchvision's "
      "vgg16-397923af.pth with scripts/convert_vgg16.py")
  (tmp_path / "bad.msgpack").write_bytes(b"\xc1 not msgpack")
  with pytest.raises(ValueError, match=r"^config\.loss\.vgg_weights='.*bad\.msgpack': not a "
                     r"msgpack file") as error:
    vgg_perceptual.load_vgg16_features(str(tmp_path / "bad.msgpack"))
  assert "\n" not in str(error.value)


def test_trainer_validates_and_caches_the_weights(converted):
  _, checkpoint, output = converted
  config = dlp_shapes.get_config("cpu")
  config.loss.rec_loss = "vgg"
  image_shape = (config.model.image_size,) * 2 + (3,)
  with pytest.raises(ValueError, match=r"^config\.loss\.rec_loss='vgg' needs "
                     r"config\.loss\.vgg_weights"):
    dlp_trainer.validate(config, image_shape)
  config.loss.vgg_weights = output
  convert_vgg16.main([f"--checkpoint={checkpoint}", f"--output={output}"])
  dlp_trainer.validate(config, image_shape)
  kwargs = dlp_trainer.loss_kwargs(config)
  assert kwargs["vgg_params"] is dlp_trainer.loss_kwargs(config)["vgg_params"]  # read once
  config.loss.rec_loss = "l1"
  with pytest.raises(ValueError, match=r"^config\.loss\.rec_loss='l1' is not one of"):
    dlp_trainer.validate(config, image_shape)
