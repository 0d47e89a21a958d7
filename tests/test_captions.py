"""Closed captions (CEA-608/708) that broadcast and cable recordings carry inside the video stream.

FFmpeg's decoder gives them as each frame's A53 side data and its encoders write them back from the
frames they get; vdeblur makes new frames, so it hands them on itself (or says they are lost).
The test streams are x264 output with an SEI carrying different caption bytes put before each frame.
"""

import re

import av
import pytest

from media import IdentityBackend, make_video
from test_deinterlace import make_interlaced
from vdeblur import deblur_video
from vdeblur.hdr import side_data


def _caption_sei(index: int) -> bytes:
    """An H.264 SEI NAL unit (user data registered by ITU-T T.35, "GA94") with two caption byte pairs."""
    pairs = [(0x94, 0x20 + index % 64), (0x10 + index % 64, 0x2C)]
    cc_data = bytes([0x40 | len(pairs), 0xFF]) + b"".join(bytes([0xFC, a, b]) for a, b in pairs) + b"\xFF"
    payload = bytes([0xB5, 0x00, 0x31]) + b"GA94" + bytes([0x03]) + cc_data
    rbsp = bytes([4, len(payload)]) + payload + b"\x80"   # payload type 4, size, payload, stop bit
    escaped, zeros = bytearray(), 0
    for byte in rbsp:   # emulation prevention: no 00 00 0x (x <= 3) inside a NAL unit
        if zeros >= 2 and byte <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\x06" + bytes(escaped)


def captions_of(frame_index: int) -> bytes:
    """The A53 side data FFmpeg gives the frame whose SEI :func:`_caption_sei` made."""
    return b"".join(bytes([0xFC, a, b]) for a, b in [(0x94, 0x20 + frame_index % 64), (0x10 + frame_index % 64, 0x2C)])


def add_captions(h264: bytes) -> bytes:
    """An Annex B stream with a caption SEI before each picture's first slice (one slice per picture)."""
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", h264)]
    ends = [e - 1 if h264[e - 1] == 0 else e for e in starts[1:]] + [len(h264)]   # a 4-byte start code's zero
    units = [h264[s + 3:e] for s, e in zip(starts, ends)]
    out, pictures = bytearray(), 0
    for unit in units:
        if unit and unit[0] & 0x1F in (1, 5):
            out += b"\x00\x00\x00\x01" + _caption_sei(pictures)
            pictures += 1
        out += b"\x00\x00\x00\x01" + unit
    return bytes(out)


def captioned(tmp_path, frames: int = 6, interlaced: bool = False):
    plain = tmp_path / "plain.h264"
    if interlaced:
        make_interlaced(plain, frames=frames)
    else:
        make_video(plain, width=64, height=48, frames=frames, options={"preset": "ultrafast", "bframes": "0"})
    path = tmp_path / "captioned.h264"
    path.write_bytes(add_captions(plain.read_bytes()))
    return path


def captions_in(path) -> list[bytes | None]:
    with av.open(str(path)) as c:
        return [side_data(frame).get("A53_CC") for frame in c.decode(video=0)]


def test_the_test_stream_has_captions_on_every_frame(tmp_path):
    assert captions_in(captioned(tmp_path)) == [captions_of(i) for i in range(6)]


@pytest.mark.parametrize("name, codec, resume", [
    ("out.mp4", None, True), ("out.mp4", None, False), ("out.mkv", "libx265", True), ("out.ts", "mpeg2video", False)])
def test_captions_reach_the_output_in_order(tmp_path, name, codec, resume):
    src = captioned(tmp_path)
    out = tmp_path / name
    report = deblur_video(src, out, backend=IdentityBackend(), codec=codec, resume=resume, segment_frames=2,
                          segment_seconds=0)
    assert captions_in(out) == [captions_of(i) for i in range(6)]
    assert report.captions_kept == 6 and report.captions_lost is None and report.warnings() == []
    assert "the first frame's closed captions" in report.verified


def test_an_encoder_without_captions_says_they_are_lost_before_and_after(tmp_path):
    notes = []
    report = deblur_video(captioned(tmp_path), tmp_path / "out.mkv", backend=IdentityBackend(), codec="ffv1",
                          notify=notes.append)
    assert captions_in(tmp_path / "out.mkv") == [None] * 6
    assert any("closed captions" in line and "ffv1 cannot carry them" in line for line in notes), notes
    assert report.captions_kept == 0
    assert report.warnings() == ["closed captions (CEA-608/708) in 6 frame(s) were not kept: ffv1 cannot carry them "
                                 "(libx264, libx265, mpeg2video can)"]


def test_double_rate_does_not_show_each_frames_captions_twice(tmp_path):
    src = captioned(tmp_path, frames=4, interlaced=True)
    assert captions_in(src) == [captions_of(i) for i in range(4)]
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), double_rate=True)
    assert report.frames == 8 and captions_in(tmp_path / "out.mp4") == [None] * 8
    assert report.warnings() == ["closed captions (CEA-608/708) in 8 frame(s) were not kept: at --double-rate "
                                 "each frame's would be shown twice"]


def test_reinterlaced_output_keeps_each_frames_captions_once(tmp_path):
    src = captioned(tmp_path, frames=4, interlaced=True)
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), reinterlace=True)
    assert report.frames == 4 and captions_in(tmp_path / "out.mp4") == [captions_of(i) for i in range(4)]
    assert report.captions_kept == 4 and report.warnings() == []
    assert "interlaced, top field first" in report.verified and "the first frame's closed captions" in report.verified
