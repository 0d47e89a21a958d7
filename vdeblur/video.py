"""Video in and out with PyAV, losing nothing the model does not touch.

The reader decodes one video stream to RGB in the *source's* colour matrix and range (10-bit and
deeper sources to 16-bit RGB), and hands over the packets of every other stream untouched. The
writer re-encodes the RGB frames with the source's tags, timestamps, rotation and aspect ratio,
and remuxes the other packets bit-exact. Pitfall numbers (#NNNN) are PyAV issues; see
``notes/video-io.md``.
"""

from __future__ import annotations

import errno
import heapq
import io
import itertools
import math
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
from av.subtitles.subtitle import SubtitleSet
import numpy as np

from . import photo_tags, sequence
from .compare import turned_upright
from .deinterlace import INTERLACED_ENCODERS, Deinterlacer, Weaver, check_mode as check_deinterlace
from .errors import VdeblurError
from .fileio import IMAGE_SUFFIXES, PIPE_DEFAULT, PIPE_FORMATS, STDIO, check_not_special
from .hdr import HDR10, WRITERS, encoder_options, has_captions, read_dynamic_hdr, read_hdr10, side_data

# Streams copied packet for packet (attachments are not packets: they are copied from the header).
COPY_TYPES = ("audio", "subtitle", "data")
_DISCARD_ALL = 48   # AVDISCARD_ALL
# Container/stream tags the muxer writes itself or that would be stale after re-encoding.
_STALE_TAGS = ("encoder", "major_brand", "minor_version", "compatible_brands", "duration", "number_of_frames",
               "number_of_bytes", "bps", "_statistics")
# mp4/mov store a non-zero start in an edit list in movie_timescale units (#2324).
_MOV_SUFFIXES = (".mp4", ".mov", ".m4v", ".3gp", ".3g2", ".ismv", ".psp", ".f4v")
# swscale flags (raw SWS_* values: every PyAV takes an int). Reading, each chroma sample is
# repeated over the pixels it covers (POINT, with FULL_CHR_H_INT so it is repeated, not skipped) and
# rounded (ACCURATE_RND); writing, each block of pixels is averaged back (AREA). So a frame that
# comes back unchanged is written as it was read: libx264 frames through RGB and back kept a 720p
# photo at 71/74/71 dB (Y/U/V) and a 64x48 test pattern at 75/69/inf, where plain bicubic both
# ways gave 47/62/61 and 46/52/49 and read every 8-bit 4:2:0 picture about 1.1 code values dark
# (swscale's fast yuv420p path rounds down; nv12 2.0). Both ends must place chroma alike, and PyAV
# cannot tag a frame's chroma location, so a decoded frame's ("left" for H.264) is dropped before
# reading (:func:`_unsited`; with it the chroma came back at 52 and 34 dB). Reading costs 2.9 ms
# instead of 0.3 per 720p frame on the reader's thread (5.4 against 0.4 on a busy 2-core machine);
# writing costs what bicubic did (2.1 ms; ACCURATE_RND there changed nothing measurable). A frame
# of another size (a stream that changes size) is scaled, with bicubic.
READ_INTERPOLATION = 0x10 | 0x2000 | 0x40000      # POINT | FULL_CHR_H_INT | ACCURATE_RND
RESIZE_INTERPOLATION = 0x4 | 0x2000 | 0x40000     # BICUBIC | FULL_CHR_H_INT | ACCURATE_RND
WRITE_INTERPOLATION = 0x20                        # AREA
#: Encoders whose point is to lose nothing: a source format they lack goes to the nearest they take.
LOSSLESS_ENCODERS = ("ffv1", "ffvhuff", "huffyuv", "utvideo", "magicyuv")
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
#: Presets checked before the encoder opens (an unknown one otherwise fails as "Invalid argument").
KNOWN_PRESETS = {"libx264": _X26X_PRESETS, "libx264rgb": _X26X_PRESETS, "libx265": _X26X_PRESETS}
# Encoder-specific CRF defaults, about "visually lossless" for each (x264's own default is 23). For
# NVENC it is the constant-quality target "cq": without one NVENC aims at 2 Mb/s whatever the picture.
DEFAULT_CRF = {"libx264": 18, "libx264rgb": 18, "libx265": 20, "libsvtav1": 30, "libvpx-vp9": 24,
               "h264_nvenc": 19, "hevc_nvenc": 21, "av1_nvenc": 30}
# DNxHR, by pixel format: high quality 8-bit 4:2:2, 10-bit 4:2:2, and 4:4:4 (what editors ingest).
DNXHR_PROFILES = {"yuv422p": "dnxhr_hq", "yuv422p10le": "dnxhr_hqx", "yuv444p10le": "dnxhr_444", "gbrp10le": "dnxhr_444"}
# What a hardware encoder needs, by the device type FFmpeg names for it.
_HARDWARE = {"cuda": "an NVIDIA GPU with NVENC and its driver", "qsv": "an Intel GPU with Quick Sync and its runtime",
             "amf": "an AMD GPU with its AMF runtime", "vaapi": "a VA-API device", "videotoolbox": "macOS VideoToolbox",
             "d3d11va": "a Windows GPU (Media Foundation)", "vulkan": "a Vulkan video device"}
_HARDWARE_CAPS = av.codec.codec.Capabilities.hardware.value | av.codec.codec.Capabilities.hybrid.value


#: Still-image outputs (a deblurred photo, or each frame of an image sequence): PNG, TIFF and DPX keep
#: 16 bits, JPEG is written at q 2.
IMAGE_CODECS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".dpx": "dpx",
                ".webp": "libwebp"}


def check_sequence_suffix(label, suffix: str) -> None:
    """An output name with %d in it is an image sequence: its suffix must be an image format's."""
    if suffix.lower() not in IMAGE_CODECS:
        raise VdeblurError(f"{label}: an image sequence is written as {', '.join(sorted(set(IMAGE_CODECS)))} "
                           f"files; a video's name has no %d in it")


def codec_for_suffix(suffix: str) -> str:
    """The encoder when none is asked for: H.264 plays everywhere, but WebM holds only VP8, VP9 and AV1,
    and an image suffix means that image format."""
    if suffix in IMAGE_CODECS:
        return IMAGE_CODECS[suffix]
    if suffix == ".webm":
        return "libsvtav1" if "libsvtav1" in av.codecs_available else "libvpx-vp9"
    if suffix == ".y4m":   # YUV4MPEG holds raw pictures only
        return "rawvideo"
    if suffix in (".265", ".hevc") and "libx265" in av.codecs_available:   # an HEVC elementary stream
        return "libx265"
    return "libx264"


#: Errors of the file or the disk rather than the format or the encoder (a full disk, a closed pipe).
_FILE_ERRNOS = {getattr(errno, name) for name in ("ENOENT", "EACCES", "EPERM", "ENOSPC", "EROFS", "EPIPE", "EIO",
                                                 "EDQUOT", "EISDIR", "ENOTDIR") if hasattr(errno, name)}


def _open_error(path: str, e: Exception) -> VdeblurError:
    if isinstance(e, FileNotFoundError):
        return VdeblurError(f"{path}: no such file")
    if isinstance(e, IsADirectoryError):
        return VdeblurError(f"{path}: is a directory, not a video file")
    if isinstance(e, PermissionError):
        return VdeblurError(f"{path}: permission denied")
    reason = getattr(e, "strerror", None) or str(e)
    if isinstance(e, av.error.InvalidDataError):
        reason += ": not a video, or truncated/damaged"
    return VdeblurError(f"{path}: not a readable video file ({reason})")


def _clean_tags(tags: dict) -> dict:
    return {k: v for k, v in tags.items() if not k.lower().startswith(_STALE_TAGS)}


def _stream_tags(tags: dict) -> dict:
    """A stream's tags to copy. QuickTime's track name reads back as "name", but muxers write a track's
    name from "title" (Matroska's track name, QuickTime's again): "Commentary" was lost on the way."""
    tags = _clean_tags(tags)
    if "name" in tags and "title" not in tags:
        tags["title"] = tags.pop("name")
    return tags


@dataclass(frozen=True)
class DecodedFrame:
    """One RGB frame and the timing it must keep (pts/duration in ``time_base`` units), with the
    source's alpha plane (same dtype, (H, W)) where it has one: the model deblurs colour only."""

    image: np.ndarray
    pts: int
    duration: int
    time_base: Fraction
    alpha: np.ndarray | None = None
    captions: av.VideoFrame | None = None   # a 2x2 copy of the decoded frame, holding its closed captions


@dataclass(frozen=True)
class VideoInfo:
    """What the writer needs to reproduce the source faithfully; read from the first decoded frame."""

    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    codec: str
    time_base: Fraction
    rate: Fraction | None
    frames: int | None          # expected frame count (container's count, else duration x rate), None if unknown
    color_range: int
    colorspace: int
    color_primaries: int
    color_trc: int
    sample_aspect_ratio: Fraction | None
    display_matrix: tuple[int, ...] | None
    hdr10: HDR10 | None = None   # mastering display and light levels, from the frame's side data
    dynamic_hdr: tuple[str, ...] = ()   # per-scene HDR metadata present (not kept)
    interlaced: bool = False   # two fields per frame, from different moments
    linear_light: bool = False   # OpenEXR: decoded to sRGB-coded values (see VideoReader._setup)
    alpha: bool = False        # the pixel format has an alpha plane (GIF's decoder always gives one)
    transparent: bool = False  # and the first frame uses it: some pixel is not fully opaque
    icc_profile: bytes | None = None   # a photo's ICC colour profile (Display P3, Adobe RGB), from the first frame
    exif: bytes | None = None   # a photo's EXIF tags (camera, time taken), orientation taken out by FFmpeg
    frames_counted: bool = False   # ``frames`` is the container's own count, not an estimate (VFR makes those wrong)
    seconds: float | None = None   # length of the part to be read, as the container announces it
    seconds_of_all_streams: bool = False   # ``seconds`` is the container's, up to its longest stream's end

    @property
    def high_bit_depth(self) -> bool:
        return self.bit_depth > 8


def has_alpha(pix_fmt: str) -> bool:
    return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)


def is_transparent(alpha: np.ndarray) -> bool:
    return int(alpha.min()) < np.iinfo(alpha.dtype).max


def alpha_not_kept(pix_fmt: str, frames: int | None = None) -> str:
    which = f"of {frames} frame{'s' if frames != 1 else ''} " if frames else ""
    return (f"the source's transparency (alpha) {which}is not kept: {pix_fmt} has none; "
            f"ProRes 4444 (.mov, --codec prores_ks), FFV1 (.mkv) and PNG keep it")


def check_part(start: float | None, duration: float | None) -> None:
    """``--start`` and ``--duration`` (seconds); written so that NaN fails too."""
    if start is not None and not 0 <= start < math.inf:
        raise VdeblurError(f"--start must be a number of seconds >= 0, got {start}")
    if duration is not None and not duration > 0:
        raise VdeblurError(f"--duration must be > 0, got {duration}")


def _pictures(container) -> bool:
    """Whether FFmpeg reads this input as image files (a photo, or numbered ones), not as a video."""
    return container.format.name == "image2" or container.format.name.endswith("_pipe")


def keeps_no_rotation(path: str | os.PathLike) -> bool:
    """Image files (one, or numbered ones) hold no display matrix: a rotation must be in their pixels."""
    return sequence.is_sequence(path) or Path(path).suffix.lower() in IMAGE_SUFFIXES


def orientation(matrix: tuple[int, ...]) -> tuple[bool, bool, bool] | None:
    """(transpose, flip left-right, flip top-bottom), in that order, that show stored pixels the way a
    display matrix says, or None where it shows them as they are or turns them by other than right
    angles. A point (x, y) is shown at (a x + c y, b x + d y) for the matrix's (a, b, c, d)."""
    a, b, c, d = (int(np.sign(v)) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    if a and d and not b and not c:
        steps = (False, a < 0, d < 0)
    elif b and c and not a and not d:
        steps = (True, c < 0, b < 0)
    else:
        return None
    return steps if any(steps) else None


#: Seconds an encoder may decode a frame before showing it (B-frame reordering is a few frames).
LATE_PACKETS_S = 60.0   # how far past a part's end the demuxer still looks for its audio (badly interleaved files)
_LONGEST_REORDER = 60
_REORDER_FRAMES = 40   # x264 and x265 delay at most 16 B-frames plus lookahead reordering


def repair_dts(packet: av.Packet) -> None:
    """A DTS after its packet's PTS, or more than a minute before, is garbage: the PTS stands in for it.
    libx265 gives one in five encodes of exactly two frames such a DTS (1e17 off; the pictures are
    fine), and a resumable run's last segment can hold two frames: the muxer refused it at the very end."""
    if packet.dts is None or packet.pts is None or not packet.time_base:
        return
    # A slow time-lapse (--fps 0.05: 20 s a frame) reorders over minutes: the limit is frames too.
    longest = max(_LONGEST_REORDER, _REORDER_FRAMES * (packet.duration or 0) * packet.time_base)
    if not 0 <= (packet.pts - packet.dts) * packet.time_base <= longest:
        packet.dts = packet.pts


#: Decoders whose EXIF side data is the photo's own tags (camera, time taken, place).
_EXIF_DECODERS = ("mjpeg", "png", "webp", "libwebp")


#: Faster than any camera's playback rate (phones' slow motion is 240 fps).
IMPLAUSIBLE_RATE = 240


def _tag_seconds(value) -> float | None:
    """A Matroska DURATION tag ("00:01:02.500000000") in seconds; None if absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        h, m, sec = value.strip().split(":")
        seconds = int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None
    return seconds if seconds > 0 and math.isfinite(seconds) else None


def frame_rate(stream) -> Fraction | None:
    """The stream's average frame rate (VFR's true mean), unless it is implausible: Matroska files
    remuxed from MP4 by tools that copy the codec's time base as the frame duration announce 12800
    fps. Then FFmpeg's guess from the frames' timestamps is taken, as the ffmpeg command does."""
    average, guessed = stream.average_rate, stream.guessed_rate
    if average and guessed and average > IMPLAUSIBLE_RATE and average > 2 * guessed:
        return guessed
    return average or guessed


def is_gray(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("gray", "ya")) and "f" not in pix_fmt[2:]


#: Luma weights of RGB for grey output, by colour matrix tag (FFmpeg's default is BT.601's).
LUMA = {1: (0.2126, 0.7152, 0.0722), 9: (0.2627, 0.6780, 0.0593), 10: (0.2627, 0.6780, 0.0593)}
LUMA_601 = (0.299, 0.587, 0.114)


def _times_in_display_order(frames: Iterator[av.VideoFrame], depth: int = 8) -> Iterator[av.VideoFrame]:
    """Frames with their timestamps handed out in display order. AVI (and ASF) store no presentation time, so
    a frame takes its packet's, in decode order: H.264 with B-frames came out at 0.04, 0.12, 0.16,
    0.08, ..., and the writer dropped the frames that went back. The decoder gives the pictures in
    display order; the set of times is right; so each frame takes the earliest time among those of
    the next ``depth`` frames. Times already in order come out unchanged."""
    held: deque = deque()
    times: list[int] = []
    for frame in frames:
        held.append(frame)
        if frame.pts is not None:
            heapq.heappush(times, frame.pts)
        if len(held) > depth:
            yield _earliest_time(held.popleft(), times)
    while held:
        yield _earliest_time(held.popleft(), times)


def _earliest_time(frame: av.VideoFrame, times: list[int]) -> av.VideoFrame:
    if frame.pts is not None:
        frame.pts = heapq.heappop(times)
    return frame


#: 8-bit planar YUV formats written in full range by :func:`_full_range_frame`.
_FULL_RANGE_PLANAR = {f"yuv{j}{s}p" for j in ("", "j") for s in ("420", "422", "444", "440", "411", "410")}


def _full_range_frame(image: np.ndarray, pix_fmt: str, colorspace: int) -> av.VideoFrame | None:
    """8-bit RGB as full-range planar YUV, rounded; None for other formats. swscale truncates
    full-range chroma whatever its flags: half of all Cb/Cr values came out 1 low, which tinted
    JPEGs and full-range (phone) video green. Chroma is averaged over the block it covers, as AREA.
    It costs 20 ms per 720p frame against swscale's 2, for full-range output only."""
    if image.dtype != np.uint8 or pix_fmt not in _FULL_RANGE_PLANAR:
        return None
    height, width = image.shape[:2]
    kr, kg, kb = LUMA.get(colorspace, LUMA_601)
    rgb = image.astype(np.float32)
    luma = rgb @ np.asarray((kr, kg, kb), np.float32)
    blue = (rgb[..., 2] - luma) / (2 * (1 - kb)) + 128
    red = (rgb[..., 0] - luma) / (2 * (1 - kr)) + 128
    frame = av.VideoFrame(width, height, pix_fmt)
    step_x, step_y = 64 // frame.format.chroma_width(64), 64 // frame.format.chroma_height(64)
    for plane, values in zip(frame.planes, (luma, _block_mean(blue, step_x, step_y), _block_mean(red, step_x, step_y))):
        _rows(plane)[:, :plane.width] = np.clip(np.rint(values[:plane.height, :plane.width]), 0, 255)
    frame.colorspace, frame.color_range = colorspace, 2
    return frame


def _block_mean(values: np.ndarray, step_x: int, step_y: int) -> np.ndarray:
    """The mean of each step_y x step_x block; blocks cut by an odd edge average what they hold."""
    if step_x == step_y == 1:
        return values
    height, width = values.shape
    padded = np.pad(values, ((0, -height % step_y), (0, -width % step_x)), mode="edge")
    return padded.reshape(padded.shape[0] // step_y, step_y, padded.shape[1] // step_x, step_x).mean(axis=(1, 3))


def _put_alpha(frame: av.VideoFrame, alpha: np.ndarray) -> None:
    """Write ``alpha`` (uint8 or uint16, full scale) into a planar YUVA frame's alpha plane, scaled
    to its depth: what came in goes out, where swscale's conversion moves half the values by 1."""
    bits = frame.format.components[3].bits
    if bits > 8 and not frame.format.name.endswith("le"):
        return
    top = (1 << bits) - 1
    source_top = np.iinfo(alpha.dtype).max
    values = alpha if top == source_top else np.rint(alpha.astype(np.float32) * (top / source_top))
    plane = frame.planes[3]
    dtype = np.dtype("<u2") if bits > 8 else np.dtype(np.uint8)
    _rows(plane, dtype)[:, :plane.width] = values.astype(dtype)


def _unsited(frame: av.VideoFrame) -> av.VideoFrame:
    """A subsampled frame's pixels and colour tags without its chroma location (see
    READ_INTERPOLATION): the writer's frames have none, and swscale places chroma by it."""
    fmt = frame.format
    if fmt.chroma_width(frame.width) == frame.width and fmt.chroma_height(frame.height) == frame.height:
        return frame
    copy = av.VideoFrame(frame.width, frame.height, fmt.name)
    for source, target in zip(frame.planes, copy.planes):   # row by row: the two may pad rows differently
        width = min(source.line_size, target.line_size)
        _rows(target)[:, :width] = _rows(source)[:, :width]
    copy.colorspace, copy.color_range = frame.colorspace, frame.color_range
    return copy


def _rows(plane, dtype: np.dtype = np.dtype(np.uint8)) -> np.ndarray:
    """A frame plane's memory as rows of ``dtype`` samples, padding included (writable where the plane is)."""
    return np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)


def _packed_frame(array: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """A frame of a one-plane, little-endian format that PyAV's from_ndarray lacks (grey + alpha)."""
    height, width = array.shape[:2]
    frame = av.VideoFrame(width, height, pix_fmt)
    plane = frame.planes[0]
    rows = np.zeros((height, plane.line_size), np.uint8)
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).view(np.uint8).reshape(height, -1)
    rows[:, :data.shape[1]] = data
    plane.update(rows)
    return frame


def _bit_depth(fmt: av.VideoFormat) -> int:
    return max(c.bits for c in fmt.components) if fmt.components else 8


def _animated_webp(path: str) -> bool:
    """A RIFF WebP with an animation chunk (ANIM comes right after the VP8X header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP" and b"ANIM" in head


def prepare_decoder(stream) -> None:
    """Decoder settings for every reader of a video stream, the read-back's included."""
    stream.thread_type = "AUTO"   # frame + slice threads: 496 -> 721 fps decode at 720p (notes 5.1)
    if stream.codec_context.name == "exr":
        # OpenEXR holds linear light; the model (like the eye) works on gamma-coded pictures, so
        # FFmpeg's decoder applies the sRGB curve and tags the frames so.
        stream.codec_context.options = {"apply_trc": "iec61966_2_1"}


def _palette_has_alpha(frame: av.VideoFrame) -> bool:
    """Whether a pal8 frame's palette (256 native-endian ARGB words) has an entry not fully opaque."""
    palette = np.frombuffer(frame.planes[1], np.uint32)[:256]
    return bool((palette >> 24).min() < 255)


_TS_DISCONT = 0x0200   # AVFMT_TS_DISCONT: timestamps may restart (MPEG-TS, MPEG-PS)


class _RestartCheck:
    """Refuses a stream whose timestamps restart: recordings joined end to end, or a splice. The
    output keeps the input's timestamps, so every frame after the restart would come out of order
    and be dropped, half the video lost with the model's work on it. One stray timestamp is not a
    restart (its frame alone is dropped): it takes ``FRAMES`` in a row, ``SECONDS`` or more back."""

    SECONDS, FRAMES = 0.05, 3

    def __init__(self, path: str):
        self.path, self.latest, self.behind, self.back_to = path, None, 0, None

    def check(self, t: float | None) -> None:
        if t is None:
            return
        if self.latest is not None and t < self.latest - self.SECONDS:
            self.behind += 1
            if self.behind == 1:
                self.back_to = t
            if self.behind >= self.FRAMES:
                raise VdeblurError(
                    f"{self.path}: its timestamps restart (from {self.latest:.2f} s back to {self.back_to:.2f} s): joined or "
                    "spliced recordings; vdeblur keeps a file's timestamps, so join them into one timeline first "
                    "(ffmpeg -i IN -c copy OUT.mkv does) or deblur each part")
            return
        self.behind = 0
        self.latest = t if self.latest is None else max(self.latest, t)


class VideoReader:
    """Decode the first video stream of ``path`` to RGB; pass the other streams' packets through.

    ``start``/``duration`` (seconds) select a part; output timestamps are then shifted so the
    part starts at 0. ``path`` may be an image sequence (``f_%04d.png``, :mod:`vdeblur.sequence`),
    read at ``rate`` frames per second. Use ``items()`` once, from one thread.
    """

    def __init__(self, path: str | os.PathLike, start: float | None = None, duration: float | None = None,
                 rate: Fraction | None = None, deinterlace: str = "auto", double_rate: bool = False,
                 field_order: str | None = None, weaving: bool = False, upright: bool = False):
        self.upright = upright   # turn a video's rotation into its pixels: the output (image files) keeps none
        self._abandoned = False
        self.path = "standard input" if str(path) == STDIO else str(path)   # the name messages give
        self._pipe = str(path) == STDIO
        check_part(start, duration)
        self.deinterlace = check_deinterlace(deinterlace)   # a --deinterlace mode (vdeblur.deinterlace)
        self.double_rate = double_rate
        self.weaving = weaving   # double rate's frames will be woven back into the source's (--reinterlace)
        self.field_order = field_order   # what idet found, over the flags' (vdeblur.deinterlace.Detection.order)
        #: One frame per field (an interlaced stream under double_rate): decided at the first frame.
        self.doubling: bool | None = None
        self.deinterlaced_frames = 0   # frames delivered that bwdif rebuilt from interlaced ones
        #: An input sequence's number of the first frame read (None for a video file).
        self._sequence_numbers = sequence.check_input(path) if sequence.is_sequence(path) else None
        self.sequence_start = self._sequence_numbers[0] if self._sequence_numbers else None
        # Pictures whose EXIF can turn them: those vdeblur writes tags into
        self._sequence_exif = self.sequence_start is not None and Path(str(path)).suffix.lower() in photo_tags.SUFFIXES
        self._first_orientation: tuple[Path, int] | None = None   # (file, EXIF orientation) of a sequence's first
        if self.sequence_start is None and rate is not None:
            raise VdeblurError(f"--fps is for an image sequence (such as frames/%04d.png); {self.path} has its own timing")
        opening = {} if self.sequence_start is None else sequence.open_options(path, rate, self.sequence_start)
        if not self._pipe and self.sequence_start is None and "://" not in self.path:
            check_not_special(self.path)
        try:
            self.container = av.open("pipe:0" if self._pipe else self.path, "r", **opening)
        except (av.error.FFmpegError, OSError) as e:
            error = _open_error(self.path, e)
            if self._pipe:   # an MP4 whose index (moov) is at the end cannot be read in one pass
                error = VdeblurError(f"{error}; from a pipe, MP4 and MOV need their index first (ffmpeg "
                                     f"-movflags +faststart), and Matroska, MPEG-TS and NUT always work")
            raise error from None
        try:
            self._setup(start, duration)
        except BaseException:
            self.container.close()
            raise

    def _setup(self, start, duration):
        c = self.container
        # Cover art is a one-picture "video" stream; the movie is the first stream that is not.
        movies = [s for s in c.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not movies:
            kinds = ", ".join(sorted({s.type for s in c.streams})) or "no streams"
            art = " and cover art" if c.streams.video else ""
            raise VdeblurError(f"{self.path}: has no video stream ({kinds}{art})")
        self.stream = vs = movies[0]
        if vs.codec_context is None:
            raise VdeblurError(f"{self.path}: its video codec cannot be decoded by this FFmpeg build")
        prepare_decoder(vs)
        # The demuxer marks streams it will never deliver (mp4 chapter text tracks: the chapters are
        # copied as chapters) with discard=all.
        # Other video streams (a second angle, cover art) are copied as they are.
        self.copy_streams = [s for s in c.streams if s is not vs and int(s.discard) < _DISCARD_ALL
                             and (s.type in COPY_TYPES or s.type == "video")]
        self._audio_copied = {s.index for s in self.copy_streams if s.type == "audio"}
        self._audio_past_end: set[int] = set()
        self._passed_video = False   # passthrough_packets() has seen the video pass the part
        self.corrupt_packets = 0
        self.corrupt_frames = 0
        self.resized_frames = 0   # frames of another size than the first, scaled to it
        self.transparent_frames = 0   # frames with some pixel not fully opaque
        self.caption_frames = 0   # frames that carried closed captions (A53 side data)
        self.end_time: float | None = None   # where the last frame converted so far ends (seconds)
        self.packets_end: float | None = None   # where the last packet of any stream read so far ends
        # Frame slots between pictures with none of their own: an AVI's empty chunks ("show the last
        # picture again"), which its header counts as frames and the demuxer drops.
        self.held_frames = 0
        self._next_pts: int | None = None
        self.other_size: tuple[int, int, int] | None = None   # (width, height, frame index) of the first such
        self._index = 0   # frames converted so far (timestamps for streams without them)
        self._skipped = 0   # frames a resumed run does not decode again
        # --start and --duration count from the file's start, as FFmpeg's -ss does: an MPEG-TS often
        # starts at 1.4 s (broadcast: hours in), and its first frame is --start 0.
        self.origin = c.start_time / av.time_base if c.start_time is not None and (start or duration) else 0.0
        self.requested_start = float(start or 0.0)
        self.start = self.origin + self.requested_start   # on the file's timeline, as timestamps are
        self.end = self.start + duration if duration is not None else None
        self._shift = start is not None   # a part starts at 0; a whole file keeps its own timeline
        # One shift for every stream, on the video's grid and not past start (so nothing kept goes
        # negative): each stream rounding start to its own time base would move a coarse one (AVI:
        # 1/25 video, 26 ms mp3 packets) by a different amount, up to 33 ms of lost sync.
        self._shift_s = Fraction(0)
        if abs(self.start) < 1e12:   # a start past any timestamp (inf) is the seek's below to refuse
            self._shift_s = (Fraction(math.floor((self.start + 1e-6) / vs.time_base)) * vs.time_base
                             if vs.time_base else Fraction(self.start))
        self._trimmed_to: dict[int, int] = {}   # per subtitle stream, where the last cue trimmed to the start begins
        if start and not self._pipe:   # a pipe cannot seek: frames before start are decoded and dropped
            try:
                self._seek(int(self.start / vs.time_base) - 1)   # the frame before too (deinterlacing)
            except av.error.FFmpegError as e:
                raise VdeblurError(f"{self.path}: cannot seek to {start} s ({e.strerror})") from None
            except OverflowError:   # beyond any timestamp the stream can hold
                length = self._length()
                raise VdeblurError(f"--start {start:g} is past the end of {self.path}"
                                   + (f" ({length:.2f} s long)" if length is not None else "")) from None
        self._frames = self._decoded_frames()
        try:
            first = next(self._frames)
        except StopIteration:
            length = self._length()
            if start and length is not None and start >= length:
                raise VdeblurError(f"--start {start:g} is past the end of {self.path} ({length:.2f} s long)") from None
            if self._video_done:   # frames before the part and after it, none inside
                raise VdeblurError(f"{self.path}: no video frame starts between {self.requested_start:g} and "
                                   f"{self.end - self.origin:g} s "
                                   f"(--start and --duration select a part shorter than a frame)") from None
            if start and self._before_start is not None:   # the last frame starts before --start and ends after it
                ends = f", and the video ends at {length:.3f} s" if length else ""
                raise VdeblurError(f"--start {start:g}: no video frame of {self.path} starts at or after it (the last "
                                   f"starts at {self._before_start - self.origin:.3f} s{ends})") from None
            where = f" after {start} s" if start else ""
            if _animated_webp(self.path):
                raise VdeblurError(f"{self.path}: an animated WebP, which this FFmpeg cannot decode (it reads still WebP "
                                   f"only); convert it to a video or to numbered images first") from None
            if self.corrupt_packets and _pictures(c):   # one picture, which its decoder refused
                raise VdeblurError(f"{self.path}: FFmpeg's {vs.codec_context.name} decoder cannot read this picture: "
                                   f"a kind it does not support (such as floating-point samples) or a damaged "
                                   f"file; save it as 8- or 16-bit PNG or TIFF") from None
            raise VdeblurError(f"{self.path}: no decodable video frame{where} (truncated or corrupt file?)") from None
        self._first = first
        self.doubling = bool(self.deinterlacer.doubling)
        per_frame = 2 if self.doubling else 1   # frames out per frame in
        self.first_time = first.time or 0.0   # where the part starts (resumed runs too: skip_to comes later)
        if self.sequence_start is not None:   # a sequence's frame n has pts n - first, in 1/rate units
            self.sequence_start += first.pts or 0
        fmt = first.format
        self.rgb_format = "rgb24"
        found = side_data(first)
        self.captioned = "A53_CC" in found   # closed captions in the first frame (most captioned streams)
        # Each frame is looked at only where captions can be and no ICC profile is: reading side data
        # that has a profile off the decoded frame itself crashes PyAV 18 (see hdr.side_data).
        self._look_for_captions = vs.codec_context.name in CAPTION_DECODERS and "ICC_PROFILE" not in found
        matrix = struct.unpack("=9i", found["DISPLAYMATRIX"][:36]) if "DISPLAYMATRIX" in found else None
        # A photo's EXIF orientation: image files keep none, so the pixels are turned upright here, and
        # so are a video's written as image files. Into a video the display matrix is written again
        # instead, as players expect.
        pictures = _pictures(c) or self.sequence_start is not None or self.upright
        self.orientation = orientation(matrix) if pictures and matrix is not None else None
        # Turned only because the caller asked (a video's rotation; a photo's EXIF turn is always made)
        self.turned_on_request = bool(self.orientation) and not (_pictures(c) or self.sequence_start is not None)
        self.stored_size = (first.width, first.height)   # before turning upright
        width, height = self.stored_size[::-1] if self.orientation and self.orientation[0] else self.stored_size
        cc = vs.codec_context
        rate, frames = frame_rate(vs), self._expected_frames(duration, per_frame)
        first_alpha = first.to_ndarray(format="rgba", threads=1)[..., 3] \
            if has_alpha(fmt.name) or fmt.name == "pal8" else None
        transparent = first_alpha is not None and is_transparent(first_alpha)
        self.info = VideoInfo(
            width=width, height=height, pix_fmt=fmt.name, bit_depth=_bit_depth(fmt),
            codec=cc.name, time_base=vs.time_base / per_frame, rate=rate * per_frame if rate else None,
            frames=frames, frames_counted=self._counted(duration), seconds=self._span(duration),
            seconds_of_all_streams=self._length_spans_streams(),
            color_range=int(first.color_range), colorspace=int(first.colorspace),
            color_primaries=int(first.color_primaries), color_trc=int(first.color_trc),
            sample_aspect_ratio=vs.sample_aspect_ratio or cc.sample_aspect_ratio,   # MP4's pasp box first, as players
            display_matrix=None if self.orientation else matrix,
            hdr10=read_hdr10(found), dynamic_hdr=read_dynamic_hdr(found), interlaced=self.deinterlacer.saw_interlaced,
            linear_light=cc.name == "exr",
            alpha=has_alpha(fmt.name) or transparent,   # a palette's transparent entries (PNG's tRNS) too
            transparent=transparent,
            icc_profile=found.get("ICC_PROFILE") or None,
            # A TIFF's "EXIF" is its own file structure (strips, sizes), not tags about the photo
            exif=(found.get("EXIF") or found.get("UNKNOWN_31") or None) if cc.name in _EXIF_DECODERS else None,
        )

    @property
    def woven(self) -> bool:
        """Whether two frames delivered make one frame written: interlaced input under --reinterlace."""
        return bool(self.weaving and self.doubling)

    @property
    def per_input_frame(self) -> int:
        """Frames delivered per frame of the input: 2 where woven back, whose counts (frames, captions,
        resized frames) are said in the input's frames."""
        return 2 if self.woven else 1

    def use_rgb16(self, wide: bool) -> None:
        """Deliver deeper-than-8-bit video as uint16 RGB (for a backend that takes it)."""
        self.rgb_format = "rgb48le" if wide and self.info.high_bit_depth else "rgb24"

    def _length(self) -> float | None:
        """Seconds of video the container announces, if it does: the stream's own length, or its
        DURATION tag (Matroska, WebM), else the container's. The last two are an end on the file's
        timeline, so a video that starts late is shorter (see :meth:`seconds_expected`)."""
        vs = self.stream
        if vs.duration:
            return float(vs.duration * vs.time_base)
        tagged = _tag_seconds(vs.metadata.get("DURATION") or vs.metadata.get("duration"))
        if tagged is not None:   # FFmpeg writes where the track ends, on the file's timeline
            return tagged
        return self.container.duration / av.time_base if self.container.duration else None

    def _length_spans_streams(self) -> bool:
        """True where :meth:`_length` could only take the container's length, which ends with its
        longest stream: an audio track that runs on past the video is not a truncated video."""
        vs = self.stream
        return not vs.duration and _tag_seconds(vs.metadata.get("DURATION") or vs.metadata.get("duration")) is None \
            and len(self.container.streams) > 1

    def _counted(self, duration: float | None) -> bool:
        return duration is None and not self.requested_start and self.stream.frames > 0

    @property
    def _photo(self) -> bool:
        """One picture file, not a video or a numbered sequence."""
        return self.sequence_start is None and _pictures(self.container)

    def _span(self, duration: float | None) -> float | None:
        total = self._length()
        if total is None:   # a pipe's length is what was asked for; a photo's is not a length at all
            return None if self._photo else duration
        span = max(0.0, total - self.requested_start)
        return span if duration is None else min(span, duration)

    @property
    def seconds_expected(self) -> float | None:
        """The announced length of the part, counted from its first frame as :attr:`seconds_read` is."""
        if self.info.seconds is None:
            return None
        if self.stream.duration:   # the stream's own length already counts from its first frame
            return self.info.seconds
        return self.info.seconds - max(0.0, self.first_time - self.start)

    @property
    def seconds_read(self) -> float | None:
        """Seconds of video from the part's first frame to the end of the last frame converted."""
        if self.end_time is None:
            return None
        end = self.end_time
        if self.info.seconds_of_all_streams and self.packets_end is not None:
            end = max(end, self.packets_end)   # then the announced length ends with the longest stream
        return end - self.first_time

    def _expected_frames(self, duration: float | None, per_frame: int = 1) -> int | None:
        """Frames this reader will deliver: the container's count, or the span at the rate; ``per_frame``
        2 when each field becomes a frame (a part's span holds whole fields, not whole frames)."""
        rate = frame_rate(self.stream)
        if self._counted(duration):
            return self.stream.frames * per_frame
        if self._photo:   # one picture, however long asked
            return per_frame
        span = self._span(duration)
        if span is None or not rate:
            return None
        if not self._shift:
            return max(1, round(span * float(rate) * per_frame))
        # A part: the frames from its first one (a start between frames holds a frame less) up to
        # its end, which no frame starting there belongs to.
        span -= max(0.0, self.first_time - self.start)
        return max(1, math.ceil(span * float(rate) * per_frame - 1e-6))

    # -- decoding --------------------------------------------------------------------------------

    def _decode(self, packet) -> list:
        try:
            return self.stream.decode(packet)
        except av.error.FFmpegError:
            self.corrupt_packets += 1   # damaged packet mid-stream: counted, the rest still decodes
            return []

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Video frames inside [start, end), deinterlaced, with the other streams' packets queued in
        ``_pending``. Frames before ``start`` are deinterlaced too: the first one kept has its neighbour."""
        self._pending: list = []
        self._video_done = False
        self._audio_past_end = set()
        self._before_start: float | None = None   # the time of the last frame dropped for starting before --start
        self.deinterlacer = Deinterlacer(self.deinterlace, self.double_rate, self.doubling,   # a fresh one after a seek
                                         self.field_order)
        first_kept = False   # woven back (--reinterlace), a frame's second field goes where its first went
        self._next_picture: int | None = None   # of a sequence: the index the next decoded picture must have
        decoded = self._all_frames()
        if self.container.format.name in ("avi", "asf"):   # containers without presentation times
            decoded = _times_in_display_order(decoded)
        for frame in self.deinterlacer.process(decoded):
            if self.weaving and self.deinterlacer.second_field:
                if first_kept:
                    yield frame
                continue
            first_kept = False
            t = frame.time
            if self._shift and t is not None and t < self.start - 1e-6:
                self._before_start = t
                continue
            if self.end is not None and t is not None and t >= self.end - 1e-6:
                self._video_done = True   # decoding stops; the demuxer goes on queuing the part's packets
                continue
            first_kept = True
            yield frame

    def _all_frames(self) -> Iterator[av.VideoFrame]:
        restart = _RestartCheck(self.path) if self.container.format.flags & _TS_DISCONT else None
        for packet in self._demux():
            if packet.stream is not self.stream:
                if packet.size and self._wanted(packet):
                    self._pending.append(packet)
                continue
            if self._video_done:
                continue
            for frame in self._decode(packet):
                if frame.is_corrupt:
                    self.corrupt_frames += 1
                if restart is not None:
                    restart.check(frame.time)
                if self._sequence_numbers is not None and frame.pts is not None:
                    if self._sequence_exif:
                        self._check_orientation(self._picture_path(frame.pts))
                    self._check_picture_number(frame.pts)
                yield frame
        if self._sequence_numbers is not None and not self._video_done:
            self._check_picture_number(len(self._sequence_numbers))   # the last pictures decoded too

    def _check_orientation(self, path: Path) -> None:
        """Every picture of a sequence is turned upright as the first one is (one video, one shape):
        one whose EXIF orientation differs would come out sideways, or turn one already upright."""
        from PIL import Image

        try:
            with Image.open(path) as im:
                turn = photo_tags.exif_orientation(im, past_pixels=False)   # once a frame: no decoding
        except (OSError, ValueError, SyntaxError):   # unreadable here: the decoder has its own say
            return
        if turn is None:
            return
        if self._first_orientation is None:
            self._first_orientation = (path, turn)
        first = self._first_orientation
        if turn != first[1]:
            raise VdeblurError(f"{path}: its EXIF orientation ({turn}) differs from the first picture's ({first[1]}, "
                               f"{first[0].name}), and a sequence is one video of one shape; give the pictures as "
                               "separate INPUTs instead (vdeblur deblur DIR/*.jpg -o OUTDIR/), each turned on its own")

    def _picture_path(self, index: int) -> Path:
        """The file of a sequence's picture ``index`` (its pts: 0 for the first)."""
        return sequence.file_name(Path(self.path), self.sequence_start + index)

    def _check_picture_number(self, index: int) -> None:
        """In a sequence each file is a frame, numbered as it is: a picture that does not decode
        (the decoder's threads may report it late, or not at all) would shift every later frame's
        number in the output, so it stops the run, named."""
        expected = self._next_picture
        if expected is not None and index > expected:
            raise VdeblurError(f"{self._picture_path(expected)}: this picture of the sequence cannot be decoded (damaged?); every file is a "
                               "frame, numbered as it is, so replace it (a copy of a neighbour will do)")
        self._next_picture = index + 1

    def _demux(self):
        """Packets in file order; a damaged container stops here with what was read, counted as corrupt."""
        demux = self.container.demux(self.stream, *self.copy_streams)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except av.error.FFmpegError:
                self.corrupt_packets += 1
                return
            if packet.pts is not None and packet.time_base:
                if self._past_part(packet, self._video_done):
                    return
                packet_end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                if self.end is not None:
                    packet_end = min(packet_end, self.end)
                self.packets_end = packet_end if self.packets_end is None else max(self.packets_end, packet_end)
            yield packet

    def _past_part(self, packet: av.Packet, video_done: bool) -> bool:
        """Whether demuxing can stop at ``packet``: the video is done and every audio stream has
        reached the part's end. A file may carry its audio seconds behind the video; waiting for a
        fixed time past the end lost what came later. Past ``LATE_PACKETS_S`` nothing more is awaited
        (an audio stream that ends early would otherwise be read to the end of the file)."""
        if self.end is None:
            return False
        t = float(packet.pts * packet.time_base)
        if packet.stream.type == "audio" and t >= self.end - 1e-6:
            self._audio_past_end.add(packet.stream.index)
        return video_done and (t > self.end + LATE_PACKETS_S or self._audio_past_end >= self._audio_copied)

    def _wanted(self, packet: av.Packet) -> bool:
        """Whether a copied packet lies inside the part. A subtitle still on screen where the part starts
        is kept too, from the start on: its timing is trimmed (here), its text is not."""
        pts, time_base = packet.pts, packet.time_base
        if pts is None or not time_base:
            return True
        t = float(pts * time_base)   # a whole file keeps everything, audio priming before 0 included
        if self.end is not None and t >= self.end:
            return False
        if not self._shift or t >= self.start - 1e-6:
            return True
        if packet.stream.type != "subtitle" or not packet.duration \
                or float((pts + packet.duration) * time_base) <= self.start + 1e-6:
            return False
        # Two cues on screen at the start would both begin there, and MP4 drops a packet with the dts of
        # the one before: each further cue begins a tick later.
        begin = max(round(self.start / time_base), self._trimmed_to.get(packet.stream.index, -1) + 1)
        if pts + packet.duration <= begin:
            return False
        self._trimmed_to[packet.stream.index] = begin
        packet.duration = pts + packet.duration - begin
        packet.pts = packet.dts = begin
        return True

    def _shifted(self, ts: int | None, time_base: Fraction) -> int | None:
        if ts is None or not self._shift:
            return ts
        return ts - self._offset(time_base)

    def _offset(self, time_base: Fraction) -> int:
        """The shift of a part's timeline, in ticks of ``time_base``."""
        return round(self._shift_s / time_base) if self._shift else 0

    def to_rgb(self, frame: av.VideoFrame) -> DecodedFrame:
        # Source matrix and range come from the frame's tags (PyAV >= 17, #2230/#2149); threads=1
        # is faster than swscale's auto threads while decode threads run (621 vs 396 fps, #2200).
        width, height = self.stored_size
        if (frame.width, frame.height) != (width, height):   # a stream that changes size
            self.resized_frames += 1
            self.other_size = self.other_size or (frame.width, frame.height, self._index)
        wide = self.rgb_format == "rgb48le"
        image = _unsited(frame).to_ndarray(format=("rgba64le" if wide else "rgba") if self.info.alpha else self.rgb_format,
                                 width=width, height=height, threads=1, interpolation=READ_INTERPOLATION
                                 if (frame.width, frame.height) == (width, height) else RESIZE_INTERPOLATION)
        if self.orientation:
            image = turned_upright(image, self.orientation)
        alpha = None
        if self.info.alpha:
            image, alpha = np.ascontiguousarray(image[..., :3]), np.ascontiguousarray(image[..., 3])
            self.transparent_frames += is_transparent(alpha)
        elif has_alpha(frame.format.name) or frame.format.name == "pal8" and _palette_has_alpha(frame):
            # alpha the first picture lacked
            self.transparent_frames += is_transparent(frame.to_ndarray(format="rgba", threads=1)[..., 3])
        tb = frame.time_base or self.stream.time_base
        pts, duration = frame.pts, frame.duration or 0
        if pts is None:
            # Elementary streams (.h264, .hevc) have no timestamps: frame n is at n / rate.
            step = 1 / (self.info.rate or 25) / tb
            pts, duration = round(self._index * step), round(step)
        self._index += 1
        if duration and self._next_pts is not None and pts > self._next_pts:
            self.held_frames += round((pts - self._next_pts) / duration)
        self._next_pts = pts + duration
        end = float((pts + duration) * tb)
        self.end_time = end if self.end_time is None else max(self.end_time, end)
        captions = None
        if self._look_for_captions and has_captions(frame):
            self.caption_frames += 1
            # At double rate both fields' frames hold them, and would show them twice, unless woven back.
            if not self.doubling or self.weaving:
                captions = frame.reformat(width=2, height=2, threads=1)   # a copy keeps the side data (with_captions)
        return DecodedFrame(image, self._shifted(pts, tb), duration, tb, alpha, captions)

    def video_frames(self) -> Iterator[av.VideoFrame]:
        """The decoded frames alone, before RGB conversion (`vdeblur bench` times the two apart).
        Use instead of ``items()``, not with it."""
        yield self._first
        yield from self._frames

    def _seek(self, ticks: int) -> None:
        """Seek the video to a keyframe at or before ``ticks`` (its time base). MPEG-TS seeks by
        decode time and can land on the keyframe after (a B-frame stream: 1.16 s for 1.12), or on a
        packet that is no keyframe at all (a long GOP: the decoder then dropped everything up to the
        next one, 2 s of a part, and a resume could never go on): go back a second, then further,
        until the first packet is a keyframe not past ``ticks``; else from the stream's start."""
        c, vs = self.container, self.stream
        back, target = round(1 / vs.time_base), ticks
        lowest = vs.start_time if vs.start_time is not None else 0
        landed = False
        for _ in range(7):
            c.seek(target, stream=vs, backward=True)
            first = next((p for p in itertools.islice(c.demux(), 2000) if p.stream is vs and p.pts is not None), None)
            landed = first is None or (first.is_keyframe and first.pts <= ticks)
            if landed or target <= lowest:
                break
            target, back = target - back, back * 4
        c.seek(target if landed else lowest, stream=vs, backward=True)

    def skip_to(self, frames_done: int, next_pts: int | None) -> None:
        """Start ``items()`` after the first ``frames_done`` frames, at the frame whose (shifted)
        pts is ``next_pts`` (a resumed run). With timestamps the file is seeked there; without
        (elementary streams) the frames before it are decoded and dropped. None left: ``items()``
        yields no frame."""
        self._skipped = frames_done
        if next_pts is None or self._first.pts is None:
            frame = self._first
            for _ in range(frames_done):
                frame = next(self._frames, None)
            self._first = frame
            return
        tb = self._first.time_base or self.stream.time_base
        offset = self._offset(tb)
        position = int((next_pts + offset) * tb / self.stream.time_base)   # one per field counts in half units
        try:   # from a keyframe before the frame, not at it: its deinterlacing needs the frame before
            self._seek(position - 1)
        except av.error.FFmpegError as e:
            raise VdeblurError(f"{self.path}: cannot seek back to frame {frames_done} ({e.strerror})") from None
        self.stream.codec_context.flush_buffers()
        self._frames = self._decoded_frames()
        frame = next(self._frames, None)
        while frame is not None and frame.pts is not None and frame.pts - offset < next_pts:
            frame = next(self._frames, None)
        if frame is None or frame.pts is None or frame.pts - offset != next_pts:
            raise VdeblurError(f"{self.path}: frame {frames_done} (pts {next_pts}) is not where it was; "
                               "was the file changed?")
        self._first = frame

    def items(self) -> Iterator[DecodedFrame | av.Packet]:
        """RGB frames and pass-through packets, in file order, timestamps shifted for a part."""
        self._index = self._skipped
        frame = self._first
        while frame is not None:
            yield from self._drain_packets()
            self.deinterlaced_frames += self.deinterlacer.rebuilt   # of the frame last decoded: this one
            yield self.to_rgb(frame)
            frame = next(self._frames, None)
        yield from self._drain_packets()

    def passthrough_packets(self) -> Iterator[av.Packet]:
        """The other streams' packets alone, in file order, without decoding the video: to mux
        them around video encoded earlier. Use instead of ``items()``, not with it."""
        yield from self._drain_packets()
        for packet in self._demux():
            if packet.stream is self.stream:
                # Frames reach the part's end well within 2 s of reordering.
                if self.end is not None and packet.pts is not None and packet.time_base:
                    self._passed_video |= float(packet.pts * packet.time_base) > self.end + 2.0
                continue
            if packet.pts is not None and packet.time_base and self._past_part(packet, self._passed_video):
                return
            if packet.size and self._wanted(packet):
                self._pending.append(packet)
                yield from self._drain_packets()

    def _drain_packets(self):
        pending, self._pending = self._pending, []
        for packet in pending:
            if self._shift:
                _finer(packet, self._shift_s)
                packet.pts = self._shifted(packet.pts, packet.time_base)
                packet.dts = self._shifted(packet.dts, packet.time_base)
            yield packet

    def chapters(self) -> list[dict]:
        """The input's chapters; for a part, those overlapping it, clipped and shifted to start at 0."""
        out = []
        for ch in self.container.chapters():
            tb = ch["time_base"]
            lo = round(self.start / tb) if self._shift else 0
            hi = round(self.end / tb) if self.end is not None else None
            start, end = max(ch["start"], lo), ch["end"] if hi is None else min(ch["end"], hi)
            if end > start:
                out.append({**ch, "start": max(0, start - self._offset(tb)), "end": end - self._offset(tb)})
        return out

    def attached_picture(self, stream) -> bytes | None:
        """A cover-art stream's picture (FFmpeg hands it over as the stream's one packet), read through
        a second opening of the file: a header that stores it needs it before any packet is read.
        None from a pipe or where it cannot be read."""
        if self.streamed or self.sequence_start is not None:
            return None
        try:
            with av.open(self.path) as container:
                for packet in container.demux(container.streams[stream.index]):
                    if packet.size:
                        return bytes(packet)
        except (av.error.FFmpegError, OSError, IndexError):
            pass
        return None

    @property
    def streamed(self) -> bool:
        """Standard input or a URL: not opened a second time (a listener would wait for a new sender)."""
        return self._pipe or "://" in self.path

    def abandon(self) -> None:
        """Leave the file open for good: a thread is still inside FFmpeg reading it (from a stalled
        pipe), and closing it under that read would free what the read returns into."""
        self._abandoned = True

    def close(self) -> None:
        if not self._abandoned:
            self.container.close()


#: Cover art by codec: the file name and type Matroska attaches it as (players look for "cover.*").
_COVER_FILES = {"mjpeg": ("cover.jpg", "image/jpeg"), "png": ("cover.png", "image/png")}

#: Audio a container cannot hold is re-encoded rather than lost: (encoder, bit rate) by output suffix.
#: WebM holds only Opus and Vorbis; MP4 and MOV take AAC everywhere; MPEG-PS takes AC-3; Matroska takes
#: nearly anything (not a 3GP phone's AMR), AVI not Opus or Vorbis: players expect MP3 there.
AUDIO_FALLBACK = {".webm": ("libopus", 192_000), ".mp4": ("aac", 256_000), ".m4v": ("aac", 256_000),
                  ".mkv": ("aac", 256_000), ".avi": ("libmp3lame", 320_000),
                  ".mov": ("aac", 256_000), ".mpg": ("ac3", 448_000), ".mpeg": ("ac3", 448_000),   # MPEG-PS: DVD's AC-3
                  ".vob": ("ac3", 448_000), ".ts": ("aac", 256_000),
                  ".m2ts": ("ac3", 448_000), ".mts": ("ac3", 448_000)}   # Blu-ray's and AVCHD's AC-3

#: Audio and subtitle codecs the MPEG-TS and MPEG-PS demuxers read back as what they are. Their
#: muxers take more, and write PCM, FLAC, ALAC or text subtitles as streams that come back as "data"
#: (TS) or not at all (PS): copied bit for bit, and used by no player.
_TS_READABLE = {"aac", "aac_latm", "ac3", "eac3", "mp2", "mp3", "opus", "dts", "truehd", "dvb_subtitle", "dvb_teletext"}
_PS_READABLE = {"mp2", "mp3", "ac3", "dts", "pcm_dvd", "dvd_subtitle"}
_READABLE = {".ts": _TS_READABLE, ".m2ts": _TS_READABLE | {"pcm_bluray", "hdmv_pgs_subtitle"},
             ".mts": _TS_READABLE | {"pcm_bluray", "hdmv_pgs_subtitle"},
             ".mpg": _PS_READABLE, ".mpeg": _PS_READABLE, ".vob": _PS_READABLE}


#: Layouts by channel count where an encoder takes only some: Opus's surround (Vorbis order, so 5.1 with
#: back, not side, channels), and AC-3's 5.1 at most.
_ENCODER_LAYOUTS = {"libopus": {3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"},
                    "ac3": {7: "5.1", 8: "5.1"}}


#: Encoders whose bitstream carries the pixel aspect ratio (H.264/HEVC VUI, MPEG-2/4 headers, JFIF).
#: Other encoders' (AV1, VP9, FFV1, ProRes) reaches only MP4 and MOV, whose muxer writes it from the
#: codec parameters; Matroska's and AVI's muxers take it from the stream, which PyAV cannot set.
_SAR_IN_BITSTREAM = {"libx264", "libx264rgb", "libx265", "mpeg2video", "mpeg4", "mjpeg", "h264_nvenc", "hevc_nvenc"}


#: FFmpeg's default layout for a channel count, for audio that names no speakers.
_USUAL_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0(side)", 6: "5.1(side)", 7: "6.1", 8: "7.1"}


class _AudioTranscoder:
    """One input audio stream decoded from its packets and encoded into a new output stream."""

    def __init__(self, source, out: av.container.OutputContainer, encoder: str, bit_rate: int):
        self.decoder = av.CodecContext.create(source.codec_context.name, "r")
        self.decoder.extradata = source.codec_context.extradata
        self.decoder.sample_rate, self.decoder.layout = source.codec_context.sample_rate, source.codec_context.layout
        rate, layout = source.codec_context.sample_rate, source.codec_context.layout
        rates = av.Codec(encoder, "w").audio_rates
        if rates and rate not in rates:   # AC-3 takes 32-48 kHz, Opus 8-48 kHz; PyAV resamples on encode
            rate = 48000 if 48000 in rates else max(rates)
        name = layout.name   # "1 channels" where no speaker order is given (an AVI's WAVEFORMATEX): FFmpeg's usual one
        name = _USUAL_LAYOUTS.get(layout.nb_channels, name) if name.endswith(" channels") else name
        self.stream = out.add_stream(encoder, rate=rate, layout=_ENCODER_LAYOUTS.get(encoder, {}).get(layout.nb_channels, name))
        self.stream.bit_rate = bit_rate
        _label_like(self.stream, source)

    @classmethod
    def open(cls, source, out: av.container.OutputContainer, encoder: str, bit_rate: int) -> _AudioTranscoder | None:
        """None where this FFmpeg cannot decode the source or encode its layout: the stream is skipped."""
        try:
            return cls(source, out, encoder, bit_rate)
        except (av.error.FFmpegError, ValueError):
            return None

    def encode(self, packet: av.Packet | None) -> list[av.Packet]:
        """Packets of the new stream for one input packet (None: flush both ends). A damaged packet
        is skipped, as a copy would carry it on without looking."""
        try:
            frames = self.decoder.decode(packet)
        except av.error.FFmpegError:
            frames = []
        if packet is not None and len(frames) == 1:
            _start_after_priming(frames[0], packet)
        out = [p for frame in frames for p in self.stream.encode(frame)]
        if packet is None:
            out += self.stream.encode(None)
        return out


def _start_after_priming(frame: av.AudioFrame, packet: av.Packet) -> None:
    """An encoder's priming samples (MP3's 1105, AAC's 1024) sit before 0 on the timeline, and the
    decoder drops them from the first frame but leaves the frame at the packet's time: the samples it
    kept then sat that much early, and a gap of as much followed them. Put the frame where they play."""
    if frame.pts is None or packet.pts is None or packet.pts >= 0 or not packet.duration or not packet.time_base \
            or not frame.time_base or not frame.sample_rate:
        return
    if round(float(frame.pts * frame.time_base), 6) != round(float(packet.pts * packet.time_base), 6):
        return
    dropped = float(packet.duration * packet.time_base) - frame.samples / frame.sample_rate
    if dropped > 0:
        frame.pts += round(dropped / float(frame.time_base))


#: Text subtitles a container cannot hold are converted rather than lost (a phone's mov_text into .mkv,
#: an .srt into .mp4): the format each container takes.
SUBTITLE_FALLBACK = {".mp4": "mov_text", ".m4v": "mov_text", ".mov": "mov_text", ".mkv": "subrip",
                     ".webm": "webvtt"}


class _SubtitleTranscoder:
    """One input text-subtitle stream decoded to its lines and encoded in the output's own text format.
    Timing stays the input packets' own; styling beyond what the target format has is lost (SRT keeps
    italics and bold, mov_text less), never the words."""

    def __init__(self, source, out: av.container.OutputContainer, encoder: str):
        self.decoder = av.CodecContext.create(source.codec_context.name, "r")
        self.decoder.extradata = source.codec_context.extradata
        self.decoder.open()   # text decoders set up the ASS header the encoder needs
        if not self.decoder.subtitle_header:   # an ASS track stored without its header: nothing to convert by
            raise ValueError("no subtitle header")
        self.stream = out.add_stream(encoder)
        self.stream.codec_context.subtitle_header = self.decoder.subtitle_header
        _label_like(self.stream, source)

    @classmethod
    def open(cls, source, out: av.container.OutputContainer, encoder: str) -> _SubtitleTranscoder | None:
        """None for picture subtitles (DVD, Blu-ray PGS: no text to convert) or what this FFmpeg lacks."""
        cc = source.codec_context
        if cc is None or not cc.codec.text_sub or not hasattr(SubtitleSet, "create"):   # create: PyAV 16 on
            return None
        try:
            return cls(source, out, encoder)
        except (av.error.FFmpegError, ValueError):
            return None

    def encode(self, packet: av.Packet | None) -> list[av.Packet]:
        if packet is None or not packet.size or packet.pts is None or not packet.time_base:
            return []
        try:
            lines = self.decoder.decode2(packet)
        except av.error.FFmpegError:
            lines = None   # damaged: skipped, as a copy would carry it on without looking
        dialogue = [r.ass for r in lines.rects if getattr(r, "ass", None)] if lines is not None else []
        if not dialogue:
            return []
        # One event per packet: further lines join the first as ASS line breaks.
        text = b"\\N".join([dialogue[0]] + [d.split(b",", 8)[-1] for d in dialogue[1:]])
        millis = round(float((packet.duration or 0) * packet.time_base) * 1000)
        try:
            encoded = self.stream.codec_context.encode_subtitle(SubtitleSet.create(text, 0, millis, 0))
        except (av.error.FFmpegError, ValueError):
            return []
        encoded.stream, encoded.time_base = self.stream, packet.time_base
        encoded.pts = encoded.dts = packet.pts
        encoded.duration = packet.duration
        return [encoded]


def _label_like(stream, source) -> None:
    """Give an output stream the source stream's tags and flags (language, name, default, forced)."""
    stream.metadata.update(_stream_tags(source.metadata))
    stream.disposition = source.disposition


def codec_name(stream) -> str:
    cc = stream.codec_context
    return cc.name if cc else (getattr(stream, "name", None) or "none")


def _timecode_track(stream, video) -> bool:
    """A QuickTime timecode track whose time the video stream carries as its "timecode" tag."""
    return stream.type == "data" and "timecode" in stream.metadata and \
        video.metadata.get("timecode") == stream.metadata["timecode"]


def describe_stream(stream) -> str:
    name = codec_name(stream)
    lang = stream.metadata.get("language")
    return f"#{stream.index} {stream.type} {name}" + (f" [{lang}]" if lang and lang != "und" else "")


def _encoder(name: str) -> av.codec.Codec:
    try:
        codec = av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        raise VdeblurError(f"unknown encoder {name!r}; this PyAV build has e.g. libx264, libx265, libsvtav1, ffv1") from None
    if codec.type != "video":
        raise VdeblurError(f"{name!r} is a {codec.type} encoder, not a video encoder")
    return codec


def constant_rate(codec: av.codec.Codec, rate: Fraction | None, timed: bool) -> Fraction | None:
    """The frame rate to write at where frames are counted, not timed, else None (timestamps pass
    through). ``timed``: the container stores each frame's time. AVI and the like store one frame per
    tick of 1/rate (a frame in source time units made x264's B-frames come out at 0.042, 0.083,
    0.085 s); MPEG-1/2 encoders take only their standard rates, so the nearest one is used."""
    rate = Fraction(rate or 25).limit_denominator(1001)
    if codec.frame_rates:
        return min((Fraction(r.numerator, r.denominator) for r in codec.frame_rates), key=lambda r: abs(r - rate))
    return None if timed else rate


def hardware_needed(codec: av.codec.Codec) -> str | None:
    """What an encoder that runs on other hardware than the CPU needs ("an NVIDIA GPU with NVENC ..."), else None."""
    if not codec.capabilities & _HARDWARE_CAPS:
        return None
    devices = [config.device_type.name for config in codec.hardware_configs or ()]
    return next((_HARDWARE[d] for d in devices if d in _HARDWARE), "its hardware and driver")


#: --crf ranges the encoders' option tables do not give (x264's and x265's run from -1, "unset", to any number).
CRF_RANGES = {"libx264": (0, 51), "libx265": (0, 51)}


def check_crf(encoder: str, options, crf: float, bit_depth: int = 8) -> None:
    """A --crf outside the encoder's range is refused: x264 clamps 52 to 51 and takes -1 as "unset"
    (its default, 23) without a word. ``options``: the encoder's AVOptions."""
    if encoder == "libx264" and bit_depth > 8:
        low, high = -6 * (bit_depth - 8), 51   # x264 extends the scale below 0 by 6 per bit above 8
    elif encoder in CRF_RANGES:
        low, high = CRF_RANGES[encoder]
    else:
        option = next((o for o in options if o.name in ("crf", "cq")), None)
        if option is None or not (0 <= option.min and option.max < 1e6):
            return
        low, high = option.min, option.max
    if not low <= crf <= high:
        raise VdeblurError(f"--crf {crf:g}: {encoder} takes {low:g} to {high:g} (lower is better)")


def constant_quality(encoder: str, supported: set[str], crf: float) -> dict[str, str]:
    """``--crf`` under the encoder's own name: x264-style crf, or NVENC's VBR aimed at quality ``cq``
    with no bitrate cap (NVENC's cq runs 0-51 like x264's crf, lower is better)."""
    if "crf" in supported:
        return {"crf": f"{crf:g}"}
    if {"rc", "cq"} <= supported and encoder.endswith("_nvenc"):
        return {"rc": "vbr", "cq": f"{crf:g}", "b": "0"}
    raise VdeblurError(f"--crf: encoder {encoder} has no crf option")


def choose_pix_fmt(codec: av.codec.Codec, info: VideoInfo, requested: str | None) -> str:
    """The source's pixel format where the encoder takes it (10-bit stays 10-bit), else the nearest."""
    supported = [f.name for f in codec.video_formats or ()]
    if requested:
        if supported and requested not in supported:
            raise VdeblurError(f"--pix-fmt {requested}: {codec.name} takes {', '.join(supported)}")
        return requested
    wanted = info.pix_fmt.replace("yuvj", "yuv")   # full range is a tag, not a format (yuvj* are deprecated)
    if wanted.startswith("gray") and codec.name in ("libx264", "libx265"):
        # 4:0:0 H.264/HEVC plays in few players (browsers and phones refuse it), and x264 writes no
        # colour tags for it; grey pictures in 4:2:0 look the same everywhere.
        wanted = "yuv420p10le" if info.high_bit_depth else "yuv420p"
    if codec.name in ("png", "tiff", "dpx") and (wanted == "pal8" or not av.VideoFormat(wanted).is_rgb
                                                 or (supported and wanted not in supported)) \
            and not wanted.startswith(("gray", "ya")):
        # Image files are RGB to the programs that open them (few read a YCbCr TIFF; DPX has no 4:2:0),
        # an RGB layout the encoder lacks (a BMP's BGR) included.
        deep = ("rgba64le", "rgba64be") if info.alpha else ("rgb48le", "rgb48be")
        for fmt in (deep if info.high_bit_depth else ()) + (("rgba",) if info.alpha else ("rgb24",)):
            if fmt in supported:
                return fmt
    if not supported or wanted in supported:
        return wanted
    swapped = wanted[:-2] + {"le": "be", "be": "le"}.get(wanted[-2:], "")
    if swapped in supported:   # the other byte order (a 16-bit grey PNG's gray16be into TIFF or FFV1)
        return swapped
    with_alpha = [f for f in supported if has_alpha(f)] if info.alpha else []
    if with_alpha:   # transparency matters more than the exact format (RGBA PNG into ProRes 4444: yuva444p10le)
        return min(with_alpha, key=lambda f: _fit(f, wanted))
    if codec.name in LOSSLESS_ENCODERS:   # the nearest it takes: an RGB PNG into FFV1 is bgr0, not yuv420p
        return min((f for f in supported if not has_alpha(f)), key=lambda f: _fit(f, wanted))
    # 10-bit stays 10-bit where the encoder takes it in any layout (NVENC wants the semi-planar P010,
    # DNxHR 4:2:2, QuickTime Animation 16-bit RGB).
    deep = ("yuv420p10le", "yuv420p12le", "p010le", "yuv422p10le", "rgb48le", "rgb48be") if info.high_bit_depth else ()
    for fallback in deep + ("yuv420p",):
        if fallback in supported:
            return fallback
    return supported[0]


def _fit(candidate: str, source: str) -> tuple:
    """How far a format is from the source's, to sort by: colour kept, no chroma lost (FFV1 lists
    yuva420p first, for 8-bit RGBA), RGB for RGB, depth kept, then no more chroma samples and no
    more bits than needed."""
    a, b = av.VideoFormat(candidate, 64, 64), av.VideoFormat("rgb24" if source == "pal8" else source, 64, 64)
    colour = lambda f: len(f.components) > 2   # noqa: E731 - gray + alpha has two
    chroma = lambda f: f.chroma_width(64) * f.chroma_height(64) if colour(f) else 0   # noqa: E731
    bits, wanted_bits = a.components[0].bits, b.components[0].bits
    return (colour(a) != colour(b), chroma(a) < chroma(b), a.is_rgb != b.is_rgb, bits < wanted_bits,
            chroma(a) - chroma(b), bits - wanted_bits)


#: Transfer curves (colour_trc) that need 10 bits: SMPTE 2084 (PQ, HDR10) and ARIB STD-B67 (HLG).
HDR_TRANSFERS = {16: "PQ (HDR10)", 18: "HLG"}


def pix_fmt_loss(source: str, chosen: str, encoder: str) -> str | None:
    """What a YUV source loses in the pixel format chosen for an encoder that lacks its own ("4:4:4
    chroma becomes 4:2:0", "10-bit becomes 8-bit"), for a line before the first frame; else None.
    An RGB, palette or grey source is left out: its conversion to the usual 4:2:0 is expected."""
    src, out = av.VideoFormat(source.replace("yuvj", "yuv"), 64, 64), av.VideoFormat(chosen, 64, 64)
    if src.is_rgb or out.is_rgb or len(src.components) < 3 or src.name.startswith(("pal", "gray", "ya")):
        return None
    lost = []
    if out.chroma_width() * out.chroma_height() < src.chroma_width() * src.chroma_height():
        lost.append(f"{_subsampling(src)} chroma becomes {_subsampling(out)}")
    if _bit_depth(out) < _bit_depth(src):
        lost.append(f"{_bit_depth(src)}-bit becomes {_bit_depth(out)}-bit")
    if not lost:
        return None
    return (f"{encoder} does not take the source's {source}, so it is written as {chosen}: {' and '.join(lost)}; "
            f"--pix-fmt or another --codec (ffv1, prores_ks) keeps more")


def _subsampling(fmt: av.VideoFormat) -> str:
    return {(64, 64): "4:4:4", (32, 64): "4:2:2", (32, 32): "4:2:0", (16, 64): "4:1:1"}.get(
        (fmt.chroma_width(), fmt.chroma_height()), f"{fmt.chroma_width()}x{fmt.chroma_height()}")


def _odd_for_chroma(pix_fmt: str, size: tuple[int, int]) -> str | None:
    """"65x49 (4:2:0 chroma needs an even width and height)" where a side is odd along an axis the
    format subsamples, else None."""
    width, height = size
    probe = av.VideoFormat(pix_fmt, 4, 4)   # at an odd size itself, a 1-pixel side's chroma is 1 pixel too
    odd_width = width % 2 and probe.chroma_width() < 4
    odd_height = height % 2 and probe.chroma_height() < 4
    if not (odd_width or odd_height):
        return None
    sides = "an even width and height" if odd_width and odd_height else ("an even width" if odd_width else "an even height")
    return f"{width}x{height} (its subsampled chroma needs {sides})"


def _uneven_fields(pix_fmt: str, size: tuple[int, int]) -> str | None:
    """"50 lines (whole chroma lines in each field of subsampled chroma need a multiple of 4)" where a
    frame cannot be split into two equal fields with whole chroma lines, else None."""
    width, height = size
    step = 4 if av.VideoFormat(pix_fmt, width, height).chroma_height() != height else 2
    if height % step == 0:
        return None
    why = "whole chroma lines in each field of subsampled chroma" if step == 4 else "two fields of equal height"
    return f"{height} lines ({why} need a multiple of {step})"


def output_colour(color_range: int, colorspace: int, source_pix_fmt: str, pix_fmt: str, codec: str) -> tuple[int, int]:
    """(range, matrix) tags of the output: the source's, except where the output's kind of pixels
    differs. An RGB source (PNG, RGB FFV1, QuickTime Animation; tagged 0, "GBR", or untagged) written
    as YUV gets the matrix its YUV is made with, BT.709 in limited range: a copied 0 makes players
    read the YUV planes as G, B and R, and untagged YUV is guessed at. JPEG (JFIF) is BT.601 in full
    range, whatever the source: decoders assume it; lossy WebP (VP8) BT.601 in limited range, which its
    decoders assume too. DNxHR has no "unspecified" matrix (its decoder
    says BT.709), so an untagged source is converted with BT.709 and tagged so."""
    if codec == "mjpeg":
        return 2, 5
    if codec in ("libwebp", "libwebp_anim", "webp"):   # lossy WebP is VP8 (decoder "webp"): BT.601, limited range
        return 1, 5
    if pix_fmt.startswith("yuvj"):   # full range by name (--pix-fmt yuvj420p; x264's grey decodes as it)
        return 2, colorspace
    if is_gray(pix_fmt):   # no chroma, no matrix to mistake; swscale reads and writes grey as full range
        return (color_range if is_gray(source_pix_fmt) else 2), colorspace
    if (colorspace == 0 or av.VideoFormat(source_pix_fmt).is_rgb) and not av.VideoFormat(pix_fmt).is_rgb:
        return 1, 1
    if codec == "dnxhd" and colorspace == 2:
        return color_range, 1
    if codec.startswith("prores") and colorspace == 6:   # ProRes writes SMPTE 170M as "unspecified", and takes
        return color_range, 5                             # BT.601 as BT.470BG, the same matrix
    return color_range, colorspace


#: Decoders that give closed captions as A53 side data (from H.264/HEVC SEI, MPEG-2 user data, AV1 T.35).
CAPTION_DECODERS = ("h264", "hevc", "mpeg2video", "mpeg1video", "av1", "libdav1d")
#: Encoders that write closed captions (A53 side data of their frames) into the video bitstream, as
#: FFmpeg does when it re-encodes: libx264 and mpeg2video by default, libx265 with its a53cc option.
CAPTION_ENCODERS = ("libx264", "libx265", "mpeg2video")


def _finer(packet: av.Packet, shift: Fraction) -> None:
    """Restate a packet in a time base that ``shift`` is a whole number of ticks of, where its own is
    too coarse (an AVI's 26 ms MP3 packets against a part starting on the video's 40 ms grid): the
    muxer rescales it, and the stream keeps its sync with the video to the sample."""
    tb = packet.time_base
    if not tb:
        return
    k = (shift / tb).denominator
    if k == 1 or (tb / k).denominator > 2**31 - 1:
        return
    pts, dts, duration = packet.pts, packet.dts, packet.duration
    packet.time_base = tb / k
    packet.pts = None if pts is None else pts * k
    packet.dts = None if dts is None else dts * k
    packet.duration = duration * k


def _other_clocks(container) -> tuple[int, ...]:
    """Ticks per second of the streams copied beside the video (time bases, and audio sample rates:
    re-encoded audio gets 1/rate), for :func:`movie_timescale`."""
    clocks = []
    for stream in container.streams:
        if stream.type in COPY_TYPES:
            if stream.time_base:   # 32/1225 (AVI mp3 packets) is a multiple of 1/1225 s
                clocks.append(stream.time_base.denominator)
            if stream.type == "audio" and getattr(stream.codec_context, "sample_rate", 0):
                clocks.append(stream.codec_context.sample_rate)
    return tuple(clocks)


def movie_timescale(video_clock: int, other_clocks=()) -> int:
    """The MP4/MOV movie timescale: edit lists give each track's start in it, so a copied audio track
    that starts 640/48000 s in would read back 2 samples early at the video's 12800. The least common
    multiple of the video's clock and the others' that fits the field; a clock that would overflow
    it is left out."""
    scale = video_clock
    for clock in dict.fromkeys(other_clocks):
        wider = math.lcm(scale, clock)
        if wider <= 2**31 - 1:
            scale = wider
    return scale


def with_captions(frame: av.VideoFrame, carrier: av.VideoFrame) -> av.VideoFrame:
    """``frame``'s pixels and tags in a frame made from ``carrier``, a small copy of the decoded frame it
    came from, so the encoder finds that frame's captions: PyAV cannot attach side data to a new frame,
    but a copy (and a copy of the copy) keeps it."""
    out = carrier.reformat(width=frame.width, height=frame.height, format=frame.format.name, threads=1)
    if any(a.buffer_size != b.buffer_size for a, b in zip(out.planes, frame.planes)):
        return frame   # laid out otherwise (never seen): the picture matters more than its captions
    for target, plane in zip(out.planes, frame.planes):
        target.update(plane)
    out.pict_type = frame.pict_type   # not the source's frame type: the encoder chooses its own
    out.colorspace, out.color_range = frame.colorspace, frame.color_range
    out.color_primaries, out.color_trc = frame.color_primaries, frame.color_trc
    return out


class VideoWriter:
    """Encode RGB frames and remux the copied streams into ``path`` (container chosen by its suffix).

    With ``packet_sink`` the encoded video packets go to that function instead of a file (a
    resumable run's segments): the container, held in memory, only sets the encoder up exactly as
    ``path``'s format would, and no other stream is added. ``path`` "-" is standard output, in
    ``container`` (a name from PIPE_FORMATS).
    """

    def __init__(self, path: str | os.PathLike, reader: VideoReader, *, codec: str | None = None,
                 crf: float | None = None, preset: str | None = None, pix_fmt: str | None = None,
                 size: tuple[int, int] | None = None, label: str | os.PathLike | None = None,
                 packet_sink: Callable[[list[av.Packet]], None] | None = None, container: str | None = None,
                 fields: str | None = None):
        self.path = str(path)
        to_stdout = self.path == STDIO
        container = (container or PIPE_DEFAULT) if to_stdout else None
        self.label = "standard output" if to_stdout else str(label or path)   # the final name, not a temp file's
        self.suffix = PIPE_FORMATS[container] if to_stdout else Path(path).suffix.lower()   # picks the muxer
        self.packet_sink = packet_sink
        info = reader.info
        #: Re-interlacing: frames come in pairs, one per field ("tff" or "bff": the source's order), each
        #: pair written as one interlaced frame, so the output is timed as the source's frames, not its fields.
        self.weaver = Weaver(fields) if fields else None
        if fields:
            info = replace(info, time_base=info.time_base * 2, rate=info.rate / 2 if info.rate else None,
                           frames=info.frames // 2 if info.frames else None)
        if self.suffix == ".gif":
            raise VdeblurError(f"{self.label}: vdeblur does not write GIF (256 colours would undo the deblurring); "
                               f"write .mp4 or .webm, or .png for one picture")
        self.sequence = not to_stdout and sequence.is_sequence(self.path)   # one file per frame
        if self.sequence:
            check_sequence_suffix(self.label, self.suffix)
        self.one_picture = self.suffix in IMAGE_CODECS and not self.sequence
        if self.one_picture and (info.frames or 1) > 1:
            raise self._more_than_one_picture(f"about {info.frames} frames")
        enc = _encoder(codec or codec_for_suffix(self.suffix))
        self.codec_name = enc.name
        if fields and (self.sequence or self.one_picture):
            raise VdeblurError(f"{self.label}: --reinterlace writes interlaced video; pictures are progressive")
        if fields and enc.name not in INTERLACED_ENCODERS:
            raise VdeblurError(f"--reinterlace: {enc.name} cannot code interlaced video; use --codec "
                               f"{', '.join(list(INTERLACED_ENCODERS)[:-1])} or {list(INTERLACED_ENCODERS)[-1]}")
        #: Whether closed captions given with the frames reach the output (in its video bitstream).
        self.carries_captions = enc.name in CAPTION_ENCODERS and not self.sequence
        self.pix_fmt = choose_pix_fmt(enc, info, pix_fmt)
        if enc.name == "mjpeg" and pix_fmt is None:
            self.pix_fmt = "yuv444p"   # no chroma loss
        self.keeps_alpha = has_alpha(self.pix_fmt)
        # A grey source stays grey in colour formats too (JPEG, H.264 4:2:0): the model's RGB has faint tints.
        self.neutral = is_gray(info.pix_fmt) and not is_gray(self.pix_fmt)
        self.color_range, self.colorspace = output_colour(info.color_range, info.colorspace, info.pix_fmt,
                                                          self.pix_fmt, enc.name)
        options = {}
        asked = {"crf": crf, "preset": preset, "pix-fmt": pix_fmt}   # for a hint if the encoder refuses them
        hdr_options = encoder_options(enc.name, info.hdr10) if info.hdr10 else {}   # None: this encoder cannot
        try:
            target, muxer = self.path, None
            if packet_sink is not None:
                target = io.BytesIO()
                target.name = self.path   # the muxer is still chosen by the suffix
            elif to_stdout:
                target, muxer = "pipe:1", container
            elif self.sequence:
                Path(self.path).parent.mkdir(exist_ok=True)   # the hidden folder a sequence is written in
            container_options = self._container_options(self.suffix, info, _clean_tags(reader.container.metadata),
                                                        _other_clocks(reader.container))
            if self.sequence:   # an input sequence's frames keep their numbers; a video's count from 1, as FFmpeg's
                container_options["start_number"] = str(1 if reader.sequence_start is None else reader.sequence_start)
            self.out = av.open(target, "w", format=muxer, container_options=container_options)
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise VdeblurError(f"{self.label}: cannot create output ({getattr(e, 'strerror', None) or e})") from None
        try:
            try:
                vout = self.out.add_stream(enc.name, rate=info.rate or 25)
            except ValueError:   # PyAV's word for "this muxer does not take that codec"
                fitting = codec_for_suffix(self.suffix)
                raise VdeblurError(f"{self.label}: a {self.suffix} file cannot hold {enc.name} video; choose "
                                   f"another --codec{f' (e.g. {fitting})' if fitting != enc.name else ''} or output suffix") from None
            opts = vout.codec_context.supported_options
            supported = {o.name for o in (*opts.generic, *opts.private)}
            if crf is not None:
                check_crf(enc.name, (*opts.generic, *opts.private), crf, _bit_depth(av.VideoFormat(self.pix_fmt)))
            crf = DEFAULT_CRF.get(enc.name) if crf is None else crf
            if crf is not None:
                options.update(constant_quality(enc.name, supported, crf))
            if preset is not None:
                if "preset" not in supported:
                    raise VdeblurError(f"--preset: encoder {enc.name} has no preset option")
                named = KNOWN_PRESETS.get(enc.name) or [c.name for o in opts.private if o.name == "preset" for c in o.choices or ()]
                if named and str(preset) not in named:
                    raise VdeblurError(f"--preset {preset}: {enc.name} takes {', '.join(named)}")
                options["preset"] = str(preset)
            options.update(hdr_options or {})
            # x265 and SVT-AV1 print a screenful of info to stderr by themselves; errors still show.
            if enc.name == "libx265":
                options["x265-params"] = ":".join(filter(None, ("log-level=error", options.get("x265-params"))))
                options["a53cc"] = "1"   # closed captions from the frames, as libx264 and mpeg2video write by default
            elif enc.name == "libsvtav1":
                os.environ.setdefault("SVT_LOG", "1")   # read when the library first logs
            if enc.name == "dnxhd":   # its default profile takes only broadcast sizes and bitrates; DNxHR takes any
                options["profile"] = DNXHR_PROFILES.get(self.pix_fmt, "dnxhr_hq")
            if enc.name == "mjpeg":
                options.update(qmin="2", qmax="2")   # JPEG at q 2 (ffmpeg's -q:v 2), not the encoder's bitrate default
            elif enc.name in ("libwebp", "libwebp_anim") and "quality" not in options:
                options["quality"] = "95"   # as JPEG's q 2; libwebp's own default, 75, blurs fine detail again
            if fields:
                for key, value in INTERLACED_ENCODERS[enc.name](fields).items():
                    options[key] = ":".join(filter(None, (options.get(key), value))) if key.endswith("-params") else value
                options["field_order"] = {"tff": "tt", "bff": "bb"}[fields]   # the container's tag (MP4 fiel, MKV FieldOrder)
            vout.options = options
            self._setup_video(vout, info, reader.stream, size or (info.width, info.height))
            self.copied: list[str] = []
            self.skipped: list[str] = []
            self.stream_map = {}
            self.transcoders: dict[int, _AudioTranscoder | _SubtitleTranscoder] = {}   # input index -> converted to fit
            if self.sequence:
                self.skipped += [f"{describe_stream(s)} (an image sequence holds pictures only)" for s in reader.copy_streams]
            for stream in reader.copy_streams if packet_sink is None and not self.sequence else ():
                if _timecode_track(stream, reader.stream):
                    self._keep_timecode(stream)
                    continue
                if stream.disposition & av.stream.Disposition.attached_pic and "matroska" in self.out.format.name:
                    self._cover_as_attachment(reader, stream)
                    continue
                unusable = self._unusable(stream)
                refused = None if unusable else self._refused(stream)
                reason = unusable or refused
                transcoder, became = self._transcoder(stream) if refused else (None, None)
                if transcoder is not None:
                    self.transcoders[stream.index] = transcoder
                    self.copied.append(f"{describe_stream(stream)} {became} ({codec_name(stream)} cannot be stored in "
                                       f"{self.suffix})")
                elif reason:
                    self.skipped.append(f"{describe_stream(stream)} ({reason})")
                else:
                    self.stream_map[stream.index] = self._copy_stream(stream)
                    self.copied.append(describe_stream(stream))
            if packet_sink is None and not self.sequence:
                self._copy_attachments(reader)
                self.out.metadata.update(_clean_tags(reader.container.metadata))
                chapters = reader.chapters()
                if chapters:
                    self.out.set_chapters(chapters)
            self.out.start_encoding()   # header now: a stream the muxer refuses fails here, not mid-run
        except av.error.FFmpegError as e:
            self.abort()
            hardware = hardware_needed(enc)
            if hardware:   # no such device is the usual cause ("Operation not permitted" from NVENC)
                raise VdeblurError(f"{self.label}: the {enc.name} encoder did not start ({e.strerror or e}); it needs "
                                   f"{hardware}; without one, use --codec libx264, libx265 or libsvtav1") from None
            width, height = size or (info.width, info.height)
            if enc.name == "dnxhd" and (width < 256 or height < 120):
                raise VdeblurError(f"{self.label}: DNxHR takes frames of at least 256x120, not {width}x{height}; "
                                   f"use --codec prores_ks or ffv1") from None
            uneven = _uneven_fields(self.pix_fmt, (width, height)) if fields and enc.name == "libx264" else None
            if uneven:   # x264 refuses to code such a frame interlaced (the others take it)
                raise VdeblurError(f"{self.label}: {enc.name} cannot code {self.pix_fmt} interlaced at {uneven}; use "
                                   f"--codec ffv1, prores_ks or mpeg2video") from None
            odd = _odd_for_chroma(self.pix_fmt, (width, height))
            if odd:   # x264 and x265 refuse half a chroma sample (ffmpeg: "width not divisible by 2")
                full = "yuv444p10le" if "10" in self.pix_fmt or info.high_bit_depth else "yuv444p"   # depth kept
                raise VdeblurError(f"{self.label}: {enc.name} cannot write {self.pix_fmt} at {odd}; use --pix-fmt "
                                   f"{full} (fewer players take it), or --codec libsvtav1 (or ffv1 in .mkv), "
                                   f"which take odd sizes") from None
            if e.errno in _FILE_ERRNOS:   # the file, not the encoder: no hint about options
                raise VdeblurError(f"{self.label}: cannot write ({e.strerror})") from None
            streams = ", ".join(self.copied) or "none"
            chosen = " ".join(f"--{k} {v:g}" if isinstance(v, float) else f"--{k} {v}"
                              for k, v in asked.items() if v is not None)
            raise VdeblurError(f"{self.label}: cannot start writing ({e.strerror or e}); copied streams: {streams}"
                               + (f"; does {enc.name} take {chosen}?" if chosen else "")) from None
        except BaseException:
            self.abort()
            raise
        self.video = vout
        self.frames = 0
        #: What of the source does not reach the output (metadata, transparency), each said in a line.
        self.metadata_lost: list[str] = []
        loss = pix_fmt_loss(info.pix_fmt, self.pix_fmt, enc.name) if pix_fmt is None else None
        if loss:
            self.metadata_lost.append(loss)
        elif info.color_trc in HDR_TRANSFERS and _bit_depth(av.VideoFormat(self.pix_fmt, 64, 64)) < 10:
            self.metadata_lost.append(f"{HDR_TRANSFERS[info.color_trc]} video written with {self.pix_fmt}'s 8 bits will "
                                      "show banding in smooth gradients: HDR needs 10 (such as yuv420p10le)")
        if hdr_options is None:
            self.metadata_lost.append(f"the source's HDR10 metadata ({info.hdr10.describe()}) is not written: {enc.name} "
                                      f"cannot carry it; use --codec {', '.join(WRITERS[:-1])} or {WRITERS[-1]}")
        if info.transparent and not self.keeps_alpha:   # an opaque start is judged at the end (reader.transparent_frames)
            self.metadata_lost.append(alpha_not_kept(self.pix_fmt))
        if info.dynamic_hdr:
            kept = "colour tags and HDR10 metadata" if info.hdr10 and hdr_options is not None else "colour tags"
            self.metadata_lost.append(f"the source's {' and '.join(info.dynamic_hdr)} metadata is not carried over "
                                      f"(no encoder here takes it); the output keeps the {kept}")
        self.icc_profile, self.exif = info.icc_profile, info.exif
        self.keeps_photo_tags = self.one_picture and self.suffix in photo_tags.SUFFIXES
        if self.keeps_photo_tags:
            self.icc_profile, self.exif, left_out = photo_tags.what_fits(self.suffix, is_gray(self.pix_fmt),
                                                                         self.icc_profile, self.exif)
            self.metadata_lost += left_out
        else:
            if self.icc_profile and not photo_tags.is_srgb(self.icc_profile):   # sRGB is assumed
                self.metadata_lost.append(f"the source's ICC colour profile is not written into {self.suffix or 'this'} "
                                          f"output, so colour-managed viewers take its colours for sRGB; a single "
                                          f".png, .jpg, .webp or .tif keeps it")
            if self.exif:
                self.metadata_lost.append(f"the source's EXIF tags (camera, time taken) are not written into "
                                          f"{'an image sequence' if self.sequence else self.suffix or 'this'} output; "
                                          "a single .jpg, .png or .webp keeps them")
        sar = info.sample_aspect_ratio
        if sar and sar != 1 and self.suffix not in _MOV_SUFFIXES and self.suffix not in IMAGE_CODECS \
                and enc.name not in _SAR_IN_BITSTREAM:
            self.metadata_lost.append(f"the source's pixel aspect ratio {sar.numerator}:{sar.denominator} is not kept: "
                                      f"{enc.name} has no field for it, and PyAV cannot set {self.suffix}'s own, so "
                                      f"players will show the picture squeezed; write .mp4 or .mov, or use --codec "
                                      f"libx264 or libx265")
        # Damaged input can carry timestamps that go backwards; muxers reject those, so such
        # frames/packets are dropped and counted instead of ending the run.
        self.dropped_frames = 0
        self.dropped_packets = 0
        self._last_pts: int | None = None
        self._last_slot: int | None = None   # the last frame's tick where the rate is fixed
        self._last_dts: dict[int, int] = {}
        self._last_video_dts: int | None = None

    @property
    def time_base(self) -> Fraction:
        """The encoder's, which its packets' timestamps count in: the source's, or 1/rate (constant_rate)."""
        return self.video.codec_context.time_base

    @property
    def extradata(self) -> bytes:
        """The encoder's global header (H.264 SPS/PPS, ...): equal for every encoder set up alike,
        so packets of one can be muxed under another's stream."""
        return bytes(self.video.codec_context.extradata or b"")

    @staticmethod
    def _container_options(suffix: str, info: VideoInfo, tags: dict, other_clocks: tuple[int, ...] = ()) -> dict:
        options = {}
        if suffix in _MOV_SUFFIXES:
            if info.time_base.denominator <= 2**31 - 1:
                options["movie_timescale"] = str(movie_timescale(info.time_base.denominator, other_clocks))
            # Keys the muxer has no atom of its own for (a phone's com.apple.quicktime.location.ISO6709,
            # make, model, software) are dropped unless written as mdta keys.
            if any("." in key for key in tags):
                options["movflags"] = "use_metadata_tags"
        return options

    def _setup_video(self, vout, info: VideoInfo, source_stream, size: tuple[int, int]) -> None:
        (vout.width, vout.height), vout.pix_fmt = size, self.pix_fmt
        cc = vout.codec_context
        # Codec tb = source tb so every pts/duration passes through exactly (VFR kept, #1959/#1090),
        # except where the container or the encoder counts frames at a fixed rate (see constant_rate).
        # The MOV family times every sample, though only FFmpeg's mp4 and mov muxers say so (not ipod's
        # .m4v, 3gp, ismv, ...).
        timed = bool(self.out.format.flags & av.format.Flags.variable_fps.value) or self.suffix in _MOV_SUFFIXES
        self.frame_rate = constant_rate(cc.codec, info.rate, timed)
        time_base = 1 / self.frame_rate if self.frame_rate else info.time_base
        cc.time_base = vout.time_base = time_base
        if self.frame_rate:
            cc.framerate = self.frame_rate
        cc.flags |= av.codec.context.Flags.frame_duration   # honour frame.duration (#2241, #2335)
        cc.color_range, cc.colorspace = self.color_range, self.colorspace
        cc.color_primaries, cc.color_trc = self.color_primaries, self.color_trc = info.color_primaries, info.color_trc
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        if info.display_matrix is not None:
            vout.set_display_matrix(list(info.display_matrix))
        if self.suffix in _MOV_SUFFIXES and cc.codec.canonical_name == "hevc":
            # FFmpeg tags HEVC "hev1", which QuickTime, Safari and iPhones refuse to play; "hvc1"
            # (parameter sets in the header only, as an encoder with a global header writes) plays everywhere.
            cc.codec_tag = "hvc1"
        _label_like(vout, source_stream)
        self.dst_colorspace = self.colorspace if self.colorspace not in (0, 2) else None  # unspecified: swscale's default both ways
        self.dst_color_range = self.color_range or None

    def _transcoder(self, stream) -> tuple[_AudioTranscoder | _SubtitleTranscoder | None, str | None]:
        """A converter for a stream this container refuses as it is, and what it becomes; (None, None)
        where there is none (the stream is then skipped and said to be)."""
        if stream.type == "audio" and self.suffix in AUDIO_FALLBACK:
            encoder, bit_rate = AUDIO_FALLBACK[self.suffix]
            return _AudioTranscoder.open(stream, self.out, encoder, bit_rate), f"re-encoded as {encoder} {bit_rate // 1000}k"
        if stream.type == "subtitle" and self.suffix in SUBTITLE_FALLBACK:
            encoder = SUBTITLE_FALLBACK[self.suffix]
            return _SubtitleTranscoder.open(stream, self.out, encoder), f"converted to {encoder}"
        return None, None

    def _keep_timecode(self, stream) -> None:
        """A camera's timecode track (QuickTime tmcd) is no stream to copy: its start time is the video's
        "timecode" tag, which the muxers of MOV and MP4 (as a new track) and Matroska (as a tag) write."""
        timecode = stream.metadata["timecode"]
        if self.suffix in _MOV_SUFFIXES or self.suffix in (".mkv", ".webm"):
            self.copied.append(f"timecode {timecode} (rewritten from the video's tag)")
        else:
            self.skipped.append(f"{describe_stream(stream)} (timecode {timecode}; .mov, .mp4 and .mkv keep it)")

    @staticmethod
    def _unusable(stream) -> str | None:
        """Why ``stream`` can go nowhere, or None. Dropping it with a warning beats failing the whole
        job over, say, a GoPro telemetry track."""
        cc = stream.codec_context
        if codec_name(stream) == "none":
            return "unknown codec"
        if stream.type == "audio" and not (cc.sample_rate and cc.channels):
            return "no sample rate or channel layout, damaged?"
        return None

    def _refused(self, stream) -> str | None:
        """Why this container cannot hold ``stream`` as it is, or None. A trial header decides: the
        muxers' codec tables are partial (MPEG-TS lists MPEG-2 video, not AAC, and takes both) and
        say yes to what the header then refuses (Opus and FLAC in .mov)."""
        hint = "" if self.suffix == ".mkv" else "; try .mkv"
        readable = _READABLE.get(self.suffix)
        cc = stream.codec_context
        if readable is not None and stream.type in ("audio", "subtitle") \
                and (cc.codec.canonical_name if cc else codec_name(stream)) not in readable:
            return f"{codec_name(stream)} cannot be stored in {self.suffix} so that players find it{hint}"
        if self._header_takes(stream):
            return None
        return f"{codec_name(stream)} cannot be stored in {self.suffix or 'this container'}{hint}"

    def _header_takes(self, stream) -> bool:
        """Whether this muxer writes a header with ``stream`` in it: a trial in memory, as the real
        header is written only after the streams are all added."""
        trial = io.BytesIO()
        trial.name = f"trial{self.suffix}"
        try:
            container = av.open(trial, "w", format=self.out.format.name)
        except (av.error.FFmpegError, ValueError):
            return True   # cannot tell; the real header decides
        try:
            container.add_stream_from_template(stream)
            container.start_encoding()
            return True
        except (av.error.FFmpegError, ValueError):
            return False
        finally:
            try:
                container.close()
            except (av.error.FFmpegError, ValueError):
                pass

    def _cover_as_attachment(self, reader: VideoReader, stream) -> None:
        """Matroska keeps cover art as an attached picture file; copied as a stream, it became a second
        video track of one frame in FFmpeg's muxer."""
        name, mimetype = _COVER_FILES.get(codec_name(stream), (None, None))
        # A Matroska input's own attachments come as such streams too: they keep their names
        name, mimetype = stream.metadata.get("filename") or name, stream.metadata.get("mimetype") or mimetype
        data = reader.attached_picture(stream) if name else None
        if data is None:
            why = ("from a pipe or a stream it is not read ahead" if reader.streamed else "it could not be read") \
                if name else f"Matroska attaches JPEG or PNG, not {codec_name(stream)}"
            self.skipped.append(f"{describe_stream(stream)} (cover art: {why})")
            return
        self.out.add_attachment(name, mimetype, data)
        self.copied.append(f"{describe_stream(stream)} (cover art, attached as {name})")

    def _copy_attachments(self, reader: VideoReader) -> None:
        """Attached files (fonts for styled subtitles, cover art) live in the header; only Matroska
        stores them (other muxers refuse the header or drop them silently)."""
        for stream in reader.container.streams:
            if stream.type != "attachment":
                continue
            what = f"#{stream.index} attachment {stream.name}"
            if "matroska" not in self.out.format.name:
                self.skipped.append(f"{what} (attachments need an .mkv output)")
                continue
            self.out.add_attachment(stream.name, stream.mimetype or "application/octet-stream", bytes(stream.data))
            self.copied.append(what)

    def _copy_stream(self, stream):
        out = self.out.add_stream_from_template(stream)
        if stream.type == "audio" and out.codec_context is not None:
            # "2 channels" names no speakers (PCM from NUT, AVI, WAV): the MP4 muxer refuses it at the
            # very end, after every frame is done. FFmpeg's usual layout is what players assume anyway.
            layout = out.codec_context.layout
            if layout.name.endswith(" channels") and layout.nb_channels in _USUAL_LAYOUTS:
                out.codec_context.layout = _USUAL_LAYOUTS[layout.nb_channels]
        _label_like(out, stream)
        return out

    def _more_than_one_picture(self, what: str) -> VdeblurError:
        numbered = Path(self.label).with_name(f"{Path(self.label).stem}_%04d{self.suffix}")
        return VdeblurError(f"{self.label}: an image holds one picture, but the input has {what}; "
                            f"write a video (.mp4, .mkv) or an image sequence ({numbered}) instead")

    def write_frame(self, image: np.ndarray, pts: int, duration: int, time_base: Fraction,
                    alpha: np.ndarray | None = None, captions: av.VideoFrame | None = None) -> None:
        if self.one_picture and self.frames:
            raise self._more_than_one_picture("more than one frame")
        frame = self.to_frame(image, alpha)
        if self.weaver is None:
            self._write(frame, pts, duration, time_base, captions)
        elif (woven := self.weaver.add(frame, pts, duration, time_base, captions)) is not None:
            self._write(*woven)

    def _write(self, frame: av.VideoFrame, pts: int, duration: int, time_base: Fraction,
               captions: av.VideoFrame | None = None) -> None:
        if captions is not None and self.carries_captions:
            frame = with_captions(frame, captions)
        self.encode_frame(frame, pts, duration, time_base)

    def to_frame(self, image: np.ndarray, alpha: np.ndarray | None = None) -> av.VideoFrame:
        """RGB array (and the source's alpha, kept where the output format has alpha) -> frame in the
        output pixel format (split out so `vdeblur bench` can time it)."""
        wide = image.dtype == np.uint16
        if is_gray(self.pix_fmt) or self.neutral:   # swscale's RGB48 to grey16 is off by up to 164 of 65535
            luma = image.astype(np.float32) @ np.asarray(LUMA.get(self.colorspace, LUMA_601), np.float32)
            np.rint(luma, out=luma)
            luma = luma.astype(image.dtype)
        if self.neutral:
            image = np.repeat(luma[..., None], 3, axis=2)
        if is_gray(self.pix_fmt):   # ya8's alpha is off by 1 through swscale too
            if self.pix_fmt.startswith("ya"):
                frame = _packed_frame(np.dstack([luma, alpha if alpha is not None else np.full_like(luma, -1)]),
                                      "ya16le" if wide else "ya8")
            else:
                frame = av.VideoFrame.from_ndarray(luma, format="gray16le" if wide else "gray")
            frame = frame.reformat(format=self.pix_fmt, threads=1)   # bit depth and byte order only
        else:
            with_alpha = alpha is not None and self.keeps_alpha
            frame = _full_range_frame(image, self.pix_fmt, self.colorspace) \
                if self.color_range == 2 and not with_alpha else None
            if frame is None:
                frame = av.VideoFrame.from_ndarray(np.dstack([image, alpha]), format="rgba64le" if wide else "rgba") \
                    if with_alpha else av.VideoFrame.from_ndarray(image, format="rgb48le" if wide else "rgb24")
                # Explicit matrix: an untagged RGB frame would otherwise be converted with BT.601 (notes 5.6).
                frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.dst_colorspace,
                                       dst_color_range=self.dst_color_range, interpolation=WRITE_INTERPOLATION, threads=1)
                if with_alpha and self.pix_fmt.startswith("yuva"):
                    _put_alpha(frame, alpha)   # swscale's RGBA to YUVA is off by 1 in alpha
        # Image encoders read these from the frame, not the stream (PNG's sRGB, gAMA and cHRM chunks).
        frame.color_primaries, frame.color_trc = self.color_primaries, self.color_trc
        return frame

    def encode_frame(self, frame: av.VideoFrame, pts: int, duration: int, time_base: Fraction) -> None:
        if self._last_pts is not None and pts <= self._last_pts:
            self.dropped_frames += 1
            return
        self._last_pts = pts
        if self.frame_rate:
            pts, duration, time_base = self._on_the_grid(pts, duration, time_base)
        frame.pts, frame.duration, frame.time_base = pts, duration, time_base
        self._mux(self._encode(frame))
        self.frames += 1

    def _on_the_grid(self, pts: int, duration: int, time_base: Fraction) -> tuple[int, int, Fraction]:
        """A source time on the fixed rate's ticks. A faster stretch of VFR source (two frames in one
        tick) moves the later frame to the next tick rather than losing it; time catches up after."""
        tick = 1 / self.frame_rate
        slot = round(pts * time_base / tick)
        if self._last_slot is not None and slot <= self._last_slot:
            slot = self._last_slot + 1
        self._last_slot = slot
        return slot, max(1, round(duration * time_base / tick)), tick

    def _encode(self, frame: av.VideoFrame | None) -> list:
        try:
            packets = self.video.encode(frame)
        except av.error.FFmpegError as e:
            raise VdeblurError(f"{self.label}: encoder {self.video.codec_context.name} failed ({e.strerror or e})") from None
        for packet in packets:
            repair_dts(packet)
        return packets

    def write_encoded(self, packet: av.Packet) -> None:
        """One video packet encoded earlier by an encoder set up like this one (pts/dts in its
        ``time_base``). Each segment's encoder started afresh, so its first decode timestamps can
        fall before the last segment's: they are moved up, never past their own pts."""
        repair_dts(packet)   # segments kept by a version that did not repair them
        dts, last = packet.dts, self._last_video_dts
        if dts is not None and last is not None and dts <= last:
            if packet.pts is not None and last + 1 > packet.pts:
                raise VdeblurError(f"{self.label}: video packet at pts {packet.pts} cannot follow dts {last}")
            packet.dts = dts = last + 1
        self._last_video_dts = dts if dts is not None else last
        packet.stream = self.video
        self._mux(packet)
        self.frames += 1

    def write_packet(self, packet: av.Packet) -> None:
        index = packet.stream_index
        if index in self.transcoders:
            self._mux(self.transcoders[index].encode(packet))
            return
        if index not in self.stream_map:
            return   # a stream this container cannot hold (reported in ``skipped``)
        if packet.dts is not None:
            last = self._last_dts.get(index)
            strict = packet.stream.type == "audio"   # FFmpeg allows equal dts only for subtitles/data
            if last is not None and (packet.dts < last or (strict and packet.dts == last)):
                self.dropped_packets += 1
                return
            self._last_dts[index] = packet.dts
        packet.stream = self.stream_map[index]
        self._mux(packet)

    def _mux(self, packets) -> None:
        if self.packet_sink is not None:
            self.packet_sink(packets)
            return
        try:
            self.out.mux(packets)
        except av.error.FFmpegError as e:
            raise VdeblurError(f"{self.label}: writing failed ({e.strerror or e})") from None

    def close(self) -> None:
        """Flush the encoders and write the trailer; without this the last frames and the index are lost."""
        if self.weaver is not None and (last := self.weaver.flush()) is not None:
            self._write(*last)
        self._mux(self._encode(None))
        for transcoder in self.transcoders.values():
            self._mux(transcoder.encode(None))
        try:
            self.out.close()
        except av.error.FFmpegError as e:   # the muxer's last word (MP4's index) refused: one line, not a traceback
            if e.errno in _FILE_ERRNOS:
                raise VdeblurError(f"{self.label}: cannot finish writing ({e.strerror})") from None
            raise VdeblurError(f"{self.label}: cannot finish writing ({e.strerror or e}); copied streams: "
                               f"{', '.join(self.copied) or 'none'}; try .mkv") from None
        if self.keeps_photo_tags and (self.icc_profile or self.exif) and self.packet_sink is None:   # not a segment
            photo_tags.embed(self.path, icc=self.icc_profile, exif=self.exif)

    def abort(self) -> None:
        try:
            self.out.close()
        except Exception:  # noqa: BLE001 - the partial file is deleted anyway
            pass

