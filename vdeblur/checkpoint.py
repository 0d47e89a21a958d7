"""Checkpoints: one file with the model configuration, the weights and a format version.

The layout is the safetensors one (8-byte little-endian header length, a JSON header, raw
little-endian tensor bytes), read and written here with json and numpy alone: loading can never
execute code from the file, and the safetensors tools can inspect our files. Our own facts live
in the header's ``__metadata__`` (string values only, as safetensors requires).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

from .errors import VdeblurError
from .fileio import atomic_write, file_sha256  # noqa: F401 - file_sha256 is imported from here too
from .network import DeblurNet, ModelConfig

FORMAT = "vdeblur-checkpoint"
FORMAT_VERSION = 1
_MAX_HEADER = 16 * 1024 * 1024

_DTYPES = {
    "F32": (np.dtype("<f4"), torch.float32),
    "F16": (np.dtype("<f2"), torch.float16),
    "BF16": (np.dtype("<u2"), torch.bfloat16),
    "I64": (np.dtype("<i8"), torch.int64),
    "I32": (np.dtype("<i4"), torch.int32),
}
_TORCH_TO_CODE = {t: code for code, (_, t) in _DTYPES.items()}


def save_checkpoint(path: str | os.PathLike, model: DeblurNet, extra: dict | None = None) -> Path:
    """Write config + weights atomically (temp file beside the target, then rename)."""
    model = getattr(model, "_orig_mod", model)   # torch.compile's wrapper prefixes every key: unloadable
    if not isinstance(model, DeblurNet):
        raise TypeError(f"save_checkpoint takes a DeblurNet (or a torch.compile of one), got {type(model).__name__}")
    return save_state(path, model.config, model.state_dict(), extra)


def save_state(path, config: ModelConfig, state: dict[str, torch.Tensor], extra: dict | None = None) -> Path:
    path = Path(path)
    header: dict = {}
    chunks: list[bytes] = []
    offset = 0
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        if t.dtype not in _TORCH_TO_CODE:
            raise VdeblurError(f"cannot store tensor {name} of dtype {t.dtype}")
        raw = t.view(torch.uint16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": _TORCH_TO_CODE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        digest.update(raw)
        offset += len(raw)
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "data_sha256": digest.hexdigest(),
    }
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True)
    header["__metadata__"] = meta
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)

    def write(f) -> None:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for chunk in chunks:
            f.write(chunk)

    return atomic_write(path, write)


class Checkpoint:
    """A parsed checkpoint: config, tensors (CPU) and free-form ``extra`` facts (provenance, training state)."""

    def __init__(self, config: ModelConfig, state: dict[str, torch.Tensor], extra: dict, path: Path):
        self.config = config
        self.state = state
        self.extra = extra
        self.path = path

    def build(self) -> DeblurNet:
        model = DeblurNet(self.config)
        model.load_state_dict(self.state, strict=True)
        return model


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Parse and check a checkpoint; any problem is a one-line VdeblurError naming the file."""
    path = Path(path)
    name = str(path)
    # The header first, and then only the bytes it names: /dev/zero or a video given by mistake
    # was read whole into memory before any check, and a FIFO blocked the open.
    try:
        if not path.is_file() and not path.is_dir():
            raise VdeblurError(f"{name}: not a regular file, so not a checkpoint" if path.exists()
                               else f"{name}: no such checkpoint file")
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise VdeblurError(f"{name}: not a vdeblur checkpoint (file is {len(head)} bytes)")
            (hlen,) = struct.unpack("<Q", head)
            if hlen > _MAX_HEADER or hlen < 2:
                raise VdeblurError(f"{name}: not a vdeblur checkpoint (no valid header)")
            header_bytes = f.read(hlen)
            if len(header_bytes) < hlen:
                raise VdeblurError(f"{name}: checkpoint is truncated (header cut off)")
            rest = os.fstat(f.fileno()).st_size - 8 - hlen
    except FileNotFoundError:
        raise VdeblurError(f"{name}: no such checkpoint file") from None
    except IsADirectoryError:
        raise VdeblurError(f"{name}: is a directory, not a checkpoint file") from None
    except OSError as e:
        raise VdeblurError(f"{name}: cannot read checkpoint ({e.strerror})") from None
    try:
        header = json.loads(header_bytes)
        meta = header.pop("__metadata__")
        if meta.get("format") != FORMAT:
            raise KeyError("format")
        version = int(meta["format_version"])
        config_dict = json.loads(meta["config"])
        extra = json.loads(meta.get("extra", "{}"))
        for entry in header.values():   # every tensor's entry whole before any is used
            shape, offsets = entry["shape"], entry["data_offsets"]
            if not isinstance(entry["dtype"], str) or not all(type(n) is int and n >= 0 for n in [*shape, *offsets]) \
                    or len(offsets) != 2 or offsets[0] > offsets[1]:
                raise ValueError("tensor entry")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise VdeblurError(f"{name}: not a vdeblur checkpoint (foreign or damaged header)") from None
    if version > FORMAT_VERSION:
        raise VdeblurError(f"{name}: checkpoint format {version} is newer than this vdeblur reads ({FORMAT_VERSION}); upgrade vdeblur")
    try:
        config = ModelConfig.from_dict(config_dict)
    except (ValueError, TypeError) as e:
        raise VdeblurError(f"{name}: invalid model config in checkpoint ({e})") from None

    end = max((int(e["data_offsets"][1]) for e in header.values()), default=0)
    if rest < end:
        raise VdeblurError(f"{name}: checkpoint is truncated ({max(rest, 0)} of {end} data bytes)")
    expected = {k: tuple(v.shape) for k, v in _reference_shapes(config).items()}
    try:
        with open(path, "rb") as f:
            f.seek(8 + hlen)
            body = memoryview(f.read(end))
    except OSError as e:
        raise VdeblurError(f"{name}: cannot read checkpoint ({e.strerror})") from None
    if len(body) < end:
        raise VdeblurError(f"{name}: checkpoint is truncated ({len(body)} of {end} data bytes)")
    if hashlib.sha256(body).hexdigest() != meta.get("data_sha256"):
        raise VdeblurError(f"{name}: checkpoint is corrupt (weights checksum mismatch)")

    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise VdeblurError(f"{name}: weights do not match the model config ({what})")
    state = {}
    for key, entry in header.items():
        code = entry.get("dtype")
        if code not in _DTYPES:
            raise VdeblurError(f"{name}: tensor {key} has unsupported dtype {code!r}")
        np_dtype, torch_dtype = _DTYPES[code]
        shape = tuple(int(s) for s in entry["shape"])
        start, stop = (int(o) for o in entry["data_offsets"])
        if shape != expected[key]:
            raise VdeblurError(f"{name}: tensor {key} has shape {list(shape)}, the config needs {list(expected[key])}")
        count = int(np.prod(shape)) if shape else 1
        if stop - start != count * np_dtype.itemsize:
            raise VdeblurError(f"{name}: tensor {key} has a wrong byte length")
        arr = np.frombuffer(body[start:stop], dtype=np_dtype).reshape(shape).copy()
        tensor = torch.from_numpy(arr)
        state[key] = tensor.view(torch.bfloat16) if torch_dtype == torch.bfloat16 else tensor
        if state[key].is_floating_point() and not torch.isfinite(state[key]).all():
            raise VdeblurError(f"{name}: tensor {key} holds NaN or infinity: these weights are broken "
                               "(saved from a training run that diverged?)")
    return Checkpoint(config, state, extra, path)


def _reference_shapes(config: ModelConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return DeblurNet(config).state_dict()


def load_checkpoint(path: str | os.PathLike) -> DeblurNet:
    """The network stored in ``path``, in eval mode, fp32."""
    model = read_checkpoint(path).build().float()
    return model.eval()
