"""Damaged copies of real GGUF files: metadata values replaced with anything a corrupt file or
a careless converter could hold (wrong types, NaN, huge counts, empty arrays, missing keys).

The `gguf` package refuses to write most of these (an empty array, a count that lies), so the
header is re-encoded here: the file written by `tests.ggufs.write_gguf` is split into its
key/value section, its tensor infos and its data; chosen values are replaced or removed and
the file is put together again with the data re-aligned, so that only the metadata is wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DROP", "GGUF_TYPES", "Raw", "edit_metadata", "read_keys"]

# GGUF value types (gguf.GGUFValueType)
GGUF_TYPES = {
    "u8": 0,
    "i8": 1,
    "u16": 2,
    "i16": 3,
    "u32": 4,
    "i32": 5,
    "f32": 6,
    "bool": 7,
    "str": 8,
    "array": 9,
    "u64": 10,
    "i64": 11,
    "f64": 12,
}
_FORMATS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class Raw:
    """A metadata value written exactly as given: `kind` a key of GGUF_TYPES; for an array,
    `items` the items' kind and `count` the count written (None: the true one)."""

    kind: str
    value: object
    items: str = "u32"
    count: int | None = None


DROP = None  # a change that removes the key


def _encode(kind: int, value: object) -> bytes:
    if kind in _FORMATS:
        return struct.pack("<" + _FORMATS[kind], value)
    if kind == _STRING:
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
        return struct.pack("<Q", len(data)) + data
    raise ValueError(f"no encoding for kind {kind}")


def _raw(raw: Raw) -> bytes:
    kind = GGUF_TYPES[raw.kind]
    if kind != _ARRAY:
        return struct.pack("<I", kind) + _encode(kind, raw.value)
    items = list(raw.value)  # type: ignore[call-overload]
    sub = GGUF_TYPES[raw.items]
    count = len(items) if raw.count is None else raw.count
    head = struct.pack("<IIQ", kind, sub, count)
    return head + b"".join(_encode(sub, item) for item in items)


class _Cursor:
    def __init__(self, data: bytes, at: int) -> None:
        self.data, self.at = data, at

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return int(value)

    def skip_value(self, kind: int) -> None:
        if kind in _FORMATS:
            self.at += struct.calcsize("<" + _FORMATS[kind])
        elif kind == _STRING:
            length = self.take("Q")
            self.at += length
        else:
            sub, count = self.take("I"), self.take("Q")
            for _ in range(count):
                self.skip_value(sub)


def _sections(data: bytes) -> tuple[int, dict[str, bytes], bytes, int, int]:
    """(version, key -> encoded type and value, tensor infos, alignment, data offset)."""
    cur = _Cursor(data, 4)
    version, n_tensors, n_kv = cur.take("I"), cur.take("Q"), cur.take("Q")
    kvs: dict[str, bytes] = {}
    align = 32
    for _ in range(n_kv):
        key_len = cur.take("Q")
        key = data[cur.at : cur.at + key_len].decode()
        cur.at += key_len
        start = cur.at
        kind = cur.take("I")
        if key == "general.alignment":
            align = struct.unpack_from("<I", data, cur.at)[0]
        cur.skip_value(kind)
        kvs[key] = data[start : cur.at]
    ti_start = cur.at
    for _ in range(n_tensors):
        name_len = cur.take("Q")
        cur.at += name_len
        dims = cur.take("I")
        cur.at += 8 * dims + 4 + 8
    infos = data[ti_start : cur.at]
    offset = (cur.at + align - 1) // align * align
    return version, kvs, infos, align, offset


def read_keys(path: Path) -> list[str]:
    """The metadata keys of a GGUF file, in order."""
    return list(_sections(path.read_bytes())[1])


def edit_metadata(src: Path, dst: Path, changes: Mapping[str, Raw | None]) -> Path:
    """A copy of `src` at `dst` with metadata keys replaced (Raw), added, or removed (DROP)."""
    data = src.read_bytes()
    version, kvs, infos, align, offset = _sections(data)
    for key, change in changes.items():
        if change is None:
            kvs.pop(key, None)
        else:
            kvs[key] = _raw(change)
    n_tensors = _Cursor(data, 8).take("Q")
    body = b"".join(struct.pack("<Q", len(k.encode())) + k.encode() + v for k, v in kvs.items())
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + body + infos
    pad = (-len(head)) % align
    dst.write_bytes(head + b"\0" * pad + data[offset:])
    return dst
