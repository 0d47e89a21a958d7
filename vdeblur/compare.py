"""Before/after videos (`deblur --compare`): judge what the model does on your own footage.

"side" puts the input on the left and the result on the right (twice the width); "split" keeps the
size and shows the input's left half beside the result's right half, with a thin white divider.
Either way the frames are the real ones: composed after the model, before encoding.
"""

from __future__ import annotations

import numpy as np

from .errors import VdeblurError

MODES = ("side", "split")
DIVIDER = 2   # pixels of the split mode's line


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
