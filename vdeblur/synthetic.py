"""GoPro-like blur/sharp pairs made on the fly from sharp images.

GoPro (Nah et al. 2017) averaged 7-13 consecutive 240 fps frames in linear light and took the
middle frame as the sharp target. We render the same thing from one still: several sub-frames
of a camera shaking along a random smooth trajectory (translation + a little rotation), with an
independently moving object pasted over it, averaged after undoing the camera response curve,
then sensor noise, the curve re-applied and 8-bit quantisation. The sharp image is the middle
sub-frame, so the pair is aligned exactly as GoPro's are.

Every draw comes from a ``numpy.random.Generator`` the caller passes, so a sample is a pure
function of its seed: training can resume bit-for-bit and validation sets are fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import VdeblurError
from .metrics import quantize

#: scikit-image's bundled pictures (no download needed), ordered so that the held-out split
#: (every 6th, see ``is_holdout``) gets real photos (coffee, chelsea), not textures.
BUILTIN_PHOTOS = ("astronaut", "camera", "coins", "rocket", "brick", "coffee",
                  "grass", "gravel", "text", "page", "moon", "chelsea")
HOLDOUT_EVERY = 6
SPLITS = ("train", "val", "all")


def is_holdout(index: int) -> bool:
    """The fixed train/validation split of every photo list: each 6th image (sorted) is held out."""
    return index % HOLDOUT_EVERY == HOLDOUT_EVERY - 1


def _split(items: list, split: str) -> list:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return list(items)
    keep_val = split == "val"
    return [x for i, x in enumerate(items) if is_holdout(i) == keep_val]


def _to_rgb_uint8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3].astype(np.uint8))


class PhotoBank:
    """Sharp source pictures: photo folders and scikit-image's photos, split train/val, cached on first use."""

    def __init__(self, folders=(), builtin: bool = True, split: str = "train"):
        from .datasets import image_size, list_images, read_image

        self._read = read_image
        self.entries: list[tuple[str, object]] = []  # (name, path or builtin name)
        for folder in folders:
            paths = _split(list_images(folder), split)
            for path in paths:   # a file that is no picture at all is named now, not hours into a run
                image_size(path)
            self.entries += [(str(p), Path(p)) for p in paths]
        if builtin:
            try:
                import skimage.data  # noqa: F401 - bundled photos, no download
            except ImportError:
                raise VdeblurError("scikit-image's photos need scikit-image: pip install 'vdeblur[train]' "
                                   "(or, training, --no-builtin-photos)") from None
            self.entries += [(f"skimage:{n}", n) for n in _split(list(BUILTIN_PHOTOS), split)]
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        return [name for name, _ in self.entries]

    def get(self, index: int) -> np.ndarray:
        """HxWx3 uint8 picture (kept in memory: a few hundred photos fit easily)."""
        img = self._cache.get(index)
        if img is None:
            _, src = self.entries[index]
            if isinstance(src, Path):
                img = self._read(src)
            else:
                import skimage.data

                img = _to_rgb_uint8(getattr(skimage.data, src)())
            if len(self._cache) < 1024:
                self._cache[index] = img
        return img


def dead_leaves(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural 'dead leaves' scene (occluding disks, power-law sizes): natural-image-like
    edges and scale statistics with no data at all. HxWx3 uint8."""
    img = np.empty((height, width, 3), np.float32)
    img[:] = rng.uniform(0.0, 1.0, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r_min, r_max = 2.0, max(height, width) / 3.0
    n = int(rng.integers(150, 400))
    # Radii with density ~ r^-3 (scale invariance), sampled by inverting the CDF.
    u = rng.uniform(0.0, 1.0, n)
    radii = 1.0 / np.sqrt(u / r_min**2 + (1.0 - u) / r_max**2)
    for r in np.sort(radii)[::-1]:  # big leaves first, small ones fall on top
        cx, cy = rng.uniform(-r, width + r), rng.uniform(-r, height + r)
        x0, x1 = int(max(cx - r - 1, 0)), int(min(cx + r + 2, width))
        y0, y1 = int(max(cy - r - 1, 0)), int(min(cy + r + 2, height))
        if x0 >= x1 or y0 >= y1:
            continue
        d = np.hypot(xx[y0:y1, x0:x1] - cx, yy[y0:y1, x0:x1] - cy)
        cover = np.clip(r - d + 0.5, 0.0, 1.0)[..., None]  # anti-aliased edge
        color = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        shade = 1.0 + rng.uniform(-0.3, 0.3) * (yy[y0:y1, x0:x1, None] - cy) / max(r, 1.0)
        patch = img[y0:y1, x0:x1]
        patch += cover * (np.clip(color * shade, 0.0, 1.0) - patch)
    return (img * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class BlurParams:
    """How strong and how varied the synthetic blur is (pixels are output pixels)."""

    max_camera_blur: float = 24.0      # length of the camera's path during the exposure
    max_rotation_deg: float = 1.5      # in-plane rotation during the exposure
    object_prob: float = 0.5           # chance of an independently moving object
    max_object_blur: float = 32.0
    min_scale: float = 0.5             # photos are shown at a random scale in [min_scale, 1]
    gamma_range: tuple[float, float] = (2.0, 2.6)   # camera response curve (a power law)
    max_read_noise: float = 0.003      # sensor noise, in linear light
    max_shot_noise: float = 0.001
    dead_leaves_prob: float = 0.1      # share of procedural scenes when photos exist


def _path(rng: np.random.Generator, length: float, taus: torch.Tensor) -> torch.Tensor:
    """A smooth random 2-D path through the origin at tau = 0: velocity, curvature and jerk terms,
    scaled so that its extent over tau in [-1/2, 1/2] is ``length`` pixels. Kx2."""
    coeffs = rng.normal(0.0, 1.0, (3, 2))
    coeffs[1] *= rng.uniform(0.0, 1.5)   # curvature
    coeffs[2] *= rng.uniform(0.0, 1.0)   # jerk (shaky, S-shaped paths)
    t = taus[:, None].double()
    p = t * torch.from_numpy(coeffs[0]) + t**2 * torch.from_numpy(coeffs[1]) * 2 + t**3 * torch.from_numpy(coeffs[2]) * 4
    extent = float((p.max(0).values - p.min(0).values).norm())
    if extent > 1e-9:
        p = p * (length / extent)
    return p.float()


def _region(img: np.ndarray, cx: float, cy: float, half: float) -> tuple[torch.Tensor, float, float]:
    """The part of ``img`` within ``half`` pixels of (cx, cy) as CHW float in [0, 1], and its origin."""
    h, w = img.shape[:2]
    x0, x1 = max(int(cx - half), 0), min(int(math.ceil(cx + half)) + 1, w)
    y0, y1 = max(int(cy - half), 0), min(int(math.ceil(cy + half)) + 1, h)
    crop = torch.from_numpy(np.ascontiguousarray(img[y0:y1, x0:x1])).permute(2, 0, 1).float() / 255.0
    return crop, float(x0), float(y0)


def _sample(region: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling of CHW ``region`` at pixel coordinates KxSxS (reflected at the border)."""
    h, w = region.shape[-2:]
    grid = torch.stack([(xs + 0.5) * (2.0 / w) - 1.0, (ys + 0.5) * (2.0 / h) - 1.0], dim=-1)
    src = region.unsqueeze(0).expand(xs.shape[0], -1, -1, -1)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class SyntheticBlur:
    """Makes (blurry, sharp) CHW float32 pairs of ``size`` x ``size`` from a PhotoBank (or from
    dead-leaves scenes alone when the bank is empty)."""

    def __init__(self, bank: PhotoBank | None, size: int, params: BlurParams = BlurParams()):
        self.bank = bank if bank is not None and len(bank) else None
        self.size = int(size)
        self.params = params

    def _picture(self, rng: np.random.Generator, span: float) -> tuple[np.ndarray, float]:
        """A random picture and the scale to show it at. ``span`` = source pixels needed at scale 1."""
        p = self.params
        if self.bank is None or rng.uniform() < p.dead_leaves_prob:
            side = int(math.ceil(span)) + 2
            return dead_leaves(rng, side, side), 1.0
        img = self.bank.get(int(rng.integers(len(self.bank))))
        return img, float(rng.uniform(p.min_scale, 1.0))

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        p, s = self.params, self.size
        cam_len = float(rng.uniform(1.0, p.max_camera_blur))
        has_object = rng.uniform() < p.object_prob
        obj_len = float(rng.uniform(2.0, p.max_object_blur)) if has_object else 0.0
        # Enough sub-frames that neighbours are under ~1.5 px apart (no ghosting), odd so one is in the middle.
        k = int(np.clip(math.ceil(max(cam_len, obj_len) / 1.5), 7, 31)) | 1
        taus = torch.linspace(-0.5, 0.5, k)
        gamma = float(rng.uniform(*p.gamma_range))

        # Output pixel offsets from the frame centre.
        offs = torch.arange(s, dtype=torch.float32) - (s - 1) / 2
        oy, ox = torch.meshgrid(offs, offs, indexing="ij")

        # Background: the camera moves along a path and rotates slightly.
        margin = s / 2 * math.sqrt(2) + p.max_camera_blur + 2
        img, scale = self._picture(rng, 2 * margin)
        h, w = img.shape[:2]
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        region, x0, y0 = _region(img, cx, cy, margin / scale)
        region = region.pow(gamma)  # to linear light
        shift = _path(rng, cam_len, taus)
        angle = math.radians(float(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg))) * taus
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        xs = (cos * ox - sin * oy + shift[:, 0, None, None]) / scale + (cx - x0)
        ys = (sin * ox + cos * oy + shift[:, 1, None, None]) / scale + (cy - y0)
        frames = _sample(region, xs, ys)  # K x 3 x S x S, linear light

        if has_object:
            frames = self._paste_object(rng, frames, taus, obj_len, gamma, ox, oy)

        blurry = frames.mean(dim=0)
        sharp = frames[k // 2]
        read = float(rng.uniform(0.0, p.max_read_noise))
        shot = float(rng.uniform(0.0, p.max_shot_noise))
        sigma = (blurry.clamp(min=0.0) * shot + read**2).sqrt()
        noise = torch.from_numpy(rng.standard_normal(blurry.shape).astype(np.float32))
        blurry = blurry + sigma * noise
        return _encode(blurry, gamma), _encode(sharp, gamma)

    def _paste_object(self, rng, frames, taus, length, gamma, ox, oy) -> torch.Tensor:
        """An elliptical piece of another picture, moving along its own path over the background."""
        s = self.size
        a, b = (float(rng.uniform(0.1, 0.35)) * s for _ in range(2))
        rot = float(rng.uniform(0, math.pi))
        centre = torch.tensor(rng.uniform(-0.35, 0.35, 2) * s, dtype=torch.float32)
        path = _path(rng, length, taus) + centre  # object centre in output pixels, per sub-frame
        span = 2 * max(a, b) + 4
        img, scale = self._picture(rng, span)
        h, w = img.shape[:2]
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        region, x0, y0 = _region(img, cx, cy, span / scale)
        region = region.pow(gamma)
        # Coordinates relative to the moving object centre, per sub-frame.
        rx = ox - path[:, 0, None, None]
        ry = oy - path[:, 1, None, None]
        obj = _sample(region, rx / scale + (cx - x0), ry / scale + (cy - y0))
        cr, sr = math.cos(rot), math.sin(rot)
        u, v = (cr * rx + sr * ry) / a, (-sr * rx + cr * ry) / b
        d = torch.sqrt(u * u + v * v)
        mask = ((1.0 - d) * min(a, b) + 0.5).clamp(0.0, 1.0).unsqueeze(1)  # ~1 px soft edge
        return frames + mask * (obj - frames)


def _encode(linear: torch.Tensor, gamma: float) -> torch.Tensor:
    """Back through the camera response curve, then to 8-bit levels like a saved frame."""
    return quantize(linear.clamp(0.0, 1.0).pow(1.0 / gamma))


def gradient_energy(img: torch.Tensor) -> float:
    """Mean squared finite difference: falls when an image is blurred (used by tests and checks)."""
    dx = img[..., :, 1:] - img[..., :, :-1]
    dy = img[..., 1:, :] - img[..., :-1, :]
    return float(dx.pow(2).mean() + dy.pow(2).mean())


def make_generator(photos=(), builtin: bool = True, split: str = "train", size: int = 256,
                   params: BlurParams = BlurParams()) -> SyntheticBlur:
    """A SyntheticBlur over the given photo folders (+ scikit-image's photos), one split of them."""
    for folder in photos:
        if not Path(folder).is_dir():
            raise VdeblurError(f"{folder}: no such photo folder")
    return SyntheticBlur(PhotoBank(photos, builtin=builtin, split=split), size, params)
