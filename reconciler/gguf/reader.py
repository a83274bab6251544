"""Reading a GGUF file's header: metadata and tensor infos, never the weights.

A streaming parser over the header bytes (the `gguf` package's layout and type table, see
`ggml.py`). Every length field is checked against what is left of the file before anything is
allocated, so a truncated, corrupt or hostile file gives one clear `ModelFileError` and no huge
allocation. Large arrays (a vocabulary of 150k tokens) are skipped, keeping only their length.
Split models (`name-00001-of-00003.gguf`) are read shard by shard and combined.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from reconciler.errors import ReconcileError
from reconciler.gguf.ggml import QUANT_SIZES
from reconciler.gguf.regular import NotRegular, open_regular

__all__ = [
    "ArrayInfo",
    "GgufHeader",
    "ModelFileError",
    "TensorInfo",
    "read_gguf",
    "shard_paths",
    "tensor_nbytes",
]

MAGIC = b"GGUF"
MAX_KEEP = 4096  # arrays longer than this keep only their length and element type
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32  # general.alignment when absent, as in llama.cpp
CHUNK = 1 << 20

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class ModelFileError(ReconcileError):
    """A model file that cannot be used: missing, truncated, not GGUF, or corrupt."""


@dataclass(frozen=True)
class ArrayInfo:
    """A long metadata array, kept as its element type and length only."""

    type: int
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ne0 first, as ggml counts
    type: int  # a GGMLQuantizationType value
    nbytes: int


@dataclass(frozen=True)
class GgufHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    file_size: int  # all shards together
    fingerprint: str  # sha256 of the header bytes of every shard


def tensor_nbytes(type_: int, shape: tuple[int, ...]) -> int:
    block, size = QUANT_SIZES[type_]
    rows = 1
    for n in shape[1:]:
        rows *= n
    return (shape[0] // block) * size * rows


class _Stream:
    """Little-endian reads with bounds checks against the file's size."""

    def __init__(self, handle: BinaryIO, size: int, where: str) -> None:
        self.handle = handle
        self.size = size
        self.where = where
        self.buf = b""
        self.pos = 0  # file offset of buf[0]
        self.off = 0  # offset inside buf
        self.digest = hashlib.sha256()

    @property
    def tell(self) -> int:
        return self.pos + self.off

    def overrun(self, what: str) -> ModelFileError:
        return ModelFileError(
            f"{self.where}: {what} at byte {self.tell}, more than the file holds "
            f"({self.size} bytes): truncated or corrupt; download it again"
        )

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.where}: {what} at byte {self.tell}; the file is corrupt")

    def _ensure(self, n: int) -> None:
        """Make `n` bytes from the current offset available in the buffer."""
        if n < 0 or self.tell + n > self.size:
            raise ModelFileError(
                f"{self.where}: truncated: needs {n} more bytes at byte {self.tell} but the file "
                f"has {self.size}; download it again"
            )
        if self.off + n > len(self.buf):
            rest = self.buf[self.off :]
            self.digest.update(self.buf[: self.off])
            self.pos += self.off
            more = self.handle.read(max(CHUNK, n - len(rest)))
            self.buf, self.off = rest + more, 0

    def take(self, n: int) -> bytes:
        self._ensure(n)
        data = self.buf[self.off : self.off + n]
        self.off += n
        return data

    def unpack(self, fmt: str, size: int) -> Any:
        return struct.unpack(fmt, self.take(size))[0]

    def u32(self) -> int:
        return int(self.unpack("<I", 4))

    def u64(self) -> int:
        return int(self.unpack("<Q", 8))

    def string(self, what: str) -> str:
        n = self.u64()
        if n > self.size - self.tell:
            raise self.overrun(f"{what} claims {n} bytes")
        return self.take(n).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Skip `count` strings in place: a vocabulary of 262k tokens in a few ms.

        The hot loop works on the buffer directly; a string that runs past the buffer goes
        through `take`, which checks it against the file's size.
        """
        unpack = _U64.unpack_from
        buf, off = self.buf, self.off
        limit = len(buf) - 8
        for _ in range(count):
            if off > limit:
                self.off = off
                self._ensure(8)
                buf, off = self.buf, self.off
                limit = len(buf) - 8
            end = off + 8 + unpack(buf, off)[0]
            if end <= limit + 8:
                off = end
                continue
            self.off = off
            if end - off - 8 > self.size - self.tell - 8:
                raise self.overrun(f"string of {end - off - 8} bytes")
            self.take(end - off)
            buf, off = self.buf, self.off
            limit = len(buf) - 8
        self.off = off

    def finish_digest(self) -> str:
        self.digest.update(self.buf[: self.off])
        return self.digest.hexdigest()


def _value(s: _Stream, vtype: int, key: str) -> Any:
    if vtype in _SCALARS:
        fmt, size = _SCALARS[vtype]
        return s.unpack(fmt, size)
    if vtype == _STRING:
        return s.string(f"value of {key}")
    if vtype == _ARRAY:
        etype, count = s.u32(), s.u64()
        if etype in _SCALARS:
            fmt, size = _SCALARS[etype]
            if count * size > s.size - s.tell:
                raise s.overrun(f"array {key} claims {count} items")
            if count > MAX_KEEP:
                s.take(count * size)
                return ArrayInfo(etype, count)
            return list(struct.unpack(f"<{count}{fmt[1]}", s.take(count * size)))
        if etype == _STRING:
            if count * 8 > s.size - s.tell:
                raise s.overrun(f"array {key} claims {count} strings")
            if count > MAX_KEEP:
                s.skip_strings(count)
                return ArrayInfo(etype, count)
            return [s.string(f"item of {key}") for _ in range(count)]
        raise s.fail(f"array {key} has unknown element type {etype}")
    raise s.fail(f"key {key} has unknown value type {vtype}")


def _tensor(s: _Stream) -> tuple[TensorInfo, int]:
    """One tensor info and the offset of its data within the data section."""
    name = s.string("tensor name")
    n_dims = s.u32()
    if not 1 <= n_dims <= MAX_DIMS:
        raise s.fail(f"tensor {name} has {n_dims} dimensions")
    shape = tuple(s.u64() for _ in range(n_dims))
    type_ = s.u32()
    offset = s.u64()  # where its data starts: checked against the file's size, never read
    if type_ not in QUANT_SIZES:
        raise ModelFileError(
            f"{s.where}: tensor {name} has type {type_}, unknown to this reconciler; "
            "upgrade gpu-reconciler"
        )
    block = QUANT_SIZES[type_][0]
    if shape[0] % block or any(n <= 0 or n > 1 << 40 for n in shape):
        raise s.fail(f"tensor {name} has impossible shape {shape}")
    return TensorInfo(name, shape, type_, tensor_nbytes(type_, shape)), offset


def _alignment(where: str, metadata: dict[str, Any]) -> int:
    align = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if isinstance(align, bool) or not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise ModelFileError(
            f"{where}: general.alignment is {align!r}, not a power of two; the file is corrupt"
        )
    return align


def _check_data(
    where: str, size: int, start: int, tensors: list[tuple[TensorInfo, int]], align: int
) -> None:
    """Every tensor's data lies inside the file: a download cut short after the header is
    caught here (llama.cpp refuses it the same way when loading)."""
    end = start
    for info, offset in tensors:
        if offset % align:
            raise ModelFileError(
                f"{where}: tensor {info.name} starts at offset {offset}, not a multiple of the "
                f"alignment {align}; the file is corrupt"
            )
        end = max(end, start + offset + info.nbytes)
    if end > size:
        raise ModelFileError(
            f"{where}: truncated: its tensors' data ends at byte {end} but the file has {size} "
            "bytes; download it again"
        )


def _read_one(path: Path) -> tuple[int, dict[str, Any], list[TensorInfo], int, str]:
    where = str(path)
    try:
        handle, st = open_regular(path)
    except NotRegular as exc:
        hint = "; give the path of a GGUF file" if "not a regular file" in exc.reason else ""
        raise ModelFileError(f"{where}: {exc.reason}{hint}") from None
    with handle:
        size = st.st_size
        if size == 0:
            raise ModelFileError(f"{where}: is empty (0 bytes); download it again")
        s = _Stream(handle, size, where)
        if size < 4 or s.take(4) != MAGIC:
            raise ModelFileError(f"{where}: not a GGUF file (no GGUF magic at the start)")
        version = s.u32()
        if version not in (2, 3):
            hint = "a big-endian file?" if version > 0xFFFF else "convert it with current llama.cpp"
            raise ModelFileError(f"{where}: GGUF version {version} is not supported ({hint})")
        n_tensors, n_kv = s.u64(), s.u64()
        if n_tensors * 24 > size or n_kv * 12 > size:
            raise s.overrun(f"header claims {n_tensors} tensors and {n_kv} keys")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = s.string("key")
            metadata[key] = _value(s, s.u32(), key)
        tensors = [_tensor(s) for _ in range(n_tensors)]
        align = _alignment(where, metadata)
        _check_data(where, size, (s.tell + align - 1) // align * align, tensors, align)
        infos = [info for info, _offset in tensors]
        return version, metadata, infos, size, s.finish_digest()


def shard_paths(path: Path) -> list[Path]:
    """Every file of a split model (`name-00001-of-00003.gguf` ...); else just `path`."""
    match = _SPLIT.match(path.name)
    if match is None:
        return [path]
    count = int(match["count"])
    return [
        path.with_name(f"{match['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    ]


def read_gguf(path: str | os.PathLike[str]) -> GgufHeader:
    """Read the header of a GGUF file (all shards of a split model)."""
    first = Path(path)
    version, metadata, tensors, size, digest = _read_one(first)
    shards = shard_paths(first)
    if len(shards) > 1 and shards[0] != first:
        raise ModelFileError(f"{first}: give the first shard of a split model: {shards[0].name}")
    digests = [digest]
    for shard in shards[1:]:
        _v, _meta, more, more_size, more_digest = _read_one(shard)
        tensors += more
        size += more_size
        digests.append(more_digest)
    expected = metadata.get("split.tensors.count")
    if isinstance(expected, int) and expected != len(tensors):
        raise ModelFileError(
            f"{first}: split model has {len(tensors)} tensors in {len(shards)} files but "
            f"declares {expected}; is a shard missing or from another model?"
        )
    fingerprint = hashlib.sha256("".join(digests).encode()).hexdigest()
    return GgufHeader(first, version, metadata, tuple(tensors), size, fingerprint)
