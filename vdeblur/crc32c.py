"""CRC-32C (Castagnoli), the checksum TensorFlow and LevelDB store, with numpy alone.

A byte-at-a-time Python loop needs about 7 s for the 83 MB official ``.data`` file, so
long inputs are cut into many equal lanes whose CRCs numpy advances side by side (four bytes
per step, slicing-by-4 tables), and the lane CRCs are then chained with a precomputed
"append L zero bytes" operator (CRC is affine over GF(2)). ``google-crc32c`` is used when it
is installed; the result is the same.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_MAX_LANES = 1 << 15


def _tables() -> np.ndarray:
    """Slicing-by-4 tables: row 0 is the classic byte table, row k advances k more zero bytes."""
    t = np.zeros((4, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (_POLY if c & 1 else 0)
        t[0, i] = c
    for k in range(1, 4):
        prev = t[k - 1]
        t[k] = (prev >> 8) ^ t[0][prev & 0xFF]
    return t


_T = _tables()
_T0 = [int(v) for v in _T[0]]


def _update_bytes(reg: int, data) -> int:
    """Advance the raw CRC register over ``data`` one byte at a time (short inputs, tails)."""
    t = _T0
    for b in bytes(data):
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _lanes(words: np.ndarray) -> np.ndarray:
    """Raw registers (initial value 0) of each row of a (steps, lanes) little-endian uint32 array."""
    t0, t1, t2, t3 = _T
    reg = np.zeros(words.shape[1], dtype=np.uint32)
    for row in words:
        reg ^= row
        reg = t3[reg & 0xFF] ^ t2[(reg >> 8) & 0xFF] ^ t1[(reg >> 16) & 0xFF] ^ t0[reg >> 24]
    return reg


@lru_cache(maxsize=64)
def _shift_table(nbytes: int) -> list[list[int]]:
    """Byte-indexed tables of the linear map 'register after nbytes zero bytes' (4 x 256)."""
    cols = _zeros_operator(nbytes)  # image of each register bit
    table = []
    for k in range(4):
        row = []
        for byte in range(256):
            acc = 0
            for bit in range(8):
                if byte >> bit & 1:
                    acc ^= cols[8 * k + bit]
            row.append(acc)
        table.append(row)
    return table


def _apply_matrix(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _zeros_operator(nbytes: int) -> list[int]:
    """32 columns of the matrix that advances a raw register over nbytes zero bytes (square-and-multiply)."""
    one_byte = [_update_bytes(1 << bit, b"\0") for bit in range(32)]
    result = [1 << bit for bit in range(32)]
    power = one_byte
    while nbytes:
        if nbytes & 1:
            result = [_apply_matrix(power, c) for c in result]
        power = [_apply_matrix(power, c) for c in power]
        nbytes >>= 1
    return result


def _crc32c_numpy(data, reg: int) -> int:
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    n = buf.size
    lanes = min(_MAX_LANES, n // 256)
    if lanes < 2:
        return _update_bytes(reg, buf.tobytes())
    lane_bytes = (n // lanes) & ~3
    head = n - lanes * lane_bytes
    reg = _update_bytes(reg, buf[:head].tobytes())
    words = buf[head:].view("<u4").reshape(lanes, lane_bytes // 4)
    lane_regs = _lanes(np.ascontiguousarray(words.T))
    shift = _shift_table(lane_bytes)
    s0, s1, s2, s3 = shift
    for lane_reg in lane_regs.tolist():
        reg = s0[reg & 0xFF] ^ s1[(reg >> 8) & 0xFF] ^ s2[(reg >> 16) & 0xFF] ^ s3[reg >> 24] ^ lane_reg
    return reg


def crc32c(data) -> int:
    """CRC-32C of a bytes-like object."""
    if _native is not None:
        return _native(bytes(data) if not isinstance(data, bytes) else data)
    return _crc32c_numpy(data, 0xFFFFFFFF) ^ 0xFFFFFFFF


def crc32c_pure(data) -> int:
    """The numpy implementation, regardless of ``google-crc32c`` (tests, benchmarks)."""
    return _crc32c_numpy(data, 0xFFFFFFFF) ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """LevelDB/TF 'masked' CRC, stored so that CRCs of data containing CRCs stay well distributed."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _load_native():
    try:
        import google_crc32c
    except ImportError:
        return None
    if getattr(google_crc32c, "implementation", "c") != "c":
        return None  # its pure-Python fallback is slower than ours
    return google_crc32c.value


_native = _load_native()
