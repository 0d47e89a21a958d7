"""`deblur --region`: deblur rectangles of each frame and leave the rest as decoded.

A number plate, a face or a sign is often all that needs to be read, and the model's cost grows with
the pixels it sees: a 320x180 region of a 1080p frame costs about a twentieth of the frame on a CPU.
The network sees the rectangle plus up to :data:`CONTEXT` pixels around it, so motion that crosses the
rectangle's border is seen whole; only the rectangle itself is written back, so every pixel outside it
is the decoder's own.

Several rectangles (``--region`` given again) each go to the network on their own, with their own
context; where two overlap, the later one's result is kept there.

The rectangle is given as the picture is shown: for video stored on its side with a rotation tag
(phones), it is turned into the stored frame's coordinates, which is what the model gets.
"""

from __future__ import annotations

import numpy as np

from .backends.base import Backend, Pending, Wrapper, submit_within
from .errors import VdeblurError

#: Pixels of the frame around the region that the network sees (as much as ``--tile-overlap``'s default).
CONTEXT = 32

Region = tuple[int, int, int, int]   # left, top, width, height


def parse_region(value: str | Region | None) -> Region | None:
    """``--region X,Y,W,H`` as four integers (left, top, width, height); None: the whole frame."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parts = tuple(int(v) for v in value.replace(" ", "").split(","))
        except ValueError:
            parts = ()
    else:
        parts = tuple(int(v) for v in value)
    if len(parts) != 4:
        raise VdeblurError(f"--region {value!r}: expected LEFT,TOP,WIDTH,HEIGHT in pixels, e.g. 640,360,320,180")
    x, y, w, h = parts
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise VdeblurError(f"--region {value!r}: the corner must not be negative and the size at least 1x1")
    return parts


def parse_regions(value) -> list[Region] | None:
    """One ``--region`` or several: a string or four integers, or a list of them; None: the whole frame."""
    if value is None:
        return None
    one = isinstance(value, str) or (len(value) == 4 and all(isinstance(v, (int, np.integer)) for v in value))
    regions = [parse_region(value)] if one else [parse_region(v) for v in value]
    if not regions:
        raise VdeblurError("--region: no rectangle given")
    return regions


def describe_regions(regions: list[Region]) -> str:
    """For the summary line: "region 320x180 at 640,360", or several joined by "and"."""
    word = "region" if len(regions) == 1 else "regions"
    return f"{word} " + " and ".join(f"{w}x{h} at {x},{y}" for x, y, w, h in regions)


def stored_region(region: Region, shown: tuple[int, int], steps: tuple[bool, bool, bool] | None) -> Region:
    """The rectangle of the stored frame that is shown as ``region``.

    ``shown`` is the picture's (width, height) as shown; ``steps`` are :func:`vdeblur.video.orientation`'s
    (transpose, flip left-right, flip top-bottom), applied in that order to show the stored frame.
    The region must lie inside the shown picture (one-line error otherwise)."""
    x, y, w, h = region
    width, height = shown
    if x + w > width or y + h > height:
        raise VdeblurError(f"--region {x},{y},{w},{h} reaches past the {width}x{height} picture "
                           f"(it ends at {x + w},{y + h})")
    transpose, flip_x, flip_y = steps or (False, False, False)
    if flip_y:
        y = height - y - h
    if flip_x:
        x = width - x - w
    if transpose:
        x, y, w, h = y, x, h, w
    return x, y, w, h


class RegionBackend(Wrapper):
    """Wraps a backend: it gets each region plus context, and only the regions of its output are kept."""

    def __init__(self, inner: Backend, regions: Region | list[Region], context: int = CONTEXT):
        super().__init__(inner)
        self.context = context
        self.regions = [regions] if isinstance(regions, tuple) else list(regions)
        # Each batch is several of the inner backend's: as many whole batches as it holds.
        self.batches_in_flight = max(1, inner.batches_in_flight // len(self.regions))

    def _window(self, region: Region, height: int, width: int) -> tuple[int, int, int, int]:
        x, y, w, h = region
        c = self.context
        return max(0, y - c), min(height, y + h + c), max(0, x - c), min(width, x + w + c)

    def submit(self, frames: np.ndarray) -> Pending:
        windows = [self._window(region, frames.shape[1], frames.shape[2]) for region in self.regions]
        handles = submit_within(self.inner, (np.ascontiguousarray(frames[:, top:bottom, left:right])
                                             for top, bottom, left, right in windows))
        return _Pasted(frames, [(region, (top, left), handle)
                                for region, (top, _, left, _), handle in zip(self.regions, windows, handles)])

    def describe(self) -> dict:
        return {**self.inner.describe(), "regions": [list(r) for r in self.regions]}


class _Pasted(Pending):
    """The inner backend's results for the windows, each region written into a copy of the whole frames."""

    def __init__(self, frames: np.ndarray, parts: list[tuple[Region, tuple[int, int], Pending]]):
        self.frames, self.parts = frames, parts

    def result(self) -> np.ndarray:
        whole = self.frames.copy()
        for (x, y, w, h), (top, left), handle in self.parts:
            out = handle.result()
            whole[:, y:y + h, x:x + w] = out[:, y - top:y - top + h, x - left:x - left + w]
        return whole
