"""Training and validation data: real blur/sharp pairs on disk and the synthetic source, mixed.

Pairs on disk come in two layouts, found anywhere below the folder given:
- GoPro: ``<sequence>/blur/*.png`` beside ``<sequence>/sharp/*.png`` with the same file names
  (``GOPRO_Large/train`` or ``GOPRO_Large/test``);
- flat: ``<name>_blur.png`` beside ``<name>_sharp.png`` (``gopro-resynth``).

A training sample is a pure function of (seed, sample index): which source, which pair, the crop
and the flips all come from a generator seeded with both. That is what makes ``--resume`` exact
and lets any number of DataLoader workers or DDP ranks produce the same stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import VdeblurError
from .fileio import IMAGE_SUFFIXES, check_folder
from .synthetic import SyntheticBlur

_CACHE_LIMIT_PAIRS = 64  # small sets (like gopro-resynth) stay decoded in memory


def list_images(folder) -> list[Path]:
    """Image files below ``folder``, sorted; an error naming the folder when there are none."""
    folder = check_folder(folder)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise VdeblurError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


def read_image(path) -> np.ndarray:
    """HxWx3 uint8 RGB; a one-line error naming the file when it cannot be decoded."""
    Image = _pillow()
    try:
        with Image.open(path) as stored:
            _check_mode(path, stored.mode)
            im = _upright(stored)
            if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
                # 16-bit grey (PNG, TIFF): convert("RGB") would clip it to 255, not scale it
                a = np.clip(np.asarray(im).astype(np.int64), 0, 65535).astype(np.uint16)
            else:
                a = np.asarray(im if im.mode in ("RGB", "L") else im.convert("RGB"))
    except FileNotFoundError:
        raise VdeblurError(f"{path}: no such image file") from None
    except VdeblurError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for broken files
        raise VdeblurError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.dtype != np.uint8:  # 16-bit PNGs
        a = (a.astype(np.float32) / np.iinfo(a.dtype).max * 255.0 + 0.5).astype(np.uint8)
    return np.array(a[:, :, :3], order="C")  # a writable copy (Pillow's buffer is read-only)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0


_BLUR, _SHARP = "_blur", "_sharp"


def _same_case(tag: str, like: str) -> str:
    """``tag`` written as ``like`` is: "_SHARP" for "_BLUR", "_Sharp" for "_Blur"."""
    if like.isupper():
        return tag.upper()
    return tag.title() if like[1:2].isupper() else tag


@dataclass(frozen=True)
class Pair:
    blur: Path
    sharp: Path

    @property
    def name(self) -> str:
        if self.blur.parent.name == "blur":  # GoPro: <seq>/blur/000001.png
            return f"{self.blur.parent.parent.name}/{self.blur.name}"
        return self.blur.stem[:-len(_BLUR)] + self.blur.suffix   # the tag alone ("my_blurry_blur" -> "my_blurry")


def find_pairs(root) -> list[Pair]:
    """All blur/sharp pairs below ``root`` (GoPro layout and/or ``*_blur``/``*_sharp`` files)."""
    root = check_folder(root)
    images = list_images(root)
    pairs: list[Pair] = []
    for p in images:
        if p.parent.name == "blur":
            partner = p.parent.parent / "sharp" / p.name
        elif p.stem.lower().endswith(_BLUR):
            partner = p.with_name(p.stem[:-len(_BLUR)] + _same_case(_SHARP, p.stem[-len(_BLUR):]) + p.suffix)
        else:
            continue
        if not partner.is_file():
            raise VdeblurError(f"{p}: blurry image has no sharp partner (expected {partner})")
        pairs.append(Pair(p, partner))
    paired = {path for pair in pairs for path in (pair.blur, pair.sharp)}
    for p in images:   # a sharp image alone was passed over without a word: the set was smaller than meant
        tagged = p.stem.lower().endswith((_BLUR, _SHARP))
        if p not in paired and (p.stem.lower().endswith(_SHARP) or p.parent.name == "sharp" and not tagged):
            raise VdeblurError(f"{p}: sharp image has no blurry partner")
    if not pairs:
        raise VdeblurError(
            f"{root}: no blur/sharp pairs found (expected <seq>/blur/*.png + <seq>/sharp/*.png as in "
            "GOPRO_Large/train, or *_blur.png + *_sharp.png)")
    return pairs


def _pillow():
    """PIL.Image, or a one-line error where Pillow is missing (eval and train gave a traceback)."""
    try:
        from PIL import Image
    except ImportError:
        raise VdeblurError("reading images needs Pillow: pip install pillow") from None
    return Image


def _check_mode(path, mode: str) -> None:
    """Floating-point samples have no fixed white (1.0? 255?): Pillow's conversion made them black."""
    if mode == "F":
        raise VdeblurError(f"{path}: floating-point samples, which have no fixed scale; save it as 8- or 16-bit")


_SIDEWAYS = (5, 6, 7, 8)   # EXIF orientations that swap width and height


def _orientation(im) -> int:
    from .photo_tags import exif_orientation

    return exif_orientation(im) or 1   # a damaged EXIF block: the pixels as stored


def _upright(im):
    """The picture as viewers show it: a phone photo stored sideways with an EXIF orientation tag,
    paired with an upright partner, would otherwise differ in size or be compared turned."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(im) if _orientation(im) != 1 else im


def image_size(path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it; a one-line error for a broken file."""
    Image = _pillow()
    try:
        with Image.open(path) as im:
            _check_mode(path, im.mode)
            width, height = im.size
            return (height, width) if _orientation(im) in _SIDEWAYS else (width, height)
    except VdeblurError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for broken files
        raise VdeblurError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def check_pairs(pairs: list[Pair], smallest: int, why: str) -> None:
    """Every pair at once, before a long run can meet a bad one hours in: readable headers, equal
    sizes, and at least ``smallest`` pixels on each side (``why`` names what needs them). A file
    damaged after its header is found when it is read; training checkpoints before it stops."""
    for pair in pairs:
        blur, sharp = image_size(pair.blur), image_size(pair.sharp)
        _check_same_size(pair, blur, sharp)
        if min(blur) < smallest:
            raise VdeblurError(f"{pair.blur}: {blur[0]}x{blur[1]} is smaller than {why}")


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    blur, sharp = read_image(pair.blur), read_image(pair.sharp)
    _check_same_size(pair, blur.shape[1::-1], sharp.shape[1::-1])
    return blur, sharp


def _check_same_size(pair: Pair, blur: tuple[int, int], sharp: tuple[int, int]) -> None:
    """Sizes as (width, height)."""
    if blur != sharp:
        raise VdeblurError(f"{pair.blur}: size {blur[0]}x{blur[1]} differs from its sharp "
                           f"partner's {sharp[0]}x{sharp[1]} ({pair.sharp})")


class PairedCrops:
    """Random aligned crops from blur/sharp pairs on disk."""

    def __init__(self, roots, crop: int):
        self.pairs = [p for root in roots for p in find_pairs(root)]
        self.crop = int(crop)
        check_pairs(self.pairs, self.crop, f"--crop {self.crop}")
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._cache.get(i)
        if got is None:
            got = load_pair(self.pairs[i])
            if len(self.pairs) <= _CACHE_LIMIT_PAIRS:
                self._cache[i] = got
        return got

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        blur, sharp = self._get(int(rng.integers(len(self.pairs))))
        c = self.crop
        y = int(rng.integers(blur.shape[0] - c + 1))
        x = int(rng.integers(blur.shape[1] - c + 1))
        return to_tensor(blur[y:y + c, x:x + c]), to_tensor(sharp[y:y + c, x:x + c])


class TrainingSamples(torch.utils.data.Dataset):
    """Sample ``index`` -> (blurry, sharp) crops, each a pure function of (seed, index).

    A share ``synthetic_fraction`` of samples comes from the synthetic source, the rest from the
    real pairs; horizontal and vertical flips as in the paper.
    """

    def __init__(self, seed: int, real: PairedCrops | None, synthetic: SyntheticBlur | None,
                 synthetic_fraction: float):
        if real is None and synthetic is None:
            raise VdeblurError("no training data: give --data and/or keep the synthetic source")
        self.seed = int(seed)
        self.real, self.synthetic = real, synthetic
        self.synthetic_fraction = 1.0 if real is None else (0.0 if synthetic is None else float(synthetic_fraction))

    def __len__(self) -> int:  # an endless stream; the sampler decides the indices
        return 2**62

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        use_synthetic = rng.uniform() < self.synthetic_fraction
        blur, sharp = (self.synthetic if use_synthetic else self.real).sample(rng)
        if rng.uniform() < 0.5:
            blur, sharp = blur.flip(-1), sharp.flip(-1)
        if rng.uniform() < 0.5:
            blur, sharp = blur.flip(-2), sharp.flip(-2)
        return blur.contiguous(), sharp.contiguous()


class StepBatches(torch.utils.data.Sampler):
    """Index batches for steps ``start_step, start_step + 1, ...``: rank r of w takes samples
    [(step*w + r)*B, (step*w + r + 1)*B). Resuming at a step replays exactly the same data."""

    def __init__(self, batch: int, start_step: int = 0, rank: int = 0, world: int = 1, total_steps: int | None = None):
        self.batch, self.start, self.rank, self.world, self.total = batch, start_step, rank, world, total_steps

    def __iter__(self):
        step = self.start
        while self.total is None or step < self.total:
            base = (step * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))
            step += 1

    def __len__(self) -> int:
        return max(0, (self.total or 2**62) - self.start)


def loader(samples: TrainingSamples, batches: StepBatches, workers: int = 0, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(samples, batch_sampler=batches, num_workers=workers,
                                       persistent_workers=workers > 0, pin_memory=pin_memory)


def default_workers(device: torch.device, world: int = 1) -> int:
    """Loader processes: none for CPU training (they would take the cores the model needs); on a
    GPU enough to decode full-size PNGs as fast as the GPU trains, shared among the local ranks."""
    if device.type != "cuda":
        return 0
    local = max(1, min(world, torch.cuda.device_count()))
    return max(1, min(8, (os.cpu_count() or 2) // local - 1))
