"""Image grids as uint8 arrays, for TensorBoard summaries and PNG files."""

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Float images in [0, 1] (values outside are clipped) -> uint8."""
  return (np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_grid(images: np.ndarray, columns: int, padding: int = 1,
              pad_value: float = 1.0) -> np.ndarray:
  """Tiles [N, H, W, C] float images into one [H', W', C] image, row-major."""
  images = np.asarray(images, np.float32)
  n, height, width, channels = images.shape
  rows = -(-n // columns)
  grid = np.full((rows * (height + padding) + padding, columns * (width + padding) + padding,
                  channels), pad_value, np.float32)
  for index in range(n):
    r, c = divmod(index, columns)
    top, left = padding + r * (height + padding), padding + c * (width + padding)
    grid[top:top + height, left:left + width] = images[index]
  return grid


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour enlargement of [H, W, C] so small digits stay readable."""
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a float [H, W, C] image in [0, 1] (C = 1 or 3) as PNG."""
  pixels = to_uint8(image)
  if pixels.shape[-1] == 1:
    pixels = pixels[..., 0]
  Image.fromarray(pixels).save(path)


def save_gif(path: str, frames: list[np.ndarray], total_seconds: float = 10.0) -> None:
  """Writes float [H, W, C] frames in [0, 1] as a looping GIF lasting ``total_seconds``."""
  images = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in map(to_uint8, frames)]
  duration = max(20, int(1000 * total_seconds / max(len(images), 1)))
  images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
