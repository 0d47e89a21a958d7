"""HDR10 static metadata: the mastering display (SMPTE ST 2086) and content light levels (CTA-861.3).

Without them an HDR10 player guesses the grade's brightness range and tone-maps wrongly, and no
peer keeps them. FFmpeg's decoders attach them to decoded frames as side data; PyAV cannot attach
stream side data to an encoder, but libx265, libx264 and libsvtav1 take the same facts as their own
parameters and write them into the bitstream (SEI messages, metadata OBUs), where players and
FFmpeg's decoders find them again.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

import av

#: encoder -> (its parameter option, mastering display key, light level key)
_PARAMETERS = {
    "libx265": ("x265-params", "master-display", "max-cll"),
    "libx264": ("x264-params", "mastering-display", "cll"),
    "libsvtav1": ("svtav1-params", "mastering-display", "content-light"),
}
WRITERS = tuple(_PARAMETERS)

#: Side data with per-scene HDR metadata, which none of the encoders here can take from frames.
_DYNAMIC = {"DOVI_RPU_BUFFER": "Dolby Vision", "DOVI_METADATA": "Dolby Vision", "DYNAMIC_HDR_PLUS": "HDR10+",
            "DYNAMIC_HDR_VIVID": "HDR Vivid"}

Point = tuple[float, float]


@dataclass(frozen=True)
class HDR10:
    """CIE 1931 xy chromaticities, luminances in cd/m²; None where the source does not say."""

    primaries: tuple[Point, Point, Point] | None = None   # red, green, blue
    white: Point | None = None
    luminance: tuple[float, float] | None = None          # (min, max)
    light: tuple[int, int] | None = None                  # (MaxCLL, MaxFALL)

    def describe(self) -> str:
        parts = []
        if self.luminance:
            parts.append(f"mastering display {self.luminance[1]:g}/{self.luminance[0]:g} cd/m²")
        if self.light:
            parts.append(f"MaxCLL {self.light[0]}, MaxFALL {self.light[1]}")
        return ", ".join(parts)

    def matches(self, other: HDR10 | None) -> bool:
        """Equal up to the encoders' fixed-point steps (x265: 1/50000 and 1/10000 cd/m²; AV1: 1/65536,
        1/256 and 1/16384 cd/m²)."""
        if other is None:
            return False
        for a, b in ((self.primaries, other.primaries), (self.white, other.white), (self.luminance, other.luminance),
                     (self.light, other.light)):
            if (a is None) != (b is None):
                return False
            if a is not None and not all(abs(x - y) <= 1e-4 + 1e-4 * abs(x) for x, y in zip(_flat(a), _flat(b))):
                return False
        return True


def _flat(values) -> list[float]:
    return [v for item in values for v in (item if isinstance(item, tuple) else (item,))]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def side_data(frame) -> dict[str, bytes]:
    """A decoded frame's side data, {type name: bytes}, read from a 2x2 copy of it.

    Two PyAV 18 bugs are kept away here. Its wrapper of each entry also wraps the entry's metadata
    dictionary, which FFmpeg owns, and frees it again when the wrapper goes: a PNG's ICC profile comes
    with its name as metadata, and reading such a frame's side data crashed the process (segmentation
    fault) at the next garbage collection. The copy that holds one is never freed instead, not even at
    exit: a few hundred bytes plus the profile. And a type its enum has no name for (31, EXIF, on JPEG and TIFF frames) made it
    raise ValueError for all of the frame's side data, a phone photo's orientation with it: such types
    get a name of their own.
    """
    for layout in (None, "rgb24"):   # swscale writes no palette (pal8): then the copy is RGB
        try:
            probe = frame.reformat(format=layout, width=2, height=2, threads=1)   # the side data, not the pixels
            break
        except (av.error.FFmpegError, ValueError):
            continue
    else:
        return {}
    try:
        entries = list(probe.side_data)
    except ValueError:
        _name_unknown_side_data()
        entries = list(probe.side_data)
    found = {entry.type.name: bytes(entry) for entry in entries}
    if "ICC_PROFILE" in found:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(probe))
    return found


def has_captions(frame) -> bool:
    """Whether a decoded frame carries closed captions (CEA-608/708, "A53" side data: broadcast and
    cable recordings). Read off the frame itself: only for frames without an ICC profile (see side_data)."""
    from av.sidedata.sidedata import Type

    try:
        return frame.side_data.get(Type.A53_CC) is not None
    except ValueError:   # a side data type PyAV's enum has no name for (see side_data above)
        _name_unknown_side_data()
        return frame.side_data.get(Type.A53_CC) is not None


def _name_unknown_side_data() -> None:
    from av.sidedata.sidedata import Type

    unknown: dict[int, Type] = {}

    def missing(cls, value):
        if isinstance(value, int) and value not in unknown:
            member = object.__new__(cls)
            member._name_, member._value_ = f"UNKNOWN_{value}", value
            unknown[value] = member
        return unknown.get(value)

    Type._missing_ = classmethod(missing)


def read_hdr10(found: dict[str, bytes]) -> HDR10 | None:
    """The HDR10 metadata in a decoded frame's :func:`side_data`, or None."""
    mastering, light = found.get("MASTERING_DISPLAY_METADATA"), found.get("CONTENT_LIGHT_LEVEL")
    primaries = white = luminance = None
    if mastering is not None:
        # AVMasteringDisplayMetadata: 10 AVRationals (r, g, b, white point as x/y pairs; min, max luminance),
        # then has_primaries and has_luminance.
        *rationals, has_primaries, has_luminance = struct.unpack("=22i", mastering[:88])
        values = [_ratio(rationals[i], rationals[i + 1]) for i in range(0, 20, 2)]
        if has_primaries and None not in values[:8]:
            primaries = tuple((values[i], values[i + 1]) for i in (0, 2, 4))
            white = (values[6], values[7])
        if has_luminance and None not in values[8:]:
            luminance = (values[8], values[9])
    cll = struct.unpack("=2I", light[:8]) if light is not None else None
    hdr = HDR10(primaries, white, luminance, cll if cll and any(cll) else None)
    return hdr if hdr != HDR10() else None


def encoder_options(codec: str, hdr: HDR10) -> dict[str, str] | None:
    """The option that makes ``codec`` write ``hdr``; None if this encoder cannot."""
    if codec not in _PARAMETERS:
        return None
    option, display_key, light_key = _PARAMETERS[codec]
    params = []
    if hdr.primaries and hdr.white and hdr.luminance:
        (r, g, b), (low, high) = hdr.primaries, hdr.luminance
        points = (g, b, r, hdr.white)   # the parameters' order
        if codec == "libsvtav1":   # decimal values; the library rounds to AV1's fixed point
            xy = [f"({x:.5f},{y:.5f})" for x, y in points]
            level = f"L({high:.4f},{low:.5f})"
        else:                      # integers: chromaticity in 1/50000, luminance in 1/10000 cd/m²
            xy = [f"({round(x * 50000)},{round(y * 50000)})" for x, y in points]
            level = f"L({round(high * 10000)},{round(low * 10000)})"
        params.append(f"{display_key}=G{xy[0]}B{xy[1]}R{xy[2]}WP{xy[3]}{level}")
    if hdr.light:
        params.append(f"{light_key}={hdr.light[0]},{hdr.light[1]}")
    return {option: ":".join(params)} if params else {}


def read_dynamic_hdr(found: dict[str, bytes]) -> tuple[str, ...]:
    """Names of the dynamic HDR metadata in a decoded frame's :func:`side_data` (an iPhone's Dolby Vision, HDR10+)."""
    return tuple(sorted({name for key, name in _DYNAMIC.items() if found.get(key) is not None}))
