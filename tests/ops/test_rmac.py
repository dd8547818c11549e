"""R-MAC: Tolias et al.'s region grid, masked region pooling, whitening, aggregation, and the
padded conv trunk, each against a NumPy / scikit-learn reference or the full network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA

from dti_jax.methods.deepcluster import conv_trunk, rmac
from dti_jax.methods.deepcluster import network as network_lib
from dti_jax.nets import alexnet


def tolias_regions(H, W, L):
  """Tolias et al.'s rmac_regions (MATLAB), 1-based steps written out in NumPy."""
  ovr, steps = 0.4, np.array([2, 3, 4, 5, 6, 7], np.float32)
  w = min(W, H)
  b = (max(H, W) - w) / (steps - 1)
  idx = np.argmin(np.abs((w ** 2 - w * b) / w ** 2 - ovr)) + 1   # MATLAB's 1-based index
  Wd = idx if H < W else 0
  Hd = idx if H > W else 0
  out = []
  for l in range(1, L + 1):
    wl = np.floor(2 * w / (l + 1))
    wl2 = np.floor(wl / 2 - 1)
    bW = (W - wl) / (l + Wd - 1) if l + Wd - 1 > 0 else 0
    cenW = np.floor(wl2 + np.arange(0, l + Wd) * bW) - wl2   # MATLAB 0:l-1+Wd
    bH = (H - wl) / (l + Hd - 1) if l + Hd - 1 > 0 else 0
    cenH = np.floor(wl2 + np.arange(0, l + Hd) * bH) - wl2
    for i in cenH:
      for j in cenW:
        x, y, s = (int(np.round(v)) for v in (j, i, wl))
        out.append([x - max(x + s - W, 0), y - max(y + s - H, 0), s, s])
  return np.array(out)


@pytest.mark.parametrize("H,W,L", [(10, 10, 3), (48, 64, 3), (64, 48, 3), (30, 101, 3),
                                   (7, 5, 2), (32, 24, 4), (13, 200, 3), (6, 6, 1)])
def test_region_grid_is_tolias(H, W, L):
  got = rmac.region_grid(H, W, L)
  np.testing.assert_array_equal(got, tolias_regions(H, W, L))
  assert len(got) <= rmac.max_regions(L)
  assert np.all(got[:, 0] >= 0) and np.all(got[:, 0] + got[:, 2] <= W)
  assert np.all(got[:, 1] >= 0) and np.all(got[:, 1] + got[:, 3] <= H)


def test_square_map_by_hand():
  # 10 x 10, L = 2: level 1 the whole map; level 2 squares of floor(20 / 3) = 6 at 0 and 4.
  np.testing.assert_array_equal(rmac.region_grid(10, 10, 2), [
      [0, 0, 10, 10], [0, 0, 6, 6], [4, 0, 6, 6], [0, 4, 6, 6], [4, 4, 6, 6]])


def test_masked_region_pooling_matches_numpy():
  rng = np.random.default_rng(0)
  sizes, padded, count, channels = [(9, 14), (12, 7)], (12, 16), rmac.max_regions(3), 5
  features = rng.normal(size=(2, *padded, channels)).astype(np.float32)
  masks = [rmac.region_masks(rmac.region_grid(h, w, 3), *padded, count) for h, w in sizes]
  rows, cols, valid = (np.stack(m) for m in zip(*masks))
  got = np.asarray(rmac.region_max_pool(jnp.asarray(features), rows, cols))
  for b, (h, w) in enumerate(sizes):
    regions = rmac.region_grid(h, w, 3)
    assert valid[b].sum() == len(regions) and not valid[b, len(regions):].any()
    for r, (x, y, rw, rh) in enumerate(regions):
      np.testing.assert_allclose(got[b, r], features[b, y:y + rh, x:x + rw].max(axis=(0, 1)))
    np.testing.assert_array_equal(got[b, len(regions):], 0)
  with pytest.raises(ValueError, match="too small"):
    rmac.region_masks(rmac.region_grid(1, 1, 3), 1, 1, count)


def test_whitening_is_scaled_sklearn_pca():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 3.0
  mean, projection = rmac.fit_whitening(x, 4)
  whitened = (x - mean) @ projection.T
  np.testing.assert_allclose(whitened.T @ whitened, np.eye(4), atol=1e-8)  # unit scatter
  reference = PCA(4, whiten=True).fit_transform(x) / np.sqrt(len(x) - 1)
  np.testing.assert_allclose(np.abs(whitened), np.abs(reference), atol=1e-8)  # up to sign
  assert rmac.fit_whitening(x, 50)[1].shape == (6, 6)   # at most the input dimensions


def test_aggregate_matches_step_by_step_numpy():
  rng = np.random.default_rng(2)
  regions = np.abs(rng.normal(size=(3, 5, 4)))
  valid = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
  mean, projection = rng.normal(size=4), rng.normal(size=(3, 4))
  got = rmac.aggregate(regions, valid, mean, projection)
  for n in range(3):
    total = np.zeros(3)
    for r in np.flatnonzero(valid[n]):
      v = regions[n, r] / np.linalg.norm(regions[n, r])
      v = projection @ (v - mean)
      total += v / np.linalg.norm(v)
    np.testing.assert_allclose(got[n], total / np.linalg.norm(total), rtol=1e-10)


@pytest.mark.parametrize("arch,side", [("mini_alexnet", 28), ("alexnet", 67)])
def test_trunk_is_the_networks_conv_part_and_padding_is_exact(arch, side, fast_compile):
  config = network_lib.ml_collections.ConfigDict(
      {"model": {"arch": arch, "sobel": True, "feature_dim": 8}})
  network = network_lib.create_network(config)
  variables = jax.jit(lambda key: network.init(key, jnp.zeros((1, side, side, 3)), False))(
      jax.random.key(0))
  rng = np.random.default_rng(3)
  variables = jax.tree.map(  # non-trivial BN statistics and biases, as after training
      lambda v: np.asarray(v) + rng.uniform(0, 0.1, v.shape).astype(np.float32), dict(variables))
  image = rng.normal(size=(1, side, side, 3)).astype(np.float32)
  _, state = jax.jit(lambda v, x: network.apply(v, x, False, mutable=["intermediates"]))(
      variables, jnp.asarray(image))
  last = len(conv_trunk.LAYERS[arch])
  tap = state["intermediates"][f"relu{last}"][0]
  trunk = jax.jit(conv_trunk.ConvTrunk(arch=arch, sobel=True).apply)
  full = trunk(variables, jnp.asarray(image), jnp.array([[side, side]]))
  np.testing.assert_allclose(np.asarray(full), np.asarray(tap), rtol=1e-4, atol=1e-4)
  assert full.shape[1] == conv_trunk.output_size(arch, side)
  # Two smaller images in one padded batch give their unpadded maps.
  shapes = [(side - 5, side - 9), (side - 11, side)]
  batch = np.full((2, side, side, 3), 7.0, np.float32)   # garbage past the valid part
  for b, (h, w) in enumerate(shapes):
    batch[b, :h, :w] = image[0, :h, :w]
  padded = np.asarray(trunk(variables, jnp.asarray(batch), jnp.array(shapes)))
  for b, (h, w) in enumerate(shapes):
    alone = np.asarray(trunk(variables, jnp.asarray(image[:, :h, :w]), jnp.array([[h, w]])))[0]
    fh, fw = conv_trunk.output_size(arch, h), conv_trunk.output_size(arch, w)
    assert alone.shape[:2] == (fh, fw)
    np.testing.assert_allclose(padded[b, :fh, :fw], alone, rtol=1e-4, atol=1e-4)
    assert not padded[b, fh:].any() and not padded[b, :, fw:].any()


def test_weights_of_another_arch_are_refused():
  params = {"conv1": {"kernel": np.zeros((3, 3, 2, 32))}}
  with pytest.raises(ValueError, match=r"w: conv1 kernel has shape \(3, 3, 2, 32\), "
                                       r"config.model.arch='alexnet' expects \(11, 11, 2, 96\)"):
    conv_trunk.check_variables("alexnet", params, "w")
  assert alexnet.MiniAlexNet  # the trunk mirrors these modules' layers
