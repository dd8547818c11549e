"""Writes DLP's CLEVRER or Traffic frames as the uint8 .npy files `array_file` reads.

  python scripts/prepare_dlp_frames.py --dataset=clevrer --frames=DIR --out=OUT \
      [--split=train|validation|test]
  python scripts/prepare_dlp_frames.py --dataset=traffic --frames=DIR --out=OUT

As the original DLP (`datasets/clevrer_ds.py`, `datasets/traffic_ds.py`), frames are
read with PIL in numeric order, every 3rd kept (frameskip 3), converted to RGB and
resized to 128 x 128 with PIL's bicubic filter; the result is uint8 [N, 128, 128, 3].
Frames are streamed into the file (`np.lib.format.open_memmap`), so memory stays
small, and the file appears under its final name only once complete.

CLEVRER: DIR holds one folder per video (or, as the original's single folder, the
frames of all videos directly), each frame named with a trailing number, e.g.
video_00000/0001.png. Videos are taken in folder-name order, frames by number; the
original's rule keeps the frames whose number mod 1000 exceeds 26, then every 3rd
frame of the whole list. Writes OUT/<split>.npy. Extract the official mp4s (128
frames each) with ffmpeg's default numbering, which starts at 1:

  for f in video_train/*/video_*.mp4; do
    d=frames/train/$(basename "$f" .mp4); mkdir -p "$d"
    ffmpeg -loglevel error -i "$f" "$d/%04d.png"
  done

Frames 27..128 remain, 102 per video, so every 3rd gives the 34 frames per video the
original's loader assumes (numbering from 0 would keep 101, and the every-3rd phase
would drift from video to video).

Traffic (the authors' own recordings, not public): DIR holds the frames directly,
named by their number (e.g. 000123.png). Each frame is cropped to the PIL box
(left, upper, right, lower) = (60, 0, 480, 420), as the original, before resizing;
the first int(0.9 N) kept frames go to OUT/train.npy, the rest to
OUT/validation.npy.

Point `config.data.data_dir` at OUT. Prints one summary line per file; bad input is
one ``error: ...`` line and exit code 2.
"""

import argparse
import os
import re
import sys

import numpy as np
from PIL import Image

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif")
FRAMESKIP = 3
IMAGE_SIZE = 128
CLEVRER_FIRST_FRAME = 26        # keep frames whose number mod 1000 exceeds this
TRAFFIC_CROP = (60, 0, 480, 420)  # PIL (left, upper, right, lower)
TRAFFIC_TRAIN_SHARE = 0.9
SPLITS = ("train", "validation", "test")
_PROGRESS_EVERY = 10_000


def frame_number(path: str) -> int:
  """The trailing integer of a frame's file name: 'video_7_0031.png' -> 31."""
  stem = os.path.splitext(os.path.basename(path))[0]
  match = re.search(r"(\d+)$", stem)
  if match is None:
    raise ValueError(f"frame file name {path} does not end with a frame number")
  return int(match.group(1))


def _frames_in(folder: str) -> list[str]:
  """Frame files directly in `folder`, by number (ties by name)."""
  paths = [os.path.join(folder, entry) for entry in os.listdir(folder)
           if entry.lower().endswith(FRAME_EXTENSIONS)
           and os.path.isfile(os.path.join(folder, entry))]
  return sorted(paths, key=lambda path: (frame_number(path), path))


def _check_folder(folder: str) -> None:
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"--frames={folder} is not a folder")


def clevrer_frames(folder: str, frameskip: int = FRAMESKIP) -> list[str]:
  """The CLEVRER frames to keep, in order: per video folder (sorted), by number,
  numbers mod 1000 above `CLEVRER_FIRST_FRAME`, then every `frameskip`-th of all."""
  _check_folder(folder)
  videos = sorted(os.path.join(folder, entry) for entry in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, entry)))
  paths = [path for video in [folder] + videos for path in _frames_in(video)]
  if not paths:
    raise ValueError(f"--frames={folder} holds no {'/'.join(FRAME_EXTENSIONS)} frames, "
                     "directly or in per-video folders")
  kept = [path for path in paths if frame_number(path) % 1000 > CLEVRER_FIRST_FRAME]
  if not kept:
    raise ValueError(f"--frames={folder}: all {len(paths)} frames are numbered "
                     f"<= {CLEVRER_FIRST_FRAME} (mod 1000), none is kept")
  return kept[::frameskip]


def traffic_frames(folder: str, frameskip: int = FRAMESKIP) -> list[str]:
  """The Traffic frames to keep: the frames directly in `folder` by number, every
  `frameskip`-th."""
  _check_folder(folder)
  paths = _frames_in(folder)
  if not paths:
    raise ValueError(f"--frames={folder} holds no {'/'.join(FRAME_EXTENSIONS)} frames")
  return paths[::frameskip]


def load_frame(path: str, image_size: int = IMAGE_SIZE,
               crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
  """uint8 [image_size, image_size, 3]: RGB, cropped to the PIL box `crop`, bicubic."""
  try:
    with Image.open(path) as image:
      image = image.convert("RGB")
      if crop is not None:
        image = image.crop(crop)
      return np.asarray(image.resize((image_size, image_size), Image.Resampling.BICUBIC))
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise ValueError(f"cannot read frame {path} ({reason})") from None


def write_frames(paths: list[str], out_path: str, image_size: int = IMAGE_SIZE,
                 crop: tuple[int, int, int, int] | None = None) -> str:
  """Streams the frames into a uint8 [N, S, S, 3] .npy; returns a summary line."""
  partial = out_path + ".part"
  frames = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                     shape=(len(paths), image_size, image_size, 3))
  complete = False
  try:
    for i, path in enumerate(paths):
      frames[i] = load_frame(path, image_size, crop)
      if (i + 1) % _PROGRESS_EVERY == 0:
        print(f"{out_path}: {i + 1}/{len(paths)} frames", file=sys.stderr, flush=True)
    frames.flush()
    complete = True
  finally:
    del frames  # unmaps the file
    if not complete:
      os.remove(partial)
  os.replace(partial, out_path)
  return f"{out_path}: uint8 {[len(paths), image_size, image_size, 3]}"


def prepare(dataset: str, frames_dir: str, out_dir: str, split: str = "train",
            image_size: int = IMAGE_SIZE, frameskip: int = FRAMESKIP) -> list[str]:
  """Writes the dataset's .npy file(s) into `out_dir`; returns one line per file.

  Raises:
    ValueError: an unknown dataset or split, no frames, an unreadable frame.
    FileNotFoundError: `frames_dir` is not a folder.
  """
  if image_size <= 0 or frameskip <= 0:
    raise ValueError(f"--image_size={image_size} and --frameskip={frameskip} must be > 0")
  if dataset == "clevrer":
    if split not in SPLITS:
      raise ValueError(f"--split={split!r} is not one of {', '.join(SPLITS)}")
    paths = clevrer_frames(frames_dir, frameskip)
    os.makedirs(out_dir, exist_ok=True)
    return [write_frames(paths, os.path.join(out_dir, f"{split}.npy"), image_size)]
  if dataset == "traffic":
    paths = traffic_frames(frames_dir, frameskip)
    train_size = int(TRAFFIC_TRAIN_SHARE * len(paths))
    if train_size == 0:
      raise ValueError(f"--frames={frames_dir}: {len(paths)} frame(s) after frameskip "
                       f"{frameskip}, too few for a train/validation split")
    os.makedirs(out_dir, exist_ok=True)
    return [write_frames(part, os.path.join(out_dir, f"{name}.npy"), image_size,
                         TRAFFIC_CROP)
            for name, part in (("train", paths[:train_size]),
                               ("validation", paths[train_size:]))]
  raise ValueError(f"--dataset={dataset!r} is not one of clevrer, traffic")


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", required=True, choices=("clevrer", "traffic"))
  parser.add_argument("--frames", required=True, help="folder of extracted frames")
  parser.add_argument("--out", required=True, help="folder to write the .npy file(s) in")
  parser.add_argument("--split", default="train", choices=SPLITS,
                      help="clevrer: the file name, <split>.npy (traffic writes both)")
  parser.add_argument("--image_size", type=int, default=IMAGE_SIZE)
  parser.add_argument("--frameskip", type=int, default=FRAMESKIP)
  args = parser.parse_args(argv)
  try:
    for line in prepare(args.dataset, args.frames, args.out, args.split, args.image_size,
                        args.frameskip):
      print(line)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
