"""A photo's ICC colour profile and EXIF tags, written into the picture made from it.

An iPhone's JPEG is Display P3 and a camera's may be Adobe RGB: the profile says so, and a viewer
that reads it shows the colours as shot. EXIF holds when and with what the photo was taken, which
photo libraries sort by. FFmpeg's PNG and JPEG encoders write these only from a frame's side data,
which PyAV cannot attach to a new frame, so they are added to the finished file here: PNG's iCCP and
eXIf chunks after the header, JPEG's APP1 (EXIF) and APP2 (profile) segments after SOI (and JFIF's
APP0). FFmpeg has already taken the EXIF orientation out (it became the display matrix, and the
picture was turned upright), so the tags written do not turn it again.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

#: The formats tags are written into, by suffix.
SUFFIXES = (".png", ".jpg", ".jpeg")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_ICC = b"ICC_PROFILE\x00"
_JPEG_EXIF = b"Exif\x00\x00"
_SEGMENT = 65535 - 2   # a JPEG segment's payload after its length field


def embed(path: str | Path, icc: bytes | None = None, exif: bytes | None = None) -> None:
    """Write an ICC profile and EXIF tags (TIFF-structured, as FFmpeg gives them) into the PNG or JPEG
    file at ``path``, which has neither, in place."""
    path = Path(path)
    data = path.read_bytes()
    writer = _png if path.suffix.lower() == ".png" else _jpeg
    path.write_bytes(writer(data, icc, exif))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(data: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks, at = [], len(_PNG_SIGNATURE)
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        end = at + 12 + length
        if not (icc and kind == b"sRGB"):   # an sRGB chunk beside a profile contradicts it (PNG spec 11.3.3.5)
            chunks.append(data[at:end])
        if kind == b"IHDR":
            if icc:
                chunks.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
            if exif:
                chunks.append(_png_chunk(b"eXIf", exif))
        at = end
    return _PNG_SIGNATURE + b"".join(chunks)


def _jpeg(data: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG file")
    at = 2
    if data[at:at + 2] == b"\xff\xe0":   # JFIF's APP0 must stay first
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    segments = b""
    if exif and len(_JPEG_EXIF) + len(exif) <= _SEGMENT - 2:   # larger EXIF does not fit one APP1: left out
        segments += _segment(b"\xe1", _JPEG_EXIF + exif)
    if icc:
        size = _SEGMENT - 2 - len(_JPEG_ICC) - 2
        pieces = [icc[i:i + size] for i in range(0, len(icc), size)]
        if len(pieces) > 255:
            raise ValueError("ICC profile too large for JPEG")
        segments += b"".join(_segment(b"\xe2", _JPEG_ICC + bytes((k, len(pieces))) + piece)
                             for k, piece in enumerate(pieces, 1))
    return data[:at] + segments + data[at:]


def _segment(marker: bytes, body: bytes) -> bytes:
    return b"\xff" + marker + struct.pack(">H", 2 + len(body)) + body
