"""A photo's ICC colour profile, written into the picture made from it.

An iPhone's JPEG is Display P3 and a camera's may be Adobe RGB: the profile says so, and a viewer
that reads it shows the colours as shot. FFmpeg's PNG and JPEG encoders write a profile only from the
frame's side data, which PyAV cannot attach to a new frame, so the profile is added to the finished
file here: PNG's iCCP chunk after the header, JPEG's APP2 segments after SOI (and JFIF's APP0).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

#: The formats a profile is written into, by suffix.
SUFFIXES = (".png", ".jpg", ".jpeg")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_ICC = b"ICC_PROFILE\x00"
_JPEG_ICC_CHUNK = 65535 - 2 - len(_JPEG_ICC) - 2   # an APP2 segment's payload after its header


def embed(path: str | Path, profile: bytes) -> None:
    """Write ``profile`` into the PNG or JPEG file at ``path`` (which has none), in place."""
    path = Path(path)
    data = path.read_bytes()
    writer = _png if path.suffix.lower() == ".png" else _jpeg
    path.write_bytes(writer(data, profile))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(data: bytes, profile: bytes) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks, at = [], len(_PNG_SIGNATURE)
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        end = at + 12 + length
        if kind != b"sRGB":   # an sRGB chunk beside a profile contradicts it (PNG spec 11.3.3.5)
            chunks.append(data[at:end])
        if kind == b"IHDR":
            chunks.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(profile)))
        at = end
    return _PNG_SIGNATURE + b"".join(chunks)


def _jpeg(data: bytes, profile: bytes) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG file")
    at = 2
    if data[at:at + 2] == b"\xff\xe0":   # JFIF's APP0 must stay first
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    pieces = [profile[i:i + _JPEG_ICC_CHUNK] for i in range(0, len(profile), _JPEG_ICC_CHUNK)]
    if len(pieces) > 255:
        raise ValueError("ICC profile too large for JPEG")
    segments = b"".join(b"\xff\xe2" + struct.pack(">H", 2 + len(_JPEG_ICC) + 2 + len(piece)) + _JPEG_ICC
                        + bytes((k, len(pieces))) + piece for k, piece in enumerate(pieces, 1))
    return data[:at] + segments + data[at:]
