"""A photo's ICC colour profile and EXIF tags, written into the picture made from it.

An iPhone's JPEG is Display P3 and a camera's may be Adobe RGB: the profile says so, and a viewer
that reads it shows the colours as shot. EXIF holds when and with what the photo was taken, which
photo libraries sort by. FFmpeg's PNG and JPEG encoders write these only from a frame's side data,
which PyAV cannot attach to a new frame, so they are added to the finished file here: PNG's iCCP and
eXIf chunks after the header, JPEG's APP1 (EXIF) and APP2 (profile) segments after SOI (and JFIF's
APP0), WebP's ICCP and EXIF chunks (in the extended layout, whose VP8X header says they are there),
and TIFF's InterColorProfile tag (the profile only: a TIFF's own tags and the EXIF ones overlap).
FFmpeg has already taken the EXIF orientation out (it became the display matrix, and the picture was
turned upright), so the tags written do not turn it again.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_ICC = b"ICC_PROFILE\x00"
_JPEG_EXIF = b"Exif\x00\x00"
_SEGMENT = 65535 - 2   # a JPEG segment's payload after its length field


def embed(path: str | Path, icc: bytes | None = None, exif: bytes | None = None) -> None:
    """Write an ICC profile and EXIF tags (TIFF-structured, as FFmpeg gives them) into the PNG or JPEG
    file at ``path``, which has neither, in place."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(_WRITERS[path.suffix.lower()](data, icc, exif))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_PNG_COLOUR_CHUNKS = (b"sRGB", b"cICP", b"gAMA", b"cHRM")


def _png(data: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks, at = [], len(_PNG_SIGNATURE)
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        end = at + 12 + length
        # FFmpeg writes the colour tags as cICP, gAMA and cHRM chunks: beside a profile, cICP overrides it in
        # readers of PNG's third edition, and sRGB, gAMA and cHRM contradict it (PNG spec 11.3.3.5).
        if not (icc and kind in _PNG_COLOUR_CHUNKS):
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
    if exif and _jpeg_takes_exif(exif):   # larger EXIF does not fit one APP1: left out (what_fits says so)
        segments += _segment(b"\xe1", _JPEG_EXIF + exif)
    if icc:
        pieces = [icc[i:i + _JPEG_ICC_PIECE] for i in range(0, len(icc), _JPEG_ICC_PIECE)]
        if len(pieces) > 255:
            raise ValueError("ICC profile too large for JPEG")
        segments += b"".join(_segment(b"\xe2", _JPEG_ICC + bytes((k, len(pieces))) + piece)
                             for k, piece in enumerate(pieces, 1))
    return data[:at] + segments + data[at:]


#: VP8X flags (WebP container specification): an ICC profile, alpha, and EXIF follow.
_WEBP_ICC, _WEBP_ALPHA, _WEBP_EXIF = 0x20, 0x10, 0x08


def _webp(data: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    chunks, at = [], 12
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        chunks.append((kind, data[at + 8:at + 8 + size]))
        at += 8 + size + (size & 1)   # chunks are padded to an even size
    if chunks and chunks[0][0] == b"VP8X":
        header, chunks = bytearray(chunks[0][1]), chunks[1:]
    else:   # the simple layout (one VP8 or VP8L picture) has no header to flag the tags in: make one
        width, height, alpha = _webp_picture_size(*chunks[0])
        header = bytearray([_WEBP_ALPHA if alpha else 0, 0, 0, 0])
        header += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    header[0] |= (_WEBP_ICC if icc else 0) | (_WEBP_EXIF if exif else 0)
    ordered = [(b"VP8X", bytes(header)), *([(b"ICCP", icc)] if icc else []),   # the order the specification sets
               *(c for c in chunks if c[0] not in (b"ICCP", b"EXIF")), *([(b"EXIF", exif)] if exif else [])]
    body = b"WEBP" + b"".join(kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
                              for kind, payload in ordered)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_picture_size(kind: bytes, payload: bytes) -> tuple[int, int, bool]:
    """(width, height, has alpha) from a lossy (VP8) or lossless (VP8L) picture's own header."""
    if kind == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", payload[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if kind == b"VP8L" and payload[:1] == b"\x2f":
        bits = int.from_bytes(payload[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    raise ValueError("not a WebP picture this can read the size of")


_TIFF_ICC_TAG, _TIFF_UNDEFINED = 34675, 7


def _tiff(data: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """The first directory written again at the end with the profile's tag in it (its values stay where
    they are; the old directory is left unused), and the header pointed at it."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or struct.unpack(order + "H", data[2:4])[0] != 42:
        raise ValueError("not a TIFF file")
    if not icc:
        return data
    first = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[first:first + 2])[0]
    entries = [data[first + 2 + 12 * i:first + 14 + 12 * i] for i in range(count)]
    following = data[first + 2 + 12 * count:first + 6 + 12 * count]   # the next directory's offset
    out = bytearray(data)
    out += b"\x00" * (len(out) & 1)   # offsets are even
    profile_at = len(out)
    out += icc + b"\x00" * (len(icc) & 1)
    tag = struct.pack(order + "HHII", _TIFF_ICC_TAG, _TIFF_UNDEFINED, len(icc), profile_at)
    entries = sorted([e for e in entries if struct.unpack(order + "H", e[:2])[0] != _TIFF_ICC_TAG] + [tag],
                     key=lambda e: struct.unpack(order + "H", e[:2])[0])   # directories are sorted by tag
    directory_at = len(out)
    out += struct.pack(order + "H", len(entries)) + b"".join(entries) + following
    out[4:8] = struct.pack(order + "I", directory_at)
    return bytes(out)


def _segment(marker: bytes, body: bytes) -> bytes:
    return b"\xff" + marker + struct.pack(">H", 2 + len(body)) + body


#: The formats tags are written into, by suffix.
_WRITERS = {".png": _png, ".jpg": _jpeg, ".jpeg": _jpeg, ".webp": _webp, ".tif": _tiff, ".tiff": _tiff}
SUFFIXES = tuple(_WRITERS)
_EXIF_ORIENTATION = 0x0112
_EXIF_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")   # TIFF: its own tags and EXIF's overlap, so the profile only
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_JPEG_ICC_PIECE = _SEGMENT - 2 - len(_JPEG_ICC) - 2   # of a profile, per APP2 segment (at most 255 of them)


def _jpeg_takes_exif(exif: bytes) -> bool:
    return len(_JPEG_EXIF) + len(exif) <= _SEGMENT - 2


def exif_orientation(im, past_pixels: bool = True) -> int | None:
    """The EXIF orientation (1-8, 1 where none) of an open Pillow image; None where its EXIF is
    damaged. A PNG may keep its tags after the pixels, and Pillow decodes the whole picture to look
    there (60 ms at 1080p); ``past_pixels=False`` reads only those before, where phones and editors
    write them."""
    if not past_pixels and im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - Pillow raises many types for a damaged block
        return None


def is_srgb(icc: bytes) -> bool:
    """An sRGB profile, by the name in its description (ASCII in version 2, UTF-16 in version 4)."""
    return b"sRGB" in icc or "sRGB".encode("utf-16-be") in icc


def what_fits(suffix: str, gray: bool, icc: bytes | None, exif: bytes | None) -> tuple[bytes | None, bytes | None, list[str]]:
    """The profile and EXIF tags a picture written as ``suffix`` (in grey or RGB) can carry, and a line
    for each left out: a CMYK or grey profile does not describe an RGB picture (a viewer would take
    its colours through the wrong profile), and JPEG holds at most 16 MiB of profile and 64 KiB of EXIF."""
    notes = []
    if icc:
        space, picture = icc[16:20], (b"GRAY" if gray else b"RGB ")
        if space != picture:
            shown = space.decode("ascii", "replace").strip() or "unknown"
            shown = {"GRAY": "grey"}.get(shown, shown)
            if not is_srgb(icc):   # sRGB is what viewers assume: nothing is lost
                notes.append(f"the source's ICC colour profile is for {shown} colour, not the {'grey' if gray else 'RGB'} "
                             "picture written: left out (viewers take the colours for sRGB)")
            icc = None
        elif suffix in _JPEG_SUFFIXES and len(icc) > 255 * _JPEG_ICC_PIECE:
            notes.append(f"the source's ICC colour profile ({len(icc) / 2**20:.1f} MiB) is larger than a JPEG holds: "
                         "left out; .png, .webp or .tif keep it")
            icc = None
    if exif and suffix not in _EXIF_SUFFIXES:
        notes.append(f"the source's EXIF tags (camera, time taken) are not written into {suffix or 'this'} output; "
                     "a single .jpg, .png or .webp keeps them")
        exif = None
    elif exif and suffix in _JPEG_SUFFIXES and not _jpeg_takes_exif(exif):
        notes.append(f"the source's EXIF tags ({len(exif) // 1024} KiB) are larger than a JPEG's 64 KiB segment: "
                     "left out; .png or .webp keep them")
        exif = None
    return icc, exif, notes
