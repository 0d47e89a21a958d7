"""Deinterlacing before the model: FFmpeg's bwdif, one progressive frame per interlaced frame.

An interlaced frame holds two fields, pictures taken 1/50 or 1/60 s apart on alternate lines. The
network takes a frame as one picture, so moving edges arrive combed and come out as stripes.
FFmpeg's bwdif (yadif's motion-adaptive scheme with w3fdif's and cubic interpolation) rebuilds each
frame from its first field, taking the other field's lines where nothing moves. One frame comes out per
frame in ("send_frame"), so the frame count, the timestamps and everything keyed on them (resume
segments, the read-back) are those of the source; each output frame keeps its source frame's
timestamp, duration and tags.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING

from .errors import VdeblurError

if TYPE_CHECKING:   # PyAV is imported when frames come, so the CLI's options load without it
    import av

#: --deinterlace choices: auto = the frames the decoder flags interlaced (FFmpeg's own test);
#: tff/bff = every frame, top or bottom field first (for interlaced video flagged progressive:
#: DV is usually bff, HD tff); off = every frame as one picture.
MODES = ("auto", "tff", "bff", "off")
# Elementary streams (.h264) give frames no time base; bwdif only needs a valid one.
_ANY_TIME_BASE = Fraction(1, 90000)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise VdeblurError(f"--deinterlace must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _filter_args(mode: str) -> str:
    parity = "auto" if mode == "auto" else mode
    deint = "interlaced" if mode == "auto" else "all"
    return f"mode=send_frame:parity={parity}:deint={deint}"


class Deinterlacer:
    """Turns decoded frames into progressive ones, in order. ``rebuilt`` says whether the frame it
    gave last was interlaced (and so rebuilt by bwdif)."""

    def __init__(self, mode: str = "auto"):
        self.mode = check_mode(mode)
        self.saw_interlaced = False   # some frame was flagged interlaced by the decoder
        self.rebuilt = False
        self._graph: av.filter.Graph | None = None
        self._shape: tuple | None = None
        self._sources: deque = deque()   # frames pushed whose output has not come out yet

    def process(self, decoded: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        for frame in decoded:
            interlaced = bool(frame.interlaced_frame)
            self.saw_interlaced |= interlaced
            if self.mode == "off" or (self._graph is None and not interlaced and self.mode == "auto"):
                self.rebuilt = False
                yield frame   # nothing to do yet: progressive frames before the first interlaced one
                continue
            shape = (frame.width, frame.height, frame.format.name)
            if shape != self._shape:   # a stream that changes size or format: a graph for the new one
                yield from self._flush()
                self._graph, self._shape = self._build(frame), shape
            self._sources.append((frame, interlaced or self.mode != "auto"))
            self._push(frame)
            yield from self._pulled()
        yield from self._flush()

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        import av

        graph = av.filter.Graph()
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                  time_base=frame.time_base or _ANY_TIME_BASE)
        bwdif = graph.add("bwdif", _filter_args(self.mode))
        sink = graph.add("buffersink")
        source.link_to(bwdif)
        bwdif.link_to(sink)
        try:
            graph.configure()
        except av.error.FFmpegError as e:
            raise VdeblurError(f"cannot deinterlace {frame.width}x{frame.height} {frame.format.name} frames "
                               f"({e.strerror}); use --deinterlace off") from None
        return graph

    def _push(self, frame: av.VideoFrame | None) -> None:
        import av

        try:
            self._graph.push(frame)
        except av.error.FFmpegError as e:
            raise VdeblurError(f"deinterlacing failed ({e.strerror}); use --deinterlace off") from None

    def _pulled(self) -> Iterator[av.VideoFrame]:
        import av

        while self._sources:
            try:
                out = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            source, self.rebuilt = self._sources.popleft()
            yield self._restamped(out, source)

    def _flush(self) -> Iterator[av.VideoFrame]:
        if self._graph is None:
            return
        self._push(None)
        yield from self._pulled()
        if self._sources:   # bwdif gives one frame per frame; anything else is a bug, not bad input
            raise RuntimeError(f"bwdif kept {len(self._sources)} frame(s)")
        self._graph = self._shape = None

    @staticmethod
    def _restamped(out: av.VideoFrame, source: av.VideoFrame) -> av.VideoFrame:
        """bwdif halves the time base (room for field-rate output); give back the source's timing and tags."""
        out.pts, out.time_base, out.duration = source.pts, source.time_base, source.duration
        out.color_range, out.colorspace = source.color_range, source.colorspace
        out.color_primaries, out.color_trc = source.color_primaries, source.color_trc
        return out
