"""torchvision's ColorJitter and RandomGrayscale on float images in [0, 1], on device.

Part discovery jitters each training image twice, independently:
``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` then
``RandomGrayscale(p_gray)``. ColorJitter draws brightness, contrast and saturation factors
from U(1 - x, 1 + x) and a hue shift from U(-hue, hue) (fraction of the hue circle), and
applies the four operations in a random order, each clamped to [0, 1]:
brightness scales, contrast blends with the mean grey level of the image, saturation
blends with the grey image, hue rotates H in HSV. Grey is 0.2989 R + 0.587 G + 0.114 B.
torchvision rounds to uint8 between operations on PIL images; here everything stays float.
"""

import jax
import jax.numpy as jnp


def grayscale(image: jax.Array) -> jax.Array:
  """[H, W, 3] -> [H, W, 1] luma (ITU-R 601-2, torchvision's weights)."""
  return (0.2989 * image[..., 0:1] + 0.587 * image[..., 1:2] + 0.114 * image[..., 2:3])


def _blend(image: jax.Array, other: jax.Array, factor: jax.Array) -> jax.Array:
  return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def rgb_to_hsv(image: jax.Array) -> jax.Array:
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  maxc = jnp.max(image, axis=-1)
  minc = jnp.min(image, axis=-1)
  delta = maxc - minc
  safe_delta = jnp.where(delta > 0, delta, 1.0)
  saturation = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
  rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
  hue = jnp.where(maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
  hue = jnp.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
  return jnp.stack([hue, saturation, maxc], axis=-1)


def hsv_to_rgb(image: jax.Array) -> jax.Array:
  h, s, v = image[..., 0], image[..., 1], image[..., 2]
  sector = jnp.floor(h * 6.0)
  f = h * 6.0 - sector
  p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
  sector = sector.astype(jnp.int32) % 6
  choices = [jnp.stack(c, axis=-1) for c in
             ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
  out = choices[0]
  for index in range(1, 6):
    out = jnp.where((sector == index)[..., None], choices[index], out)
  return out


def adjust_brightness(image, factor):
  return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image, factor):
  return _blend(image, jnp.mean(grayscale(image)), factor)


def adjust_saturation(image, factor):
  return _blend(image, grayscale(image), factor)


def adjust_hue(image, shift):
  hsv = rgb_to_hsv(image)
  return hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + shift) % 1.0))


def color_jitter(key: jax.Array, image: jax.Array, *, brightness: float, contrast: float,
                 saturation: float, hue: float, p_jitter: float, p_grayscale: float
                 ) -> jax.Array:
  """One image [H, W, 3] in [0, 1] through RandomApply(ColorJitter, p) + RandomGrayscale."""
  keys = jax.random.split(key, 7)
  factors = jnp.stack([
      jax.random.uniform(keys[0], (), minval=1 - brightness, maxval=1 + brightness),
      jax.random.uniform(keys[1], (), minval=1 - contrast, maxval=1 + contrast),
      jax.random.uniform(keys[2], (), minval=1 - saturation, maxval=1 + saturation),
      jax.random.uniform(keys[3], (), minval=-hue, maxval=hue)])
  order = jax.random.permutation(keys[4], 4)
  operations = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
  jittered = image
  for slot in range(4):
    jittered = jax.lax.switch(order[slot], operations, jittered, factors[order[slot]])
  image = jnp.where(jax.random.bernoulli(keys[5], p_jitter), jittered, image)
  gray = jnp.broadcast_to(grayscale(image), image.shape)
  return jnp.where(jax.random.bernoulli(keys[6], p_grayscale), gray, image)


def color_jitter_batch(key: jax.Array, images: jax.Array, **kwargs) -> jax.Array:
  """``color_jitter`` with an independent draw per image of [B, H, W, 3]."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: color_jitter(k, x, **kwargs))(keys, images)
