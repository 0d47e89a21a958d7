"""Overlapping tiles for frames too large for the device: any backend, no visible seams.

Each tile is deblurred on its own; where tiles overlap, their outputs are blended with weights that
ramp linearly from the tile's edge, so every pixel is a convex mix and the content near a tile's
border (where the network sees the least context) counts least.
"""

from __future__ import annotations

import numpy as np

from .backends.base import Backend, Pending
from .errors import VdeblurError


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride ``tile - overlap``, the last tile flush with the edge."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(size: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    """1-D blend weights: 1 inside, (i+1)/(overlap+1) over ``overlap`` pixels on each shared side."""
    w = np.ones(size, np.float32)
    if overlap:
        edge = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
        if rise:
            w[:overlap] = np.minimum(w[:overlap], edge)
        if fall:
            w[-overlap:] = np.minimum(w[-overlap:], edge[::-1])
    return w


TileSize = tuple[int, int]   # (width, height), the order of WxH on the command line


def parse_tile(value: int | str | TileSize | None) -> TileSize | None:
    """``--tile``'s value as (width, height): N is N x N, "WxH" a rectangle; 0 or None: whole frames."""
    if value is None or isinstance(value, int):
        w = h = value or 0
    elif isinstance(value, str):
        try:
            sides = [int(v) for v in value.lower().split("x")]
        except ValueError:
            sides = []
        if len(sides) not in (1, 2):
            raise VdeblurError(f"--tile {value!r}: expected N or WIDTHxHEIGHT, e.g. 512 or 672x400")
        w, h = sides if len(sides) == 2 else sides * 2
    else:
        w, h = value
    if w == h == 0:
        return None
    if w < 16 or h < 16:
        given = value if isinstance(value, str) else (w if w == h else f"{w}x{h}")
        raise VdeblurError(f"--tile must be at least 16 pixels on each side, got {given}")
    return int(w), int(h)


#: --tile-overlap's default, where the tile has room for it.
DEFAULT_OVERLAP = 32


def fitted_overlap(size: TileSize | None, overlap: int | None) -> int:
    """The overlap to use: as given, or (None) the default, made smaller where a small tile has no room for it."""
    if overlap is not None:
        return overlap
    return DEFAULT_OVERLAP if size is None else max(0, min(DEFAULT_OVERLAP, min(size) // 2 - 1))


def check_tiling(tile: int | str | TileSize | None, overlap: int | None) -> TileSize | None:
    """Parse and check ``--tile`` with ``--tile-overlap`` (None: the default, fitted) before any work; None: no tiling."""
    size = parse_tile(tile)
    overlap = fitted_overlap(size, overlap)
    if size is not None and not 0 <= overlap < min(size) // 2:
        raise VdeblurError(f"--tile-overlap must be between 0 and half the tile's shorter side "
                           f"({min(size) // 2 - 1}), got {overlap}")
    if overlap < 0:   # also used when frames are tiled on their own, after running out of memory
        raise VdeblurError(f"--tile-overlap must be >= 0, got {overlap}")
    return size


def format_tile(size: TileSize) -> str:
    return f"{size[0]}x{size[1]}"


class TiledBackend(Backend):
    """Wraps a backend: frames larger than the tile go through it as overlapping width x height crops."""

    def __init__(self, inner: Backend, tile: int | str | TileSize, overlap: int | None = None):
        size = check_tiling(tile, overlap)
        if size is None:
            raise VdeblurError("TiledBackend needs a tile size")
        self.inner, self.overlap = inner, fitted_overlap(size, overlap)
        self.tile_w, self.tile_h = size
        self.name = inner.name
        self.accepts_uint16 = inner.accepts_uint16

    def tile_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(height, width) of each crop a frame of this size goes through the model as."""
        if height <= self.tile_h and width <= self.tile_w:
            return [(height, width)]
        count = len(tile_starts(height, self.tile_h, self.overlap)) * len(tile_starts(width, self.tile_w, self.overlap))
        return [(min(self.tile_h, height), min(self.tile_w, width))] * count

    def run(self, frames: np.ndarray) -> np.ndarray:
        n, h, w, c = frames.shape
        if h <= self.tile_h and w <= self.tile_w:
            return self.inner.run(frames)
        ys, xs = tile_starts(h, self.tile_h, self.overlap), tile_starts(w, self.tile_w, self.overlap)
        th, tw = min(self.tile_h, h), min(self.tile_w, w)
        acc = np.zeros((n, h, w, c), np.float32)
        norm = np.zeros((h, w, 1), np.float32)
        for i, y in enumerate(ys):
            wy = _ramp(th, self.overlap, rise=i > 0, fall=i < len(ys) - 1)
            for j, x in enumerate(xs):
                wx = _ramp(tw, self.overlap, rise=j > 0, fall=j < len(xs) - 1)
                weight = (wy[:, None] * wx[None, :])[..., None]
                out = self.inner.run(np.ascontiguousarray(frames[:, y:y + th, x:x + tw]))
                acc[:, y:y + th, x:x + tw] += out * weight
                norm[y:y + th, x:x + tw] += weight
        acc /= norm
        return np.rint(acc).astype(frames.dtype)

    def describe(self) -> dict:
        return {**self.inner.describe(), "tile": [self.tile_w, self.tile_h], "tile_overlap": self.overlap}

    def close(self) -> None:
        self.inner.close()


#: What torch (CUDA and CPU allocators), ONNX Runtime and pycuda say when memory runs out.
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate memory")

#: The smallest side the fallback cuts tiles to: below it the network sees too little context.
MIN_TILE = 128


def is_out_of_memory(error: BaseException) -> bool:
    """ONNX Runtime's errors are plain Exceptions, so the words decide, not the type."""
    return isinstance(error, MemoryError) or (
        isinstance(error, Exception) and any(words in str(error).lower() for words in _OUT_OF_MEMORY))


def smaller_tile(tile: TileSize, overlap: int, least: int) -> TileSize | None:
    """About half the area: the longer side cut so two tiles cover it (a multiple of 16), or else
    the shorter one; None when both are down to ``least``."""
    for side in sorted((0, 1), key=lambda i: -tile[i]):
        cut = -(-(tile[side] + overlap) // 32) * 16   # ceil((L + overlap) / 2), rounded up to 16
        if least <= cut < tile[side]:
            return (cut, tile[1]) if side == 0 else (tile[0], cut)
    return None


class OutOfMemoryFallback(Backend):
    """Wraps a backend so that running out of memory costs speed, not the run.

    A batch that runs out of memory is redone one frame at a time, then in tiles of about half
    the area, and again down to ``min_tile``; what fitted is kept for the rest of the run.
    ``notify`` hears each step, which names the ``--batch``/``--tile`` that start there next time.
    Retries happen outside the ``except`` clause, so the failed attempt's tensors (held by the
    traceback) are freed first.
    """

    def __init__(self, inner: Backend, tile: int | str | TileSize | None = None, overlap: int = 32,
                 notify=None, min_tile: int = MIN_TILE):
        self.inner, self.overlap, self.notify = inner, overlap, notify
        self.least = max(min_tile, 2 * overlap + 2)   # check_tiling wants overlap < side / 2
        self.name, self.accepts_uint16 = inner.name, inner.accepts_uint16
        self.batches_in_flight = inner.batches_in_flight   # its submit is the inner one's until memory runs out
        self.tile: TileSize | None = None
        self.runner: Backend = inner
        self.one_at_a_time = False
        self.steps: list[str] = []   # what running out of memory changed, in order
        size = check_tiling(tile, overlap)
        if size is not None:
            self._use_tile(size)

    def _use_tile(self, size: TileSize) -> None:
        self.tile, self.runner = size, TiledBackend(self.inner, size, self.overlap)

    def run(self, frames: np.ndarray) -> np.ndarray:
        return self.submit(frames).result()

    def submit(self, frames: np.ndarray) -> Pending:
        if not self.steps:   # nothing has run out yet: the inner backend's own (overlapped) submit
            try:
                return _Guarded(self, self.runner.submit(frames), frames)
            except Exception as e:   # noqa: BLE001 - anything else is re-raised
                if not is_out_of_memory(e):
                    raise
            return Pending(self._fit(frames, failed=True))
        return Pending(self._fit(frames, failed=False))

    def _fit(self, frames: np.ndarray, failed: bool) -> np.ndarray:
        """``frames`` through the current plan, made smaller after each time memory runs out."""
        while True:
            if failed:
                self._shrink(frames.shape)
            try:
                if self.one_at_a_time and len(frames) > 1:
                    return np.concatenate([self.runner.run(frames[i:i + 1]) for i in range(len(frames))])
                return self.runner.run(frames)
            except Exception as e:   # noqa: BLE001
                if not is_out_of_memory(e):
                    raise
            failed = True

    def _shrink(self, shape: tuple) -> None:
        """One step smaller, with a note; a one-line error when nothing smaller is left."""
        n, h, w, _ = shape
        self.inner.release_memory()
        if n > 1 and not self.one_at_a_time:
            self.one_at_a_time = True
            self._note(f"out of memory on a batch of {n} frames of {w}x{h}; going on one frame at a time "
                       f"(--batch 1 starts there)")
            return
        tiled = self.tile is not None and (self.tile[0] < w or self.tile[1] < h)
        current = (min(self.tile[0], w), min(self.tile[1], h)) if tiled else (w, h)
        smaller = smaller_tile(current, self.overlap, self.least)
        where = f"{format_tile(current)} tiles" if tiled else f"{w}x{h} frames"
        if smaller is None:
            raise VdeblurError(f"out of memory running the model on one {w}x{h} frame"
                               + (f" even in {where}" if tiled else "")
                               + "; free the device's memory (other programs?) or use another --device")
        self._use_tile(smaller)
        self._note(f"out of memory on {where}; going on in {format_tile(smaller)} tiles, slower "
                   f"(--tile {format_tile(smaller)} starts there)")

    def _note(self, line: str) -> None:
        self.steps.append(line)
        if self.notify:
            self.notify(line)

    def release_memory(self) -> None:
        self.inner.release_memory()

    def describe(self) -> dict:
        facts = self.runner.describe()
        if self.steps:
            facts["out_of_memory"] = list(self.steps)
        return facts

    def close(self) -> None:
        self.inner.close()


class _Guarded(Pending):
    """An inner batch in flight; if collecting it runs out of memory, it is redone smaller."""

    def __init__(self, owner: OutOfMemoryFallback, handle: Pending, frames: np.ndarray):
        self.owner, self.handle, self.frames = owner, handle, frames
        self.steps_then = len(owner.steps)

    def result(self) -> np.ndarray:
        try:
            return self.handle.result()
        except Exception as e:   # noqa: BLE001
            if not is_out_of_memory(e):
                raise
        # Another batch may have made the plan smaller since this one went in: try that first.
        return self.owner._fit(self.frames, failed=len(self.owner.steps) == self.steps_then)
