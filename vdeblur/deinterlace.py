"""Deinterlacing before the model: FFmpeg's bwdif, one progressive frame per interlaced frame.

An interlaced frame holds two fields, pictures taken 1/50 or 1/60 s apart on alternate lines. The
network takes a frame as one picture, so moving edges arrive combed and come out as stripes.
FFmpeg's bwdif (yadif's motion-adaptive scheme with w3fdif's and cubic interpolation) rebuilds each
frame from its first field, taking the other field's lines where nothing moves. By default one frame
comes out per frame in ("send_frame"), so the frame count, the timestamps and everything keyed on
them (resume segments, the read-back) are those of the source; each output frame keeps its source
frame's timestamp, duration and tags. With double rate ("send_field") each field becomes a frame:
50i gives 50p, and the motion of every field is kept, at twice the frames to deblur.

Re-interlacing (``--reinterlace``) undoes double rate after the model: each pair of frames made
from one frame's two fields is woven back into one interlaced frame, each field's lines taken from
the deblurred frame of that field's moment, so the output has the source's frames, rate and field
order, and the encoder codes it as interlaced (:class:`Weaver`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .errors import VdeblurError

if TYPE_CHECKING:   # PyAV is imported when frames come, so the CLI's options load without it
    import av

#: --deinterlace choices: auto = the frames the decoder flags interlaced, unless idet finds the
#: pictures clearly say otherwise (see :meth:`Detection.resolve`);
#: tff/bff = every frame, top or bottom field first (for interlaced video flagged progressive:
#: DV is usually bff, HD tff); off = every frame as one picture.
MODES = ("auto", "tff", "bff", "off")
# Elementary streams (.h264) give frames no time base; bwdif only needs a valid one.
_ANY_TIME_BASE = Fraction(1, 90000)
#: The field shown first under each field order, as messages name it.
FIRST_FIELD = {"tff": "top", "bff": "bottom"}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise VdeblurError(f"--deinterlace must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


#: Frames FFmpeg's idet looks at before a run (from the part's start), and the votes it takes, and
#: the margin over the other side, for the pictures to overrule the stream's flags.
DETECT_FRAMES = 100
CLEAR_VOTES = 5
CLEAR_MARGIN = 3


@dataclass(frozen=True)
class Detection:
    """What the flags and the pictures say: idet's multi-frame verdicts (undetermined ones left out)."""

    flagged: bool   # the decoder flags the first frame interlaced
    tff: int
    bff: int
    progressive: int
    frames: int     # frames looked at

    @property
    def order(self) -> str | None:
        """The field order the pictures clearly show ("tff", "bff"), or None. Flags can have it wrong
        (a capture's bff DV tagged tff), which at double rate plays every pair of fields backwards."""
        woven = self.tff + self.bff
        if woven < CLEAR_VOTES or woven < CLEAR_MARGIN * self.progressive:
            return None
        if self.tff >= CLEAR_MARGIN * self.bff:
            return "tff"
        return "bff" if self.bff >= CLEAR_MARGIN * self.tff else None

    def resolve(self) -> tuple[str, str | None]:
        """The mode "auto" means for this input, and the line that says so where the pictures
        overrule the flags: progressive content in an interlaced stream (25PsF, AVCHD 25p) is left
        whole, and woven fields flagged progressive (captures, CCTV exports) are deinterlaced. Where
        the flags are kept, ``order`` gives bwdif the field order."""
        woven = self.tff + self.bff
        seen = f"FFmpeg's idet, first {self.frames} frames"
        if self.flagged and self.progressive >= CLEAR_VOTES and self.progressive >= CLEAR_MARGIN * woven:
            return "off", (f"the input is flagged interlaced, but its pictures are progressive ({seen}: "
                           f"{self.progressive} progressive, {woven} interlaced), so frames are left whole; "
                           "--deinterlace tff or bff deinterlaces them anyway")
        if not self.flagged and woven >= CLEAR_VOTES and woven >= CLEAR_MARGIN * self.progressive:
            order = "tff" if self.tff >= self.bff else "bff"
            return order, (f"the input is flagged progressive, but its pictures are interlaced, "
                           f"{FIRST_FIELD[order]} field first ({seen}: {woven} interlaced, "
                           f"{self.progressive} progressive), so frames are deinterlaced as --deinterlace {order} "
                           "does; --deinterlace off leaves them whole")
        return "auto", None


def detect(frames: Iterator[av.VideoFrame], limit: int = DETECT_FRAMES) -> Detection | None:
    """Run idet over the first ``limit`` of ``frames`` (up to a change of size); None if it cannot."""
    import av

    graph, first, last, count = None, None, None, 0
    try:
        for frame in frames:
            if first is None:
                first = frame
                graph = av.filter.Graph()
                source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                          time_base=frame.time_base or _ANY_TIME_BASE)
                idet, sink = graph.add("idet"), graph.add("buffersink")
                source.link_to(idet)
                idet.link_to(sink)
                graph.configure()
            elif (frame.width, frame.height, frame.format.name) != (first.width, first.height, first.format.name):
                break
            graph.push(frame)
            count += 1
            try:
                last = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                pass
            if count >= limit:
                break
    except av.error.FFmpegError:
        return None
    if last is None:
        return None
    prefix = "lavfi.idet.multiple."
    votes = {k[len(prefix):]: round(float(v)) for k, v in last.metadata.items() if k.startswith(prefix)
             and k[len(prefix):] in ("tff", "bff", "progressive")}
    return Detection(bool(first.interlaced_frame), votes.get("tff", 0), votes.get("bff", 0),
                     votes.get("progressive", 0), count)


def _filter_args(mode: str, double: bool, order: str | None = None) -> str:
    parity = mode if mode != "auto" else order or "auto"
    deint = "interlaced" if mode == "auto" and not double else "all"
    return f"mode={'send_field' if double else 'send_frame'}:parity={parity}:deint={deint}"


class Deinterlacer:
    """Turns decoded frames into progressive ones, in order. ``rebuilt`` says whether the frame it
    gave last was rebuilt by bwdif.

    With ``double_rate`` an interlaced stream (its first frame flagged, or mode tff/bff) gives one
    frame per field, each half its source frame's duration long, in half its time base; whether it
    does is ``doubling``, decided at the first frame, or given (a reader going on after a seek
    keeps its first decision). ``order`` ("tff", "bff") overrides the flags' field order in auto mode.
    """

    def __init__(self, mode: str = "auto", double_rate: bool = False, doubling: bool | None = None,
                 order: str | None = None):
        self.mode = check_mode(mode)
        self.order = order
        self.double_rate = double_rate
        self.doubling = doubling
        self.saw_interlaced = False   # some frame was flagged interlaced by the decoder
        self.rebuilt = False
        self.second_field = False   # the frame given last is made from its source frame's second field
        self._graph: av.filter.Graph | None = None
        self._shape: tuple | None = None
        self._sources: deque = deque()   # [frame, rebuilt, outputs still to come] of frames pushed

    def process(self, decoded: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        for frame in decoded:
            interlaced = bool(frame.interlaced_frame)
            self.saw_interlaced |= interlaced
            if self.doubling is None:
                self.doubling = self.double_rate and self.mode != "off" and (interlaced or self.mode != "auto")
            if self.mode == "off" or (self._graph is None and not (interlaced or self.doubling) and self.mode == "auto"):
                self.rebuilt = self.second_field = False
                yield frame   # nothing to do yet: progressive frames before the first interlaced one
                continue
            shape = (frame.width, frame.height, frame.format.name)
            if shape != self._shape:   # a stream that changes size or format: a graph for the new one
                yield from self._flush()
                self._graph, self._shape = self._build(frame), shape
            self._sources.append([frame, interlaced or self.mode != "auto" or self.doubling, 2 if self.doubling else 1])
            self._push(frame)
            yield from self._pulled()
        yield from self._flush()

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        import av

        graph = av.filter.Graph()
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                  time_base=frame.time_base or _ANY_TIME_BASE)
        bwdif = graph.add("bwdif", _filter_args(self.mode, self.doubling, self.order))
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
            entry = self._sources[0]
            source, self.rebuilt = entry[0], entry[1]
            self.second_field = self.doubling and entry[2] == 1   # the later of a frame's two field frames
            entry[2] -= 1
            if not entry[2]:
                self._sources.popleft()
            yield self._restamped(out, source)

    def _flush(self) -> Iterator[av.VideoFrame]:
        if self._graph is None:
            return
        self._push(None)
        yield from self._pulled()
        if self._sources:   # bwdif gives one frame per frame or field; anything else is a bug, not bad input
            raise RuntimeError(f"bwdif kept {len(self._sources)} frame(s)")
        self._graph = self._shape = None

    def _restamped(self, out: av.VideoFrame, source: av.VideoFrame) -> av.VideoFrame:
        """bwdif counts in half its input's time base. One frame per frame takes back the source's
        timing; one per field keeps bwdif's (the second field halfway to the next frame) and lasts
        half the source frame. Either way the source's colour tags are kept."""
        if self.doubling:
            out.duration = source.duration   # a number of half time-base units: half the frame
            if source.time_base is None:
                out.time_base = None
        else:
            out.pts, out.time_base, out.duration = source.pts, source.time_base, source.duration
        out.color_range, out.colorspace = source.color_range, source.colorspace
        out.color_primaries, out.color_trc = source.color_primaries, source.color_trc
        return out


#: Encoders that code interlaced video, and the options that make them do so (beside the frames'
#: field flags and the stream's field order, which every one is given).
INTERLACED_ENCODERS = {
    "libx264": lambda order: {"x264-params": f"{order}=1"},   # PAFF/MBAFF field coding, that field first
    "mpeg2video": lambda order: {"flags": "+ildct+ilme"},
    "prores_ks": lambda order: {"flags": "+ildct"},
    "ffv1": lambda order: {},   # lossless: the lines are kept whatever the coding; the flags say the order
}
#: AVCodecContext.field_order values: coded and shown top first, bottom first (then the two mixed orders).
_FIELD_ORDERS = {2: "tff", 3: "bff", 4: "tff", 5: "bff"}


def field_order_of(code: int | None) -> str | None:
    """An AVFieldOrder code (a decoder's ``codec_context.field_order``) as "tff" or "bff"; None if progressive or unknown."""
    return _FIELD_ORDERS.get(code or 0)


def weave(first: av.VideoFrame, second: av.VideoFrame, order: str) -> av.VideoFrame:
    """The two frames bwdif made of one interlaced frame's fields (in time order), after the model,
    back into one frame: the first field's lines from ``first``, the second's from ``second``, in
    every plane (chroma lines of 4:2:0 alternate between the fields as luma lines do). In place, into ``first``."""
    second_field = 1 if order == "tff" else 0   # the rows of the later field: bottom ones when top comes first
    for a, b in zip(first.planes, second.planes):
        mine = np.frombuffer(a, np.uint8).reshape(a.height, -1)
        theirs = np.frombuffer(b, np.uint8).reshape(b.height, -1)
        mine[second_field::2] = theirs[second_field::2]
    return first


class Weaver:
    """Re-interlacing for a writer: frames in pairs (each field's deblurred frame, in time order) in,
    one interlaced frame out per pair, flagged with its field order by FFmpeg's setfield."""

    def __init__(self, order: str):
        self.order = order
        self._held: tuple | None = None   # (frame, pts, duration, time base, captions) of the first field
        self._graph: av.filter.Graph | None = None

    def add(self, frame: av.VideoFrame, pts: int, duration: int, time_base: Fraction, captions=None):
        """The woven frame and its (pts, duration, time base, captions) once a pair is complete, else None."""
        if self._held is None:
            self._held = (frame, pts, duration, time_base, captions)
            return None
        first, first_pts, first_duration, _, first_captions = self._held
        self._held = None
        return (self._flagged(weave(first, frame, self.order), first_pts, time_base),
                first_pts, first_duration + duration, time_base, first_captions)

    def flush(self):
        """A last field left without its partner (a part that ends mid-frame): both fields from it."""
        if self._held is None:
            return None
        frame, pts, duration, time_base, captions = self._held
        self._held = None
        return self._flagged(frame, pts, time_base), pts, 2 * duration, time_base, captions

    def _flagged(self, frame: av.VideoFrame, pts: int, time_base: Fraction) -> av.VideoFrame:
        import av

        if self._graph is None:
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                      time_base=time_base or _ANY_TIME_BASE)
            setfield = graph.add("setfield", self.order)
            sink = graph.add("buffersink")
            source.link_to(setfield)
            setfield.link_to(sink)
            graph.configure()
            self._graph = graph
        frame.pts, frame.time_base = pts, time_base or _ANY_TIME_BASE
        self._graph.push(frame)
        return self._graph.pull()
