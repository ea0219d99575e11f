"""Reader for IDX files (the MNIST file format), plain or gzip-compressed.

An IDX file is a big-endian header — two zero bytes, one type byte, one byte ``D`` (number of
dimensions), then ``D`` unsigned 32-bit sizes — followed by the ``prod(sizes)`` values, C
order. Type bytes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
MNIST images are ``uint8 [N, 28, 28]`` (magic 0x00000803), labels ``uint8 [N]`` (0x00000801).

Every problem raises :class:`IDXError` (a ``ValueError``) whose message starts with the file.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(ValueError):
    """A malformed IDX file (the message names the file)."""


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The decompressed content of ``path`` (gzip is detected from the magic bytes 1f 8b)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise IDXError(f"{path}: cannot read IDX file ({e.strerror or e})") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IDXError(f"{path}: corrupt gzip data ({e})") from e
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``) into a numpy array of its shape, native byte order.

    Raises:
        IDXError: naming ``path``, when the header is invalid (non-zero leading bytes, unknown
            type, zero dimensions) or the data size disagrees with the header.
    """
    path = os.fspath(path)
    data = read_idx_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise IDXError(f"{path}: not an IDX file (magic number {data[:4].hex()} must start "
                       "with two zero bytes)")
    code, ndim = data[2], data[3]
    if code not in _TYPES:
        raise IDXError(f"{path}: unknown IDX data type 0x{code:02x} (magic number "
                       f"{data[:4].hex()}); expected one of "
                       + ", ".join(f"0x{c:02x}" for c in _TYPES))
    if ndim == 0:
        raise IDXError(f"{path}: IDX header declares 0 dimensions")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise IDXError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions "
                       f"need {head})")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - head
    if got != expected:
        raise IDXError(f"{path}: IDX header declares shape {shape} of {dtype.name} "
                       f"({expected} data bytes) but the file holds {got} data bytes")
    arr = np.frombuffer(data, dtype, offset=head).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file; gzip
    when ``compress`` is true (default: when ``path`` ends with ``.gz``)."""
    path = os.fspath(path)
    arr = np.asarray(array)
    code = {np.dtype(v).newbyteorder("=").str: k for k, v in _TYPES.items()}.get(
        arr.dtype.newbyteorder("=").str)
    if code is None or arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"cannot write dtype {arr.dtype} with {arr.ndim} dimensions as IDX")
    payload = (bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
               + np.ascontiguousarray(arr, _TYPES[code]).tobytes())
    if compress if compress is not None else path.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    with open(path, "wb") as f:
        f.write(payload)


__all__ = ["IDXError", "read_idx", "read_idx_bytes", "write_idx"]
