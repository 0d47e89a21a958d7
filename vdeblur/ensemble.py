"""Flip self-ensemble (``deblur --ensemble N``): the model runs on the frame and on its mirror
images, each result is mirrored back, and the N are averaged.

The network is not mirror-symmetric, so the copies' errors differ and partly cancel. For the
shipped weights, on the Zen 4 of the model card in bf16: +0.09 dB (2 copies) and +0.12 dB (4) on the
real validation frames, +0.05 and +0.09 dB on the held-out synthetic set, for 2x and 4x the model's
time. Mirroring keeps the frame's size, so a TensorRT engine or CUDA graph built for it serves every
copy (a transpose, the other half of the usual x8, would not).
"""

from __future__ import annotations

import numpy as np

from .backends.base import Backend, Pending, Wrapper, submit_within
from .errors import VdeblurError

COPIES = (1, 2, 4)
#: Axes of an (N, H, W, C) batch or an (H, W, C) picture to mirror for each copy: as it is, left to
#: right, top to bottom, both.
MIRRORS = ((), (-2,), (-3,), (-3, -2))


def check_copies(copies: int) -> int:
    if copies not in COPIES:
        raise VdeblurError(f"--ensemble must be one of {', '.join(map(str, COPIES))}, got {copies}")
    return copies


def mirrored(frames: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(np.flip(frames, axes)) if axes else frames


def average(results: list[np.ndarray], dtype) -> np.ndarray:
    """The mean of the copies' results, each already mirrored back, rounded to ``dtype``."""
    total = np.zeros(results[0].shape, np.float32)
    for result in results:
        total += result
    return np.rint(total / len(results)).astype(dtype)


class FlipEnsemble(Wrapper):
    """Wraps a backend: each batch goes through it as ``copies`` mirror images, averaged back."""

    def __init__(self, inner: Backend, copies: int):
        super().__init__(inner)
        self.mirrors = MIRRORS[:check_copies(copies)]
        # Each batch is several of the inner backend's: as many whole batches as it holds.
        self.batches_in_flight = max(1, inner.batches_in_flight // len(self.mirrors))

    def submit(self, frames: np.ndarray) -> Pending:
        handles = submit_within(self.inner, (mirrored(frames, axes) for axes in self.mirrors))
        return _Averaged(list(zip(self.mirrors, handles)), frames.dtype)

    def describe(self) -> dict:
        return {**self.inner.describe(), "ensemble": len(self.mirrors)}


class _Averaged(Pending):
    def __init__(self, parts: list[tuple[tuple[int, ...], Pending]], dtype):
        self.parts, self.dtype = parts, dtype

    def result(self) -> np.ndarray:
        return average([mirrored(handle.result(), axes) for axes, handle in self.parts], self.dtype)
