"""Converted Deep Latent Particles checkpoints land in the right places and reproduce a
reference forward.

The tiny state dicts are written here in the key layout of the original's KeyPointVAE
(``deep-latent-particles-pytorch:models.py`` and ``modules/modules.py``: module
attributes, nn.Sequential indices, ConvBlock's ``conv_{in}_to_{out}`` /
``bathcnorm_{out}`` names, the ``object_dec.decode`` twin of ``object_dec.main``) at a
64-px size with narrow CNNs and 3 particles, with random values. The references are
plain float64 NumPy on the torch-layout arrays (NCHW, replicate padding, eval-mode BN,
PyTorch's bilinear x2), so a wrong transpose, BN mapping, flatten order or layer
order shows up as a value mismatch.
"""

import collections
import json
import os

import jax
import matplotlib
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import data_pipelines
from configs import dlp_shapes
from dti_jax import methods
from dti_jax.methods.dlp import demo as dlp_demo
from dti_jax.methods.dlp import edit as dlp_edit
from dti_jax.methods.dlp import weights as dlp_weights
from dti_jax.viz import grids
from scripts import convert_dlp_weights
from tests.interop import torch_writer

SIDE, K, D, ENC, PRIOR = 64, 3, 2, (4, 6, 8), (4, 6)
F = SIDE // 4   # feature side: 16, so the PointNet has one upsampling block
TINY_CONFIG = '''
from configs import dlp_shapes


def get_config():
  config = dlp_shapes.get_config("cpu")
  config.data.num_examples = 8
  config.model.kind = "{kind}"
  config.model.enc_channels = {enc}
  config.model.prior_channels = {prior}
  config.model.num_particles = {k}
  config.model.num_prior = 4
  config.model.feature_dim = {d}
  config.model.anchor_s = {anchor}
  config.train.batch_size = 4
  config.eval.num_images = 4
  config.eval.batch_size = 4
  config.eval.bn_recalibration_batches = 0
  return config
'''


def tiny_config(kind):
  """The shapes config at the tiny size: object model glimpses of round(0.25 * 63) = 16
  px; masked model windows of round(0.125 * 15) = 2 on the 16 x 16 feature map."""
  config = dlp_shapes.get_config("cpu")
  config.data.num_examples = 8
  config.model.kind = kind
  config.model.enc_channels = ENC
  config.model.prior_channels = PRIOR
  config.model.num_particles = K
  config.model.num_prior = 4
  config.model.feature_dim = D
  config.model.anchor_s = 0.25 if kind == "object" else 0.125
  config.train.batch_size = 4
  config.eval.num_images = 4
  config.eval.batch_size = 4
  config.eval.bn_recalibration_batches = 0
  return config


# ---- the original's state dict, written from its constructors ----

class _Writer:
  def __init__(self, seed):
    self.rng, self.state = np.random.default_rng(seed), collections.OrderedDict()

  def conv(self, name, c_in, c_out, kernel, bias):
    scale = np.sqrt(2.0 / (c_in * kernel * kernel))
    self.state[f"{name}.weight"] = self.rng.normal(0, scale, (c_out, c_in, kernel, kernel)
                                                   ).astype(np.float32)
    if bias:
      self.state[f"{name}.bias"] = self.rng.normal(0, 0.1, c_out).astype(np.float32)

  def bn(self, name, channels):
    self.state[f"{name}.weight"] = self.rng.uniform(0.5, 1.5, channels).astype(np.float32)
    self.state[f"{name}.bias"] = self.rng.normal(0, 0.1, channels).astype(np.float32)
    # Small variances: each BN amplifies, so the image still shapes the deepest maps.
    self.state[f"{name}.running_mean"] = self.rng.normal(0, 0.05, channels).astype(np.float32)
    self.state[f"{name}.running_var"] = self.rng.uniform(0.05, 0.2, channels).astype(np.float32)
    self.state[f"{name}.num_batches_tracked"] = np.array(500, np.int64)

  def linear(self, name, c_in, c_out):
    bound = 1.0 / np.sqrt(c_in)
    self.state[f"{name}.weight"] = self.rng.uniform(-bound, bound, (c_out, c_in)
                                                    ).astype(np.float32)
    self.state[f"{name}.bias"] = self.rng.uniform(-bound, bound, c_out).astype(np.float32)

  def block(self, name, c_in, c_out, kernel=3):
    """modules.ConvBlock with a conv without bias and a BN."""
    self.conv(f"{name}.main.conv_{c_in}_to_{c_out}", c_in, c_out, kernel, bias=False)
    self.bn(f"{name}.main.bathcnorm_{c_out}", c_out)

  def mlp(self, name, c_in, c_out):
    self.linear(f"{name}.0", c_in, 256)
    self.linear(f"{name}.2", 256, 128)
    self.linear(f"{name}.4", 128, c_out)

  def keypoint_cnn(self, name, channels, image_size, n_kp, first_kernel):
    """KeyPointCNNOriginal(cdim=3, ...)."""
    c = channels[0]
    self.block(f"{name}.main.in_block_1", 3, c, first_kernel)
    self.block(f"{name}.main.in_block_2", c, c)
    size = image_size
    for ch in channels[1:]:
      self.block(f"{name}.main.conv_in_{size}_0", c, ch)
      self.block(f"{name}.main.conv_in_{ch}_1", ch, ch)
      c, size = ch, size // 2
    self.conv(f"{name}.keymap", channels[-1], n_kp, 1, bias=True)


def original_state_dict(kind, seed=0):
  """KeyPointVAE(image_size=64, enc_channels=ENC, prior_channels=PRIOR, n_kp_enc=K,
  learned_feature_dim=D, use_object_enc=True, use_object_dec=kind == "object")."""
  w = _Writer(seed)
  is_object = kind == "object"
  w.keypoint_cnn("enc", ENC, SIDE, K, 7)
  w.mlp("to_normal_stats", K * F * F, 4 * K)
  if is_object:
    w.mlp("aux_enc", K * F * F, K)
  w.mlp("object_enc", K * F * F, 2 * D)
  if is_object:
    w.keypoint_cnn("object_enc_sep.cnn", (16, 16, 32), 16, 32, 3)
    w.mlp("object_enc_sep.fc", 32 * 4 * 4, 2 * D)
  else:
    w.mlp("object_enc_sep.fc", K * 2 * 2 + 2, 2 * D)
  w.keypoint_cnn("prior.enc", PRIOR, 8, 1, 3)
  c_in = 2 + D
  for n, c_out in enumerate((64, 128, 256, 512), start=1):
    w.linear(f"pointnet.conv{n}.mlp.0", c_in + 2, c_out)
    w.bn(f"pointnet.conv{n}.mlp.1", c_out)
    w.linear(f"pointnet.conv{n}.mlp.3", c_out, c_out)
    w.bn(f"pointnet.conv{n}.mlp.4", c_out)
    c_in = c_out
  w.linear("pointnet.fc.0", 512, K * 64)
  w.block("pointnet.cnn.depth_up_0", K, K)
  # CNNDecoder(channels=ENC, in_ch=2K or 3K, n_kp=K+1)
  slots = (K + 1) * (ENC[0] // (K + 1) + 1)
  w.block("dec.main.depth_up", (2 if is_object else 3) * K, ENC[-1])
  w.block("dec.main.conv_to_8", ENC[-1], ENC[1])
  w.block("dec.main.conv_to_16", ENC[1], slots)
  w.conv(f"dec.final_conv.main.conv_{slots}_to_3", slots, 3, 1, bias=True)
  if is_object:
    # ObjectDecoderCNN(patch_size=16): channels [32, 64], one upsampling
    w.linear("object_dec.fc.0", D, 256)
    w.linear("object_dec.fc.2", 256, 32 * 8 * 8)
    w.block("object_dec.main.depth_up", 32, 64)
    w.block("object_dec.main.conv_to_16", 64, 32)
    w.conv("object_dec.main.final_conv.main.conv_32_to_4", 32, 4, 1, bias=True)
    for key in [key for key in w.state if key.startswith("object_dec.main.")]:
      w.state["object_dec.decode." + key[len("object_dec.main."):]] = w.state[key]
  return w.state


# ---- NumPy references on the torch-layout arrays ----

def _get(state, key):
  return state[key].astype(np.float64)


def conv(x, weight, bias=None, stride=1):
  """Conv2d on [B, C, H, W] with replicate padding kernel // 2."""
  pad = weight.shape[2] // 2
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
  windows = sliding_window_view(x, weight.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
  out = np.einsum("bchwij,ocij->bohw", windows, weight, optimize=True)
  return out if bias is None else out + bias[:, None, None]


def bn(x, state, name, axis=1):
  shape = [1] * x.ndim
  shape[axis] = -1
  scale = _get(state, f"{name}.weight") / np.sqrt(_get(state, f"{name}.running_var") + 1e-5)
  shift = _get(state, f"{name}.bias") - _get(state, f"{name}.running_mean") * scale
  return x * scale.reshape(shape) + shift.reshape(shape)


def upsample(x):
  """nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False) on [B, C, H, W]."""
  for axis in (2, 3):
    size = x.shape[axis]
    source = np.maximum((np.arange(2 * size) + 0.5) / 2 - 0.5, 0)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size - 1)
    weight = (source - low).reshape([-1 if a == axis else 1 for a in range(4)])
    x = np.take(x, low, axis=axis) * (1 - weight) + np.take(x, high, axis=axis) * weight
  return x


def block(x, state, name, stride=1, leaky=True, up=False):
  weight = next(_get(state, key) for key in state
                if key.startswith(f"{name}.main.conv_") and key.endswith(".weight"))
  bn_name = next(key[:-len(".running_mean")] for key in state
                 if key.startswith(f"{name}.main.bathcnorm_") and key.endswith("running_mean"))
  x = bn(conv(x, weight, stride=stride), state, bn_name)
  x = np.where(x > 0, x, 0.01 * x) if leaky else np.maximum(x, 0)
  return upsample(x) if up else x


def keypoint_cnn(x, state, name, channels):
  x = block(x, state, f"{name}.main.in_block_1", leaky=False)
  x = block(x, state, f"{name}.main.in_block_2", leaky=False)
  size = x.shape[2]
  for ch in channels[1:]:
    x = block(x, state, f"{name}.main.conv_in_{size}_0", stride=2, leaky=False)
    x = block(x, state, f"{name}.main.conv_in_{ch}_1", leaky=False)
    size //= 2
  return conv(x, _get(state, f"{name}.keymap.weight"), _get(state, f"{name}.keymap.bias"))


def linear(x, state, name):
  return x @ _get(state, f"{name}.weight").T + _get(state, f"{name}.bias")


def mlp(x, state, name):
  x = np.maximum(linear(x, state, f"{name}.0"), 0)
  x = np.maximum(linear(x, state, f"{name}.2"), 0)
  return linear(x, state, f"{name}.4")


def reference_posterior(state, images, is_object):
  """(heatmaps [B, K, F, F], mu, logvar [B, K, 2], obj_on [B, K]) of KeyPointVAE.encode."""
  heatmaps = keypoint_cnn(images.transpose(0, 3, 1, 2).astype(np.float64), state, "enc", ENC)
  flat = heatmaps.reshape(len(images), -1)
  stats = mlp(flat, state, "to_normal_stats").reshape(len(images), K, 4)
  obj_on = 1 / (1 + np.exp(-mlp(flat, state, "aux_enc"))) if is_object else None
  return heatmaps, np.tanh(stats[..., :2]), stats[..., 2:], obj_on


def reference_pointnet(state, z, features):
  """PointNetPPToCNN with every node in every neighbourhood (k = 10 >= K + 1)."""
  h = np.concatenate([z, features], -1)                          # [B, N, 2 + D]
  offsets = z[:, None, :, :] - z[:, :, None, :]                  # [B, i, j, 2]: p_j - p_i
  for n in range(1, 5):
    name = f"pointnet.conv{n}.mlp"
    messages = np.concatenate([np.broadcast_to(h[:, None], offsets.shape[:3] + h.shape[-1:]),
                               offsets], -1)
    m = np.maximum(bn(linear(messages, state, f"{name}.0"), state, f"{name}.1", axis=-1), 0)
    m = bn(linear(m, state, f"{name}.3"), state, f"{name}.4", axis=-1)
    h = np.maximum(m.max(axis=2), 0)
  h = np.maximum(linear(h.max(axis=1), state, "pointnet.fc.0"), 0).reshape(-1, K, 8, 8)
  return block(h, state, "pointnet.cnn.depth_up_0", up=True)     # [B, K, 16, 16]


def reference_decoder(state, maps):
  x = block(maps, state, "dec.main.depth_up", up=True)
  x = block(x, state, "dec.main.conv_to_8", up=True)
  x = block(x, state, "dec.main.conv_to_16")
  final = next(key[:-len(".weight")] for key in state if key.startswith("dec.final_conv")
               and key.endswith(".weight"))
  return conv(x, _get(state, f"{final}.weight"), _get(state, f"{final}.bias"))


def reference_background(state, z, z_features, heatmaps, is_object):
  """KeyPointVAE.decode_all's rec = dec(gmap) (NCHW), z [B, K+1, 2]; the masked model's
  bypass ``heatmaps`` [B, K, F, F]."""
  u = np.linspace(-1, 1, F)
  rows = (u - z[:, :K, 0:1]) ** 2
  cols = (u - z[:, :K, 1:2]) ** 2
  maps = np.exp(-(rows[..., :, None] + cols[..., None, :]) / (2 * 0.1 ** 2))  # [B, K, F, F]
  graph = reference_pointnet(state, z, z_features)
  if is_object:
    return reference_decoder(state, np.concatenate([maps, graph], 1))
  foreground = np.clip((maps > 0.2).sum(1, keepdims=True), 0, 1)
  return reference_decoder(state, np.concatenate(
      [maps, foreground * graph, (1 - foreground) * heatmaps], 1))


def reference_glimpses(state, z_features):
  """ObjectDecoderCNN: [N, D] -> sigmoid RGBA [N, 4, 16, 16]."""
  h = np.maximum(linear(z_features, state, "object_dec.fc.0"), 0)
  h = np.maximum(linear(h, state, "object_dec.fc.2"), 0).reshape(-1, 32, 8, 8)
  h = block(h, state, "object_dec.main.depth_up", up=True)
  h = block(h, state, "object_dec.main.conv_to_16")
  final = "object_dec.main.final_conv.main.conv_32_to_4"
  return 1 / (1 + np.exp(-conv(h, _get(state, f"{final}.weight"), _get(state, f"{final}.bias"))))


# ---- fixtures ----

def _images(count, seed):
  """Smooth random images: blobs, so that the CNNs see structure."""
  rng = np.random.default_rng(seed)
  rows, cols = np.mgrid[:SIDE, :SIDE] / (SIDE - 1)
  images = np.zeros((count, SIDE, SIDE, 3), np.float32)
  for image in images:
    for _ in range(4):
      centre, colour = rng.uniform(0.1, 0.9, 2), rng.uniform(0, 1, 3)
      blob = np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / 0.01)
      image += blob[..., None] * colour
  return np.clip(images, 0, 1)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, fast_compile_module):
  """kind -> (state dict, config, (config, state, model) of the converted file, path)."""
  del fast_compile_module
  folder = tmp_path_factory.mktemp("dlp_weights")
  result = {}
  for kind in ("object", "masked"):
    state_dict = original_state_dict(kind)
    torch_path, out = str(folder / f"{kind}.pth"), str(folder / f"{kind}.msgpack")
    torch_writer.save_zip(torch_path, state_dict)
    config_path = folder / f"tiny_{kind}.py"
    config_path.write_text(TINY_CONFIG.format(
        kind=kind, enc=ENC, prior=PRIOR, k=K, d=D, anchor=0.25 if kind == "object" else 0.125))
    summary = convert_dlp_weights.convert(str(config_path), torch_path, out)
    assert summary.startswith(f"{kind} model, 64 px, K={K}, D={D}") and out in summary
    result[kind] = (state_dict, dlp_edit.load_any(weights=out), out)
  return result


# ---- tests ----

@pytest.mark.parametrize("kind", ["object", "masked"])
def test_decoded_particles_match_the_reference(converted, kind):
  state_dict, (_, state, model), _ = converted[kind]
  rng = np.random.default_rng(1)
  # One image: the batch the editor and the demo compile for too.
  particles = {"z": rng.uniform(-0.9, 0.9, (1, K + 1, 2)).astype(np.float32),
               "z_features": rng.normal(size=(1, K + 1, D)).astype(np.float32),
               "obj_on": rng.uniform(size=(1, K)).astype(np.float32),
               "heatmaps": rng.normal(size=(1, F, F, K)).astype(np.float32)}
  particles["z"][:, K] = 0.0                          # the background particle
  out = jax.device_get(dlp_edit.decode(model, state, particles))
  expected = reference_background(state_dict, particles["z"].astype(np.float64),
                                  particles["z_features"].astype(np.float64),
                                  particles["heatmaps"].transpose(0, 3, 1, 2), kind == "object")
  assert np.abs(expected).max() > 0.1
  np.testing.assert_allclose(out["background"], expected.transpose(0, 2, 3, 1), rtol=2e-3,
                             atol=2e-4)
  if kind == "object":
    rgba = reference_glimpses(state_dict, particles["z_features"][:, :K].reshape(-1, D))
    rgba = rgba.reshape(1, K, 4, 16, 16).transpose(0, 1, 3, 4, 2)
    assert rgba.std() > 0.01
    np.testing.assert_allclose(out["decoded_alphas"], rgba[..., :1], atol=2e-4)
    np.testing.assert_allclose(out["decoded_glimpses"], rgba[..., 1:], atol=2e-4)


@pytest.mark.parametrize("kind", ["object", "masked"])
def test_encoded_positions_match_the_reference(converted, kind):
  state_dict, (_, state, model), _ = converted[kind]
  images = _images(1, seed=2)
  out = jax.device_get(dlp_edit.encode(model, state, images))
  heatmaps, mu, logvar, obj_on = reference_posterior(state_dict, images, kind == "object")
  assert heatmaps.std(axis=(2, 3)).min() > 0.05 and np.abs(mu).max() > 0.02
  np.testing.assert_allclose(out["heatmaps"], heatmaps.transpose(0, 2, 3, 1), rtol=1e-3,
                             atol=1e-4)
  # The heads' outputs are small (PyTorch's default init): tight absolute tolerances.
  np.testing.assert_allclose(out["mu"][:, :K], mu, rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(out["logvar"][:, :K], logvar, rtol=1e-3, atol=1e-5)
  if obj_on is not None:
    np.testing.assert_allclose(out["obj_on"], obj_on, rtol=1e-4, atol=1e-6)


def _one_line_error(state_dict, match):
  config = tiny_config("object")
  with pytest.raises(ValueError, match=match) as info:
    dlp_weights.convert_state_dict(state_dict, config, "ckpt.pth")
  assert "\n" not in str(info.value) and str(info.value).startswith("ckpt.pth: ")
  return str(info.value)


def test_mismatches_are_one_line_errors_naming_the_key():
  state = original_state_dict("object")
  missing = collections.OrderedDict(state)
  del missing["pointnet.conv3.mlp.4.running_var"]
  _one_line_error(missing, r"missing key pointnet\.conv3\.mlp\.4\.running_var \(expected "
                           r"shape \(256,\)\)")
  extra = collections.OrderedDict(state)
  extra["dec.main.conv_to_32.main.conv_6_to_6.weight"] = np.zeros((6, 6, 3, 3), np.float32)
  _one_line_error(extra, r"unexpected key dec\.main\.conv_to_32\.main\.conv_6_to_6\.weight")
  wrong = collections.OrderedDict(state)
  wrong["to_normal_stats.4.weight"] = np.zeros((12, 64), np.float32)
  _one_line_error(wrong, r"to_normal_stats\.4\.weight has shape \(12, 64\), expected "
                         r"\(12, 128\)")
  twin = collections.OrderedDict(state)
  twin["object_dec.decode.depth_up.main.bathcnorm_64.bias"] = np.ones(64, np.float32)
  _one_line_error(twin, r"object_dec\.decode\.depth_up\.main\.bathcnorm_64\.bias differs "
                        r"from object_dec\.main\.depth_up")
  # DataParallel's prefix is removed; num_batches_tracked is ignored.
  prefixed = collections.OrderedDict((f"module.{key}", value) for key, value in state.items()
                                     if not key.endswith("num_batches_tracked"))
  variables = dlp_weights.convert_state_dict(prefixed, tiny_config("object"), "ckpt.pth")
  np.testing.assert_array_equal(variables["params"]["posterior"]["position_head"]["Dense_2"]
                                ["kernel"], state["to_normal_stats.4.weight"].T)
  np.testing.assert_array_equal(variables["batch_stats"]["pointnet"]["BatchNorm_5"]["var"],
                                state["pointnet.conv3.mlp.4.running_var"])


def test_cli_errors_and_overwrite(converted, tmp_path, capsys):
  _, _, out = converted["object"]
  with pytest.raises(SystemExit) as info:
    convert_dlp_weights.main(["--config=celeba", "--input=x.pth", f"--output={out}"])
  assert info.value.code == 2
  assert capsys.readouterr().err.strip() == f"error: {out} exists; pass --overwrite to replace it"
  bad = tmp_path / "bad.pth"
  bad.write_bytes(b"not a torch file")
  with pytest.raises(SystemExit) as info:
    convert_dlp_weights.main(["--config=nowhere.py", f"--input={bad}",
                              f"--output={tmp_path / 'x.msgpack'}"])
  err = capsys.readouterr().err
  assert info.value.code == 2 and err.startswith("error: --config='nowhere.py'")
  assert err.count("\n") == 1
  # The released CelebA model is refused by a tiny object config (one line, the key).
  state = original_state_dict("object")
  torch_writer.save_zip(str(tmp_path / "tiny.pth"), state)
  with pytest.raises(SystemExit):
    convert_dlp_weights.main(["--config=celeba", f"--input={tmp_path / 'tiny.pth'}",
                              f"--output={tmp_path / 'x.msgpack'}"])
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and "enc.main." in err
  assert not (tmp_path / "x.msgpack").exists()


def test_weights_for_edit_demo_and_a_mismatching_config(converted, tmp_path):
  state_dict, (config, state, model), path = converted["object"]
  image = _images(1, seed=4)[0]
  grids.save_png(str(tmp_path / "scene.png"), image)
  result = dlp_edit.edit("", str(tmp_path / "scene.png"), str(tmp_path / "edited.png"),
                         moves=[(0, 3.0, -2.0)], swaps=[], weights=path)
  assert os.path.getsize(tmp_path / "edited.png") > 0
  # Particle 0 moved 3 px right and 2 px up; z is (row, col) in [-1, 1].
  moved = result["edited_particles"]["z"][0, 0] - result["particles"]["z"][0, 0]
  np.testing.assert_allclose(moved, np.array([-2.0, 3.0]) * 2 / (SIDE - 1), atol=1e-6)
  with pytest.raises(ValueError, match="exactly one of --workdir"):
    dlp_edit.edit("somewhere", "x.png", "y.png", moves=[(0, 1.0, 1.0)], swaps=[],
                  weights=path)
  with pytest.raises(ValueError, match="exactly one of --workdir"):
    dlp_edit.load_any("", "")
  matplotlib.use("Agg")  # headless, before the demo imports pyplot
  demo = dlp_demo.ParticleDemo(model, state, config, image)
  demo.figure.canvas.draw()
  _, mu, _, _ = reference_posterior(state_dict, image[None], True)
  np.testing.assert_allclose(demo.positions(), (mu[0] + 1) / 2 * (SIDE - 1), atol=2e-2)
  # A config whose model differs from the file's: one line naming the key.
  other = tiny_config("object")
  other.model.feature_dim = D + 1
  other.model.weights = path
  with pytest.raises(ValueError, match=r"converted for model\.feature_dim=2, but "
                                       r"config\.model\.feature_dim=3"):
    dlp_weights.load_variables(path, other)


def test_eval_only_scores_the_given_weights(converted, tmp_path):
  _, (_, state, model), path = converted["object"]
  config = tiny_config("object")
  config.eval_only = True
  config.model.weights = path
  config.eval.batch_size = 1                  # the batch the tests above compiled for
  scores = methods.train_and_evaluate(config, str(tmp_path / "run"), num_devices=1)
  assert np.isfinite(scores["elbo"]) and np.isfinite(scores["psnr"])
  # The scored reconstructions are the converted model's: PSNR of its own decodings of
  # the held-out scenes.
  heldout = data_pipelines.load_source("dlp_shapes_procedural", num_examples=4,
                                       seed=config.eval.heldout_seed).images / 255.0
  heldout = heldout.astype(np.float32)
  reconstruction = np.concatenate([jax.device_get(dlp_edit.decode(
      model, state, dlp_edit.encode(model, state, heldout[i:i + 1])))["reconstruction"]
                                   for i in range(4)])
  errors = np.mean((np.clip(reconstruction, 0, 1) - heldout) ** 2, axis=(1, 2, 3))
  assert scores["psnr"] == pytest.approx(np.mean(-10 * np.log10(errors)), abs=1e-3)
  with open(tmp_path / "run" / "final_scores.json") as f:
    assert json.load(f)["psnr"] == pytest.approx(scores["psnr"])
  assert not os.path.exists(tmp_path / "run" / "checkpoints" / "0")
