"""The weights shipped inside the package, described the torchvision way: file, checksum, recipe, metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import VdeblurError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    filename: str
    sha256: str
    recipe: str = ""
    metrics: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.filename


def _registry() -> dict[str, WeightsEntry]:
    """Entries listed in weights/manifest.json (written when weights are shipped)."""
    manifest = WEIGHTS_DIR / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        return {e["name"]: WeightsEntry(**e) for e in json.loads(manifest.read_text())}
    except (ValueError, TypeError, KeyError) as e:   # an edited or damaged install
        raise VdeblurError(f"{manifest}: damaged ({type(e).__name__}: {e}); reinstall vdeblur, "
                           "or pass --weights PATH") from None


def default_weights() -> WeightsEntry | None:
    entries = _registry()
    return entries.get("default")


def default_weights_path() -> Path:
    """Path of the shipped default weights, checked against the manifest's sha256."""
    from .checkpoint import file_sha256

    entry = default_weights()
    if entry is None or not entry.path.is_file():
        raise VdeblurError(
            "no default weights are shipped with this vdeblur yet; pass --weights PATH "
            "(train with `vdeblur train` or convert the paper's weights with `vdeblur import-tf`)"
        )
    actual = file_sha256(entry.path)
    if actual != entry.sha256:
        raise VdeblurError(f"{entry.path}: shipped weights are damaged (sha256 {actual[:12]}..., expected {entry.sha256[:12]}...)")
    return entry.path
