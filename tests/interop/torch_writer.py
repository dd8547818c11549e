"""Writes ``torch.save`` files of numpy arrays without torch, for the reader's tests.

Both layouts are byte for byte what torch writes for the same objects, save for the
pickle memo opcodes (torch's pickler memoises every string and global, this one
memoises nothing) and the storage keys (torch's legacy keys are memory addresses):

* legacy: pickles of the magic number, protocol version and system info, the object
  (tensors as ``torch._utils._rebuild_tensor_v2`` of a persistent storage id), the sorted
  storage keys, then per storage an int64 element count and its bytes;
* zip: ``<archive>/data.pkl``, ``.format_version``, ``.storage_alignment``, ``byteorder``,
  ``data/<key>`` per storage, ``version``, ``.data/serialization_id``, stored
  uncompressed with data descriptors, each payload aligned to 64 bytes by an "FB" extra
  field, and a zip64 end of central directory, as torch's miniz writer does.
"""

import collections
import dataclasses
import os
import pickle
import struct
import zlib

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                 np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
                 np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
                 np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
                 np.dtype(np.bool_): "BoolStorage"}


@dataclasses.dataclass
class TensorView:
  """A tensor over part of a 1-D ``storage`` that other views may share (elements)."""

  storage: np.ndarray
  offset: int
  shape: tuple
  stride: tuple


@dataclasses.dataclass
class Global:
  """``module.name``, called with ``args`` unless None: e.g. what a hostile file holds."""

  module: str
  name: str
  args: tuple | None = None


class _Pickler:
  """Protocol-2 opcodes for the subset a state dict uses."""

  def __init__(self, legacy: bool, location: str):
    self.legacy, self.location = legacy, location
    self.keys: dict[int, str] = {}
    self.storages: dict[str, np.ndarray] = {}

  def _storage_key(self, storage):
    if id(storage) not in self.keys:
      index = len(self.keys)
      # torch's legacy keys are the storages' addresses, its zip keys their rank.
      self.keys[id(storage)] = str(94_000_000_000_000 + 64 * index) if self.legacy else str(index)
      self.storages[self.keys[id(storage)]] = storage
    return self.keys[id(storage)]

  def _tensor(self, view):
    storage = view.storage
    module = "torch.cuda" if self.location.startswith("cuda") else "torch"
    pid = ("storage", Global(module, STORAGE_NAMES[storage.dtype]), self._storage_key(storage),
           self.location, storage.size) + ((None,) if self.legacy else ())
    return (self._global("torch._utils", "_rebuild_tensor_v2") + b"(" + self.dump(pid) + b"Q"
            + self.dump(view.offset) + self.dump(tuple(view.shape)) + self.dump(tuple(view.stride))
            + b"\x89" + self.dump(collections.OrderedDict()) + b"tR")

  @staticmethod
  def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode("ascii")

  def dump(self, obj) -> bytes:
    if obj is None or isinstance(obj, (bool, int, float)):
      return pickle.dumps(obj, protocol=2)[2:-1]
    if isinstance(obj, str):
      data = obj.encode("utf-8")
      return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(obj, np.ndarray):
      contiguous = np.array(obj, order="C")  # ascontiguousarray would make 0-d arrays 1-d.
      stride = tuple(s // obj.itemsize for s in contiguous.strides)
      return self._tensor(TensorView(contiguous.reshape(-1), 0, obj.shape, stride))
    if isinstance(obj, TensorView):
      return self._tensor(obj)
    if isinstance(obj, Global):
      reference = self._global(obj.module, obj.name)
      return reference if obj.args is None else reference + self.dump(tuple(obj.args)) + b"R"
    if isinstance(obj, tuple):
      items = b"".join(self.dump(item) for item in obj)
      if len(obj) < 4:
        return items + (b")", b"\x85", b"\x86", b"\x87")[len(obj)]
      return b"(" + items + b"t"
    if isinstance(obj, list):
      return b"]" + (b"(" + b"".join(self.dump(item) for item in obj) + b"e" if obj else b"")
    if isinstance(obj, dict):
      start = (self._global("collections", "OrderedDict") + b")R"
               if isinstance(obj, collections.OrderedDict) else b"}")
      items = b"".join(self.dump(key) + self.dump(value) for key, value in obj.items())
      return start + (b"(" + items + b"u" if obj else b"")
    raise TypeError(f"cannot write {type(obj).__name__}")

  def object_pickle(self, obj) -> bytes:
    return b"\x80\x02" + self.dump(obj) + b"."


def save_legacy(path: str, obj, location: str = "cpu") -> None:
  """``torch.save(obj, path, _use_new_zipfile_serialization=False)`` with ``location``."""
  pickler = _Pickler(legacy=True, location=location)
  body = pickler.object_pickle(obj)
  sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True,
              "type_sizes": {"short": 2, "int": 4, "long": 4}}
  with open(path, "wb") as f:
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info):
      f.write(pickle.dumps(header, protocol=2))
    f.write(body)
    keys = sorted(pickler.storages)
    f.write(pickle.dumps(keys, protocol=2))
    for key in keys:
      storage = pickler.storages[key]
      f.write(struct.pack("<q", storage.size))
      f.write(storage.astype(storage.dtype.newbyteorder("<")).tobytes())


def _zip(path, records):
  """miniz's layout: aligned stored records with data descriptors, zip64 end records."""
  out, central = bytearray(), []
  for name, data in records:
    encoded = name.encode("utf-8")
    offset = len(out)
    padding = -(offset + 30 + len(encoded) + 4) % 64
    extra = b"FB" + struct.pack("<H", padding) + b"Z" * padding
    crc = zlib.crc32(data)
    out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x0808, 0, 0, 0, 0, 0, 0, len(encoded),
                       len(extra)) + encoded + extra + data
    out += struct.pack("<IIII", 0x08074B50, crc, len(data), len(data))
    central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, 0x0808, 0, 0, 0, crc,
                               len(data), len(data), len(encoded), 0, 0, 0, 0, 0, offset)
                   + encoded)
  directory, directory_offset, count = b"".join(central), len(out), len(records)
  out += directory
  zip64_offset = len(out)
  out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x2D, 0, 0, count, count,
                     len(directory), directory_offset)
  out += struct.pack("<IIQI", 0x07064B50, 0, zip64_offset, 1)
  out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory),
                     directory_offset, 0)
  with open(path, "wb") as f:
    f.write(bytes(out))


def save_zip(path: str, obj) -> None:
  """``torch.save(obj, path)`` (PyTorch >= 1.6), on CPU."""
  pickler = _Pickler(legacy=False, location="cpu")
  body = pickler.object_pickle(obj)
  archive = os.path.basename(path).split(".")[0] or "archive"
  records = [("data.pkl", body), (".format_version", b"1"), (".storage_alignment", b"64"),
             ("byteorder", b"little")]
  records += [(f"data/{key}", storage.astype(storage.dtype.newbyteorder("<")).tobytes())
              for key, storage in pickler.storages.items()]
  records += [("version", b"3\n"), (".data/serialization_id", b"0" * 40)]
  _zip(path, [(f"{archive}/{name}", data) for name, data in records])
