"""Engine identity: what an engine was built from, its file name, and its JSON sidecar.

A TensorRT plan is valid only for the exact TensorRT version and GPU it was built on, and only
means our model for the weights, precision, graph and kernel it was built from. All of these go
into the key, the file name carries it, and the sidecar lists them in full, so a stale engine is
found by comparing facts, never used by accident. Pure Python: tested on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import VdeblurError
from ..fileio import atomic_write

SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "vdeblur-engine"
INPUT = "frames"


@dataclass(frozen=True)
class ShapeProfile:
    """Frame shapes one engine accepts, as (batch, height, width) for min, opt and max."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def __post_init__(self):
        for name in ("min", "opt", "max"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if any(v < 1 for v in self.min):
            raise VdeblurError(f"shape profile needs positive sizes, got min {self.min}")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise VdeblurError(f"shape profile must satisfy min <= opt <= max in every dimension, got {self.min} {self.opt} {self.max}")

    @classmethod
    def fixed(cls, height: int, width: int, batch: int = 1) -> "ShapeProfile":
        return cls((1, height, width), (batch, height, width), (batch, height, width))

    @property
    def static_size(self) -> tuple[int, int] | None:
        """(H, W) when every size in the profile is the same (a fixed-size ONNX export suits it)."""
        sizes = {self.min[1:], self.opt[1:], self.max[1:]}
        return next(iter(sizes)) if len(sizes) == 1 else None

    def accepts(self, batch: int, height: int, width: int) -> bool:
        return all(lo <= v <= hi for lo, v, hi in zip(self.min, (batch, height, width), self.max))

    def nhwc(self, which: str) -> tuple[int, int, int, int]:
        b, h, w = getattr(self, which)
        return (b, h, w, 3)

    def label(self) -> str:
        if self.static_size:
            h, w = self.static_size
            return f"{h}x{w}-b{self.max[0]}"
        return "dyn-" + "-".join("x".join(map(str, getattr(self, n))) for n in ("min", "opt", "max"))

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}


def parse_shape(text: str, batch: int = 1) -> tuple[int, int, int]:
    """'720x1280' or '4x720x1280' (batch first) -> (batch, height, width)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 2:
        values = [batch, *values]
    if len(values) != 3 or min(values) < 1:
        raise VdeblurError(f"bad shape {text!r}: use HEIGHTxWIDTH or BATCHxHEIGHTxWIDTH, e.g. 720x1280")
    return tuple(values)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two builds with equal keys are interchangeable."""

    weights_sha256: str
    onnx_sha256: str
    precision: str
    profile: ShapeProfile
    plugin: bool
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    kernel_sha256: str
    triton_version: str
    builder_sha256: str      # the build settings (trt/build.py): a new optimisation level, flag or tactic rule
    vdeblur_version: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = self.profile.to_dict()
        return d

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @property
    def gpu_slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-") or "gpu"

    def filename(self) -> str:
        return (f"vdeblur-{self.precision}-{self.profile.label()}-{self.gpu_slug}-sm{self.compute_capability.replace('.', '')}"
                f"-trt{self.tensorrt_version}-{self.digest[:12]}.engine")

    def mismatches(self, other: dict) -> list[str]:
        """Names of the facts in ``other`` (a sidecar's key) that differ from this key."""
        mine = self.to_dict()
        return [k for k in mine if other.get(k) != mine[k]]


def kernel_sha256() -> str:
    """Hash of the kernel and plugin sources: their PTX is compiled into the engine."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in (here.parent / "kernels" / "__init__.py", here.parent / "kernels" / "fused_attention.py", here / "plugin.py"):
        h.update(path.read_bytes())
    return h.hexdigest()


def builder_sha256() -> str:
    """Hash of the builder's source: its settings (flags, optimisation level, tactics) shape the engine."""
    return hashlib.sha256((Path(__file__).resolve().parent / "build.py").read_bytes()).hexdigest()


def sidecar_path(engine: str | os.PathLike) -> Path:
    return Path(str(engine) + SIDECAR_SUFFIX)


def write_sidecar(engine: Path, key: EngineKey, facts: dict) -> Path:
    path = sidecar_path(engine)
    doc = {"format": SIDECAR_FORMAT, "key": key.to_dict(), "digest": key.digest, **facts}
    atomic_write(path, json.dumps(doc, indent=2, sort_keys=True).encode())
    return path


def read_sidecar(engine: str | os.PathLike) -> dict:
    path = sidecar_path(engine)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise VdeblurError(f"{engine}: no sidecar {path.name} beside it, so its weights, GPU and TensorRT version "
                           "are unknown; rebuild it with `vdeblur compile`") from None
    except (OSError, ValueError) as e:
        raise VdeblurError(f"{path}: unreadable engine sidecar ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT or not isinstance(doc.get("key"), dict):
        raise VdeblurError(f"{path}: not a vdeblur engine sidecar")
    return doc


def engine_facts(plan: bytes) -> dict:
    """What the sidecar records of the engine file itself, so a damaged or replaced file is caught."""
    return {"engine_bytes": len(plan), "engine_sha256": hashlib.sha256(plan).hexdigest()}


def engine_mismatch(doc: dict, plan: bytes) -> str | None:
    """Why ``plan`` is not the engine ``doc`` describes, or None where it is."""
    if "engine_sha256" not in doc:
        return "its sidecar records no checksum (an older vdeblur)"
    if len(plan) != doc.get("engine_bytes") or hashlib.sha256(plan).hexdigest() != doc["engine_sha256"]:
        return "the file is not the one built (damaged, truncated or replaced since)"
    return None


def check_runtime_match(engine: str | os.PathLike, doc: dict, *, tensorrt_version: str, gpu_name: str,
                        compute_capability: str, weights_sha256: str | None = None) -> None:
    """Refuse an engine built for another TensorRT, GPU or checkpoint, saying which and what to do."""
    key = doc["key"]
    problems = []
    if key.get("tensorrt_version") != tensorrt_version:
        problems.append(f"TensorRT {key.get('tensorrt_version')} (here {tensorrt_version})")
    if key.get("gpu_name") != gpu_name or key.get("compute_capability") != compute_capability:
        problems.append(f"GPU {key.get('gpu_name')} sm_{key.get('compute_capability')} (here {gpu_name} sm_{compute_capability})")
    if weights_sha256 and key.get("weights_sha256") != weights_sha256:
        problems.append("other weights than the ones asked for")
    if problems:
        raise VdeblurError(f"{engine}: stale engine, built for {'; '.join(problems)}; rebuild it with `vdeblur compile` "
                           "(with -o and --overwrite to replace this file)")
