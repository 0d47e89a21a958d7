"""Overlapping tiles for frames too large for the device: any backend, no visible seams.

Each tile is deblurred on its own; where tiles overlap, their outputs are blended with weights that
ramp linearly from the tile's edge, so every pixel is a convex mix and the content near a tile's
border (where the network sees the least context) counts least.
"""

from __future__ import annotations

import numpy as np

from .backends.base import Backend
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
        raise VdeblurError(f"--tile must be at least 16 pixels on each side, got {w if w == h else f'{w}x{h}'}")
    return int(w), int(h)


def check_tiling(tile: int | str | TileSize | None, overlap: int) -> TileSize | None:
    """Parse and check ``--tile`` with ``--tile-overlap`` before any work; None: no tiling."""
    size = parse_tile(tile)
    if size is not None and not 0 <= overlap < min(size) // 2:
        raise VdeblurError(f"--tile-overlap must be between 0 and half the tile's shorter side "
                           f"({min(size) // 2 - 1}), got {overlap}")
    return size


def format_tile(size: TileSize) -> str:
    return f"{size[0]}x{size[1]}"


class TiledBackend(Backend):
    """Wraps a backend: frames larger than the tile go through it as overlapping width x height crops."""

    def __init__(self, inner: Backend, tile: int | str | TileSize, overlap: int = 32):
        size = check_tiling(tile, overlap)
        if size is None:
            raise VdeblurError("TiledBackend needs a tile size")
        self.inner, self.overlap = inner, overlap
        self.tile_w, self.tile_h = size
        self.name = inner.name
        self.accepts_uint16 = inner.accepts_uint16

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
