"""Read a written file back and compare it with its input: every frame at the input's timestamp, the
copied streams' packets bit for bit, the picture's size, rotation and colour tags, HDR10 metadata.

Demuxing only (one frame of each file is decoded for the tags), so it costs seconds for an hour of
video. It catches what muxers can do without an error (drop, reorder or round timestamps, lose a
stream or a tag), and it tells the user what was checked instead of asking for trust.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from . import sequence
from .hdr import WRITERS, read_hdr10, side_data
from .video import VideoReader, is_gray, output_colour, prepare_decoder


@dataclass
class Verification:
    held: list[str] = field(default_factory=list)       # checks that passed, for the summary
    problems: list[str] = field(default_factory=list)   # checks that failed, as warnings


@dataclass
class _Stream:
    """What one stream carried: its packets' times (seconds), payload digest and finest time step."""

    times: list[float] = field(default_factory=list)
    packets: int = 0   # with a payload, timed or not (MPEG-PS times only the first frame of a pack)
    digest: object = field(default_factory=hashlib.sha256)
    step: float = 0.0
    adts: int = 0   # AAC packets that came with an ADTS header (hashed without it)
    end: float | None = None   # where the last packet ends (start + duration)
    longest: float = 0.0       # the longest packet, seconds (an audio codec frame)

    def add(self, packet, offset: float = 0.0) -> None:
        if bytes(packet) == _EMPTY_CUE and getattr(packet.stream.codec_context, "name", None) == "mov_text":
            return   # an empty cue MP4's muxer puts in a gap between cues (or for a part with none): no text
        self.packets += 1
        if packet.pts is not None and packet.time_base:
            self.times.append(float(packet.pts * packet.time_base) - offset)
            self.step = max(self.step, float(packet.time_base))
            length = float((packet.duration or 0) * packet.time_base)
            self.longest = max(self.longest, length)
            end = self.times[-1] + length
            self.end = end if self.end is None else max(self.end, end)
        data = bytes(packet)
        if getattr(packet.stream.codec_context, "name", None) == "aac":
            bare = _without_adts(data)
            self.adts += len(bare) != len(data)
            data = bare
        self.digest.update(data)


_EMPTY_CUE = b"\x00\x00"   # a mov_text sample: a 16-bit text length of 0


def _without_adts(data: bytes) -> bytes:
    """AAC without its ADTS header. MPEG-TS (and .aac files) frame each AAC packet with one; MP4, MOV and
    Matroska store it bare, and FFmpeg's muxers add or strip it: a faithful copy differs by just that."""
    if len(data) >= 9 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0:
        return data[7 if data[1] & 1 else 9:]
    return data


def verify(src: str | os.PathLike, dst: str | os.PathLike, stream_map: dict[int, int], *, start: float | None,
           duration: float | None, frames: int, damaged: bool, size: tuple[int, int] | None = None,
           reencoded: dict[int, int] | None = None, rate: Fraction | None = None, fields: bool = False,
           interlaced: str | None = None, upright: bool = False, gray: bool = False) -> Verification:
    """Compare ``dst`` with the part of ``src`` it was made from. ``stream_map``: input stream index ->
    output stream index of each copied stream; ``frames``: frames written; ``damaged``: the input had
    packets or frames skipped, so only counts can be compared; ``size``: the frames' (width, height)
    where it is not the input's (a side-by-side comparison); ``reencoded``: input -> output index of
    audio re-encoded to fit the container, compared by where it starts and how long it lasts; ``rate``:
    an input image sequence's frame rate; ``fields``: each input frame was made two, one per field;
    ``interlaced``: the field order ("tff", "bff") the output was woven in (--reinterlace); ``upright``:
    the source's rotation was turned into the pixels (image files, a comparison), as the writer's reader did;
    ``gray``: the output was written as grey (luma alone), whatever its decoder makes of it. An
    output image sequence keeps no time: its frames are counted."""
    reencoded = reencoded or {}
    result = Verification()
    reader = VideoReader(src, start=start, duration=duration, rate=rate if sequence.is_sequence(src) else None,
                         upright=upright)
    try:
        video_index = reader.stream.index
        # The part on the file's own timeline: --start and --duration count from its start (an
        # MPEG-TS begins at 1.4 s or hours in), and a part's timestamps begin at 0.
        part = (reader.start if start is not None else None, reader.end)
        shift = reader.start if start is not None else 0.0
        if reader.orientation:   # a photo turned upright as its EXIF said: no rotation left, sides maybe swapped
            size = size or (reader.info.width, reader.info.height)
        wanted = {i: _Stream() for i in [*stream_map, *reencoded]}
        for packet in reader.passthrough_packets():   # exactly the packets the writer was given
            if packet.stream_index in wanted:
                wanted[packet.stream_index].add(packet)
        names = {s.index: f"#{s.index} {s.type} {s.codec_context.name if s.codec_context else s.name}"
                 for s in reader.container.streams}
        types = {s.index: s.type for s in reader.container.streams}
        pcm = {s.index for s in reader.container.streams if s.codec_context and s.codec_context.name.startswith("pcm_")}
    finally:
        reader.close()
    source_video = _video_times(src, video_index, part, shift, rate, fields)
    got = {i: _Stream() for i in [0, *stream_map.values(), *reencoded.values()]}
    missing = set()   # MP4 leaves out a track that got no packet (a part that holds none of its audio)
    with _open(dst, rate) as c:
        for packet in c.demux(*[c.streams[i] for i in got if i < len(c.streams)]):
            if packet.size:
                got[packet.stream_index].add(packet)
        for index, out_index in [*stream_map.items(), *reencoded.items()]:
            if out_index >= len(c.streams):
                missing.add(index)
                if wanted[index].packets:
                    result.problems.append(f"{names[index]}: not in the written file ({wanted[index].packets} packets given)")
                else:
                    result.held.append(f"{names[index]}: no packets to copy, so the file has no such track")
                continue
            # A muxer may take a stream its demuxer then reads as something else (PCM or text
            # subtitles in MPEG-TS come back as "data"): bit-exact, but no player will use it.
            out = c.streams[out_index]
            if out.type != types[index]:
                result.problems.append(f"{names[index]}: reads back as a {out.type} stream "
                                       f"({out.codec_context.name if out.codec_context else 'unknown codec'}), "
                                       f"which players will not use as {types[index]}")
    # A muxer may move the whole file in time (Matroska starts at 0 when AAC priming sits before it):
    # every stream alike, so sync is kept. Compare after that shift, and say so.
    shift = min(got[0].times) - min(source_video.times) if got[0].times and source_video.times else 0.0
    tolerance = max(source_video.step, got[0].step) + 1e-9
    if abs(shift) <= tolerance:
        shift = 0.0
    for stream in got.values():
        stream.times = [t - shift for t in stream.times]
        stream.end = None if stream.end is None else stream.end - shift
    untimed = Path(dst).suffix.lower() == ".avi"   # AVI times audio by its packets: no timestamps kept
    _compare_video(result, source_video, got[0], frames, damaged, shift, timeless=sequence.is_sequence(dst),
                   alone=not (untimed and (stream_map or reencoded)))
    for index, out_index in stream_map.items():
        if index in missing:
            continue
        _compare_copy(result, names[index], wanted[index], got[out_index], damaged, untimed, repacked=index in pcm)
    for index, out_index in reencoded.items():
        if index in missing:
            continue
        _compare_reencoded(result, names[index], wanted[index], got[out_index])
    _compare_picture(result, src, video_index, dst, size, rate, turned=bool(reader.orientation), gray=gray)
    if interlaced:
        _check_interlaced(result, dst, interlaced)
    return result


def _check_interlaced(result: Verification, dst, order: str) -> None:
    """Woven output must decode as interlaced frames, in the field order they were woven in."""
    from .deinterlace import FIRST_FIELD as first, field_order_of

    with av.open(str(dst)) as c:
        stream = c.streams.video[0]
        frame = next(c.decode(stream), None)
        found = field_order_of(stream.codec_context.field_order)
    if frame is not None and frame.interlaced_frame and found == order:
        result.held.append(f"interlaced, {first[order]} field first")
    else:
        said = "progressive" if frame is None or not frame.interlaced_frame else f"{first.get(found, 'unknown')} field first"
        result.problems.append(f"the output should decode as interlaced, {first[order]} field first, but reads as {said}")


def _open(path, rate: Fraction | None = None):
    """A file, or an image sequence from its first number."""
    return av.open(str(path), **(sequence.open_options(path, rate) if sequence.is_sequence(path) else {}))


def _video_times(src, index: int, part: tuple[float | None, float | None], shift: float,
                 rate: Fraction | None = None, fields: bool = False) -> _Stream:
    """The input's video packets inside ``part`` ([start, end) on the file's timeline, None for
    open), timed ``shift`` earlier as the reader times them; with ``fields``, each frame's second
    field too, halfway to the next frame (after the last, as far as the one before)."""
    times = _Stream()
    start, end = part

    def inside(t: float) -> bool:
        return (start is None or t >= start - 1e-6) and (end is None or t < end - 1e-6)

    every: list[float] = []   # every frame's time, the part's neighbours included
    with _open(src, rate) as c:
        for packet in c.demux(c.streams[index]):
            if not packet.size:
                continue
            t = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None
            every += [t] if t is not None else []
            if t is None or inside(t):
                times.add(packet, shift)
    if fields and every:
        every.sort()
        gaps = [b - a for a, b in zip(every, every[1:])]
        for t, gap in zip(every, gaps + gaps[-1:] if gaps else [0.0]):
            if inside(t + gap / 2):
                times.times.append(t + gap / 2 - shift)
    return times


def _close(a: list[float], b: list[float], tolerance: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(sorted(a), sorted(b)))


def _compare_video(result: Verification, source: _Stream, out: _Stream, frames: int, damaged: bool,
                   shift: float, timeless: bool = False, alone: bool = True) -> None:
    """``alone``: the other streams move with the video (false for AVI's audio, timed by counting)."""
    if out.packets != frames:
        result.problems.append(f"video: {frames} frames were written but {out.packets} read back")
    elif timeless:
        result.held.append(f"{frames} numbered image{'s' if frames != 1 else ''} (a sequence keeps no timestamps)")
    elif damaged or len(source.times) != len(out.times) or not source.times or len(out.times) != out.packets:
        why = " (damaged input: timestamps not compared)" if damaged else \
            " (the container times only some of them)" if len(out.times) != out.packets else ""
        result.held.append(f"{frames} frames read back{why}")
    elif shift and not alone:
        result.problems.append(f"video: starts {1000 * shift:+.0f} ms from the input's, and AVI's other streams, "
                               f"timed by counting their packets, did not move with it")
    elif _close(source.times, out.times, max(source.step, out.step) + 1e-9):
        moved = f" (the muxer moved the whole file by {1000 * shift:+.1f} ms)" if shift else ""
        result.held.append(f"{frames} frames at the input's timestamps{moved}" if frames != 1
                           else f"1 frame at the input's timestamp{moved}")
    else:
        result.problems.append("video: the frames' timestamps differ from the input's")


def _compare_copy(result: Verification, name: str, source: _Stream, out: _Stream, damaged: bool,
                  untimed: bool = False, repacked: bool = False) -> None:
    """A copy is bit-exact and at the input's times; where the container keeps no times (AVI audio,
    whose times come from counting packets), bit-exact and as many packets. PCM has no frames: a
    container cuts it into packets as it likes (MXF a video frame's worth, MOV more), so its bytes
    must be the same and start and end at the input's times."""
    n = len(source.times)
    if not (source.packets or source.times or out.packets or out.times):   # a part with none of this stream
        result.held.append(f"{name}: none in this part")
        return
    same = source.digest.digest() == out.digest.digest()
    if untimed and same and source.packets == out.packets:
        result.held.append(f"{name}: {n} packet{'s' if n != 1 else ''} bit-exact (AVI keeps no timestamps for them)")
    elif repacked and same and source.times and out.times and len(source.times) != len(out.times) \
            and _close([min(source.times), source.end], [min(out.times), out.end],
                       max(source.longest, out.longest, source.step, out.step) + 1e-9):
        result.held.append(f"{name}: bit-exact, in {len(out.times)} packets where the input had {n} (PCM is cut "
                           f"as the container likes)")
    elif same and _close(source.times, out.times, max(source.step, out.step) + 1e-9):
        framing = " (ADTS headers are the container's)" if source.adts != out.adts else ""
        result.held.append(f"{name}: {n} packet{'s' if n != 1 else ''} bit-exact{framing}")
    elif damaged:
        result.held.append(f"{name}: {len(out.times)} packets (damaged input: not compared)")
    else:
        result.problems.append(f"{name}: the copy differs from the input ({len(out.times)} packets, {n} in the input)")


def _compare_reencoded(result: Verification, name: str, source: _Stream, out: _Stream) -> None:
    """Re-encoded audio differs bit for bit by nature; it must start and end where the input's did,
    within a tenth of a second or one codec frame, whichever is longer: an encoder primes with up to a
    frame (AAC's 1024 samples are 21 ms at 48 kHz, 128 ms at 8 kHz), which MP4 hides and MPEG-TS and
    Matroska time before the start, and pads its last frame. (Start and length would count both.)"""
    if not source.times and not out.times:   # a part of the input with no subtitle in it
        result.held.append(f"{name}: none in this part")
        return
    if not source.times or not out.times:
        result.problems.append(f"{name}: re-encoded, but {'nothing' if not out.times else 'no input'} to compare")
        return
    # Packets last 20 ms (Opus, AAC) to 100 ms (FLAC): compare where the last one ends, not starts.
    start, end = min(out.times) - min(source.times), out.end - source.end
    tolerance = max(0.1, out.longest + 0.005)
    if abs(start) <= tolerance and abs(end) <= tolerance:
        result.held.append(f"{name}: re-encoded, in sync and as long as the input's")
    else:
        result.problems.append(f"{name}: re-encoded, but it starts {round(1000 * start):+d} ms and ends "
                               f"{round(1000 * end):+d} ms against the input's")


def _picture(path, index: int, rate: Fraction | None = None) -> tuple[tuple, dict[str, bytes]]:
    """The first frame's tags, and its side data (HDR10 metadata, ICC profile)."""
    with _open(path, rate) as c:
        stream = c.streams[index]
        if stream.type != "video":   # a muxer that took a codec it cannot label (FFV1 in MPEG-TS: "data")
            return (), {}
        prepare_decoder(stream)   # decoded as the reader did (OpenEXR through the sRGB curve)
        frame = next(c.decode(stream), None)
        if frame is None:
            return (), {}
        # MP4's pasp box first, as players do (AV1 and VP9 have no field of their own); unset means square
        sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        return (frame.width, frame.height, frame.rotation, int(frame.color_range), int(frame.colorspace),
                int(frame.color_primaries), int(frame.color_trc),
                Fraction(sar) if sar else Fraction(1), frame.format.name, stream.codec_context.name), side_data(frame)


def _compare_picture(result: Verification, src, index: int, dst, size: tuple[int, int] | None,
                     rate: Fraction | None = None, turned: bool = False, gray: bool = False) -> None:
    (a, source_side), (b, out_side) = _picture(src, index, rate), _picture(dst, 0, rate)
    source_hdr, out_hdr = read_hdr10(source_side), read_hdr10(out_side)
    profile = source_side.get("ICC_PROFILE")
    if profile and profile == out_side.get("ICC_PROFILE"):
        result.held.append(f"ICC colour profile ({len(profile)} bytes)")
    captions = source_side.get("A53_CC")
    if captions and captions == out_side.get("A53_CC"):   # a loss is the pipeline's warning, with its count
        result.held.append("the first frame's closed captions")
    untagged = ""
    if a and b:
        # What the writer was to make of the source: its size (a comparison is wider), and the range
        # and matrix of the output's kind of pixels (an RGB source written as YUV gets BT.709).
        width, height = size or a[:2]
        a = (width, height, 0 if turned else a[2], *output_colour(a[3], a[4], a[8], b[8], b[9]), *a[5:8])
        # RGB and grey pixels have no matrix, and image files store grey as full range (TIFF stores
        # neither); H.264's grey (4:0:0) decodes as YUV with neutral chroma, tagged with no matrix.
        if av.VideoFormat(b[8]).is_rgb or is_gray(b[8]) or gray:
            a = (*a[:3], *b[3:5], *a[5:])
        elif {a[3], b[3]} == {0, 1}:   # unspecified YUV range means limited: AV1 always says it, and
            a = (*a[:3], b[3], *a[4:])  # H.264/HEVC say neither range nor matrix where no matrix is tagged
        if a[4] == 2 and b[4] in (5, 6) or {a[4], b[4]} == {5, 6}:   # unspecified matrix means swscale's BT.601;
            a = (*a[:4], b[4], *a[5:])   # Ut Video says it. BT.470BG and SMPTE 170M are both BT.601's matrix
        # Image files that store no colour tags, or only some: what their decoder says is its own guess.
        if b[9] == "tiff":
            a, untagged = (*a[:3], *b[3:7], a[7]), "size, rotation and aspect ratio (TIFF keeps no colour tags)"
        elif Path(dst).suffix.lower() in (".jpg", ".jpeg"):   # JFIF is BT.601 in full range, nothing more
            a, untagged = (*a[:5], *b[5:7], a[7]), ("size, rotation, aspect ratio, colour range and matrix "
                                                    "(JPEG keeps no primaries or transfer)")
        b = b[:8]
    if a == b:
        result.held.append(untagged or "size, rotation, aspect ratio and colour tags")
    else:
        fields = ("width", "height", "rotation", "colour range", "colour matrix", "primaries", "transfer", "aspect ratio")
        diff = ", ".join(f"{f} {x} -> {y}" for f, x, y in zip(fields, a, b) if x != y) or "no frame read back"
        result.problems.append(f"picture: {diff}")
    if source_hdr is None:
        return
    if source_hdr.matches(out_hdr):
        result.held.append(f"HDR10 {source_hdr.describe()}")
    else:
        result.problems.append(f"HDR10 metadata: {source_hdr.describe()} in the input, "
                               f"{out_hdr.describe() if out_hdr else 'none'} in the output "
                               f"(written by {', '.join(WRITERS)} only)")
