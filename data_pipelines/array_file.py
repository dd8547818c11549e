"""Frames stored as one uint8 [N, S, S, 3] `.npy` file per split (DLP's CLEVRER, Traffic).

`scripts/prepare_dlp_frames.py` writes the files from extracted video frames, as the
original DLP preprocesses its video sets into npy arrays once. The file is
memory-mapped (`np.load(mmap_mode="r")`): opening it reads only the header, and
taking the first n frames (`num_examples`) or the first held-out images reads only
those rows. Note that `pipeline.train_batches` hands the whole array to
`tf.convert_to_tensor`, which copies it into memory once per epoch.
"""

import os

import numpy as np

# config.data.split -> file name inside a folder data_dir. "eval" (the split the final
# scores use) is the validation file that DLP's validation ELBO reads.
SPLIT_FILES = {"train": "train.npy", "eval": "validation.npy", "test": "test.npy"}
_PREPARE = "write it with `python scripts/prepare_dlp_frames.py`"


def path_for(data_dir: str, split: str) -> str:
  """The .npy file to read: `data_dir` itself, or `data_dir`/`SPLIT_FILES[split]`."""
  if os.path.isdir(data_dir):
    return os.path.join(data_dir, SPLIT_FILES[split])
  return data_dir


def read(data_dir: str | None, split: str, image_size: int | None = None,
         num_examples: int | None = None) -> np.ndarray:
  """Memory-maps the frames of `split`.

  Args:
    data_dir: config.data.data_dir: a .npy file (used for every split) or a folder
      holding train.npy / validation.npy / test.npy (`SPLIT_FILES`).
    split: "train", "eval" (validation.npy) or "test".
    image_size: When > 0, the side S the frames must have (this source cannot
      resize); None or <= 0 accepts any S.
    num_examples: When > 0, keep only the first n frames (a view: nothing else is
      read); None keeps all.

  Returns:
    A read-only uint8 [N, S, S, 3] `np.memmap` (or a view of one).

  Raises:
    ValueError: no data_dir, a file that is not a uint8 [N, S, S, 3] npy array,
      or a side other than image_size.
    FileNotFoundError: the file does not exist.
  """
  if not data_dir:
    raise ValueError("array_file needs config.data.data_dir: a .npy file or a folder "
                     f"holding {', '.join(sorted(set(SPLIT_FILES.values())))}")
  path = path_for(data_dir, split)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"array_file: {path} not found (config.data.data_dir="
                            f"{data_dir!r}, config.data.split={split!r}); {_PREPARE}")
  try:
    frames = np.load(path, mmap_mode="r", allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise ValueError(f"array_file: {path} (config.data.data_dir) is not a readable .npy "
                     f"array ({reason})") from None
  if not isinstance(frames, np.ndarray):  # an .npz archive loads as a mapping
    frames.close()
    raise ValueError(f"array_file: {path} (config.data.data_dir) is an .npz archive, "
                     "not one .npy array")
  if (frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3
      or frames.shape[1] != frames.shape[2] or not frames.shape[0]):
    raise ValueError(f"array_file: {path} (config.data.data_dir) holds {frames.dtype} "
                     f"{list(frames.shape)}, expected uint8 [N, S, S, 3] with N > 0")
  if image_size and image_size > 0 and frames.shape[1] != image_size:
    raise ValueError(f"config.data.image_size={image_size} but {path} holds "
                     f"{frames.shape[1]}x{frames.shape[2]} frames (array_file cannot "
                     "resize: set 0 or rewrite the file)")
  if num_examples and num_examples > 0:
    frames = frames[:num_examples]
  return frames
