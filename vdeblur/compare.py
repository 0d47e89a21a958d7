"""What is written for each frame, from the input and the model's result.

`deblur --strength` keeps part of the model's change: the input moved that far towards the result,
for footage where the full change is too much (or, past 1, too little). Before/after videos
(`deblur --compare`) judge what the model does on your own footage: "side" puts the input on the left and the result on the right (twice the width); "split" keeps the
size and shows the input's left half beside the result's right half, with a thin white divider.
Either way the frames are the real ones: composed after the model, before encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends.base import Backend, Pending, Wrapper
from .errors import VdeblurError

MODES = ("side", "split")
DIVIDER = 2   # pixels of the split mode's line
MAX_STRENGTH = 2.0


def check_mode(mode: str | None) -> None:
    if mode is not None and mode not in MODES:
        raise VdeblurError(f"--compare {mode!r}: choose {' or '.join(MODES)}")


def output_size(mode: str | None, width: int, height: int) -> tuple[int, int]:
    """The composed frame's (width, height)."""
    return (2 * width, height) if mode == "side" else (width, height)


def compose(mode: str, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Batches of (N, H, W, 3) frames in, the composed batch out, in their dtype."""
    if mode == "side":
        return np.concatenate([before, after], axis=2)
    out = after.copy()
    middle = before.shape[2] // 2
    out[:, :, :middle] = before[:, :, :middle]
    out[:, :, max(0, middle - DIVIDER // 2):middle + (DIVIDER + 1) // 2] = np.iinfo(after.dtype).max
    return out


def check_strength(strength: float) -> None:
    if not 0 < strength <= MAX_STRENGTH:
        raise VdeblurError(f"--strength {strength:g}: give a value above 0 and at most {MAX_STRENGTH:g} (1 = the model's result)")


def blend(before: np.ndarray, after: np.ndarray, strength: float) -> np.ndarray:
    """``before`` moved ``strength`` of the way to ``after``, rounded and clipped to their integer dtype."""
    out = after.astype(np.float32)
    out -= before
    out *= strength
    out += before
    np.rint(out, out=out)
    np.clip(out, 0, np.iinfo(after.dtype).max, out=out)
    return out.astype(after.dtype)


@dataclass(frozen=True)
class View:
    """What each written frame shows: the result at ``strength``, beside the input if ``compare``."""

    compare: str | None = None
    strength: float = 1.0

    def __post_init__(self):
        check_mode(self.compare)
        check_strength(self.strength)

    @property
    def plain(self) -> bool:
        """The result as it is: nothing to blend or compose."""
        return self.compare is None and self.strength == 1

    def frames(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        if self.strength != 1:
            after = blend(before, after, self.strength)
        return compose(self.compare, before, after) if self.compare else after

    def alpha(self, alpha: np.ndarray | None) -> np.ndarray | None:
        """The source's alpha for the frame written: twice over beside a side-by-side comparison."""
        return np.concatenate([alpha, alpha], axis=1) if alpha is not None and self.compare == "side" else alpha

    def key(self) -> dict:
        """What a resumed run must share with the kept segments (empty for the plain result)."""
        return {**({"compare": self.compare} if self.compare else {}),
                **({"strength": self.strength} if self.strength != 1 else {})}


class AsStored(Wrapper):
    """Wraps a backend for pictures turned upright (a comparison of a rotated video is built as shown):
    the model gets each batch as the file stores it, as a plain run of the same video gives it, and
    the result is turned upright again. The network is not rotation-invariant, so fed turned pixels
    the preview showed another result (30 dB from it at 96x64) than the run it previews writes."""

    def __init__(self, inner: Backend, steps: tuple[bool, bool, bool]):
        super().__init__(inner)
        self.steps = steps

    def submit(self, frames: np.ndarray) -> Pending:
        return _TurnedUpright(self.inner.submit(as_stored(frames, self.steps)), self.steps)


class _TurnedUpright(Pending):
    def __init__(self, handle: Pending, steps: tuple[bool, bool, bool]):
        self.handle, self.steps = handle, steps

    def result(self) -> np.ndarray:
        return turned_upright(self.handle.result(), self.steps)


def turned_upright(frames: np.ndarray, steps: tuple[bool, bool, bool]) -> np.ndarray:
    """A picture (H, W, C) or a batch (N, H, W, C) turned by :func:`vdeblur.video.orientation`'s steps."""
    transpose, flip_x, flip_y = steps
    if transpose:
        frames = frames.swapaxes(-3, -2)
    if flip_x:
        frames = np.flip(frames, -2)
    if flip_y:
        frames = np.flip(frames, -3)
    return np.ascontiguousarray(frames)


def as_stored(frames: np.ndarray, steps: tuple[bool, bool, bool]) -> np.ndarray:
    """The inverse of :func:`turned_upright`: the same steps undone in the reverse order."""
    transpose, flip_x, flip_y = steps
    if flip_y:
        frames = np.flip(frames, -3)
    if flip_x:
        frames = np.flip(frames, -2)
    if transpose:
        frames = frames.swapaxes(-3, -2)
    return np.ascontiguousarray(frames)
