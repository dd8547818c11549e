"""sRGB -> CIE Lab (D65, 2 degree observer), the formula of skimage.color.rgb2lab.

The unsupervised-parts visual-consistency loss compares pixels in Lab, computed by
skimage in the original; the colour baselines use the same conversion. One function
serves numpy (host metrics, float64) and jax.numpy (inside jit, the input dtype):
only operations both modules share are used.
"""

from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

# skimage's xyz_from_rgb (sRGB primaries, D65) and its D65 white point.
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPSILON = 0.008856  # (6/29)^3, rounded as in skimage.
_KAPPA = 7.787  # Slope of the linear segment below _EPSILON.


def rgb_to_lab(rgb, xp: ModuleType | None = None):
  """float [..., 3] sRGB in [0, 1] -> [..., 3] (L in [0, 100], a, b).

  Args:
    rgb: numpy or jax array (uint8 images must be divided by 255 first).
    xp: np or jnp; None picks jnp for jax arrays (tracers included), else np.

  Returns:
    An array of the same module; float64 for numpy integer or float64 input.
  """
  if xp is None:
    xp = jnp if isinstance(rgb, jax.Array) else np
  rgb = xp.asarray(rgb)
  if not xp.issubdtype(rgb.dtype, xp.floating):
    rgb = rgb.astype(xp.float64 if xp is np else xp.float32)
  # The gamma branch is evaluated everywhere: clamp its base so that neither branch
  # produces NaN values or gradients where the other one is selected.
  linear = xp.where(rgb > 0.04045,
                    ((xp.maximum(rgb, 0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
  xyz = linear @ (XYZ_FROM_RGB / D65_WHITE[:, None]).T.astype(rgb.dtype)
  f = xp.where(xyz > _EPSILON, xp.cbrt(xp.maximum(xyz, _EPSILON)),
               _KAPPA * xyz + 16.0 / 116.0)
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  return xp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)
