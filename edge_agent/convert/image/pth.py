"""Read a PyTorch ``.pth`` state dict into numpy arrays, without PyTorch.

Why not ``torch.load``: the conversion tool must not pull in a second 800 MB framework to read one
14 MB file, and ``pickle`` on an untrusted file runs arbitrary code. A ``.pth`` is a pickle whose
tensors point at raw little-endian storages; a restricted unpickler that knows only the handful
of globals a state dict uses (``OrderedDict``, ``torch._utils._rebuild_tensor_v2``, the typed
storage classes) reads it and refuses anything else with one line.

Both layouts torch has written are read:

* zip (torch >= 1.6): ``<root>/data.pkl`` plus one file ``<root>/data/<key>`` per storage;
* legacy (before 1.6; torchvision's ImageNet weights from 2018 are in it): a stream of pickles —
  magic number, protocol version, system info, the state dict, the list of storage keys — then
  each storage as an int64 element count followed by its bytes.

No TensorFlow here.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from ...errors import ConfigError

LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL: Final = 1001
STORAGE_DTYPES: Final = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class PthError(ConfigError):
    """A file that is not a readable PyTorch state dict (one line; the user must fix the file)."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: Any


@dataclasses.dataclass
class _Storage:
    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        if self.storage.data is None:
            raise PthError(f"storage {self.storage.key} was never read: truncated file")
        flat = self.storage.data
        item = flat.dtype.itemsize
        if not self.size:
            return np.array(flat[self.offset])
        need = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True)) + 1
        if need > flat.size:
            raise PthError(f"a tensor reaches past its storage {self.storage.key}: corrupt file")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(view)  # a copy: the storage buffer may be shared


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _Tensor:
    return _Tensor(storage, int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


_GLOBALS: Final[dict[tuple[str, str], Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """Only the globals a state dict needs; storages come back as :class:`_Storage` placeholders."""

    def __init__(self, f: IO[bytes], where: str) -> None:
        super().__init__(f)
        self.where = where
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise PthError(f"{self.where}: refuses to load '{module}.{name}': not part of a plain state dict")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PthError(f"{self.where}: unknown persistent id {str(pid)[:60]}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise PthError(f"{self.where}: unknown storage type {kind!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, kind.dtype, numel)
        return self.storages[key]


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """``name -> array`` for every tensor in a ``.pth`` state dict (zip or legacy layout)."""
    if not path.is_file():
        raise PthError(f"--weights {path}: file not found")
    try:
        if zipfile.is_zipfile(path):
            obj = _load_zip(path)
        else:
            with path.open("rb") as f:
                obj = _load_legacy(f, str(path))
    except PthError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError, TypeError) as e:
        raise PthError(f"--weights {path}: not a readable PyTorch state dict ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(obj, dict) or not all(isinstance(v, _Tensor) for v in obj.values()):
        raise PthError(f"--weights {path}: holds no state dict (a mapping of names to tensors)")
    return {str(k): v.array() for k, v in obj.items()}


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise PthError(f"--weights {path}: a zip without one data.pkl is not a PyTorch file")
        root = pkl[0][: -len("data.pkl")]
        u = _Unpickler(io.BytesIO(z.read(pkl[0])), str(path))
        obj = u.load()
        for key, st in u.storages.items():
            raw = z.read(f"{root}data/{key}")
            st.data = _frombuffer(raw, st, path)
    return obj


def _load_legacy(f: IO[bytes], where: str) -> Any:
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise PthError(f"--weights {where}: not a PyTorch file (no zip, no legacy magic number)")
    if pickle.load(f) != LEGACY_PROTOCOL:
        raise PthError(f"--weights {where}: unsupported legacy PyTorch protocol")
    pickle.load(f)  # system info: endianness and type sizes; torch wrote little-endian everywhere it ran
    u = _Unpickler(f, where)
    obj = u.load()
    keys = pickle.load(f)
    for key in keys:
        st = u.storages.get(str(key))
        (count,) = struct.unpack("<q", _read(f, 8, where))
        if st is None:
            raise PthError(f"--weights {where}: storage {key} is not referenced by any tensor")
        raw = _read(f, count * np.dtype(st.dtype).itemsize, where)
        st.data = _frombuffer(raw, st, Path(where))
    return obj


def _read(f: IO[bytes], n: int, where: str) -> bytes:
    raw = f.read(n)
    if len(raw) != n:
        raise PthError(f"--weights {where}: truncated (a storage ends early)")
    return raw


def _frombuffer(raw: bytes, st: _Storage, path: Path) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=np.dtype(st.dtype).newbyteorder("<"))
    if arr.size < st.numel:
        raise PthError(f"--weights {path}: storage {st.key} holds {arr.size} values, expected {st.numel}")
    return arr
