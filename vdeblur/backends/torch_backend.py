"""The PyTorch backend: the reference path on CPU and CUDA, and the fallback when nothing faster loads."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import VdeblurError
from ..hardware import DTYPES, resolve_device, resolve_precision
from ..network import DeblurNet
from .base import Backend

# Full scale of each integer frame type the pipeline hands over.
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class TorchBackend(Backend):
    """Runs ``DeblurNet.restore`` on uint8 (or uint16) NHWC batches.

    Frames are normalised on the device they run on (on CUDA the upload is the raw integer frame
    from pinned memory: 4x fewer bytes than float32), the network runs channels_last under
    ``inference_mode``, and the result is rounded back to the input's integer type.
    """

    name = "torch"
    accepts_uint16 = True

    def __init__(self, model: DeblurNet, device: str = "auto", precision: str = "auto",
                 compile: bool = False, weights: str | None = None, fused_attention: bool = False):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = DTYPES[self.precision]
        self.weights = weights
        self.compiled = compile
        model = model.eval().to(device=self.device, dtype=self.dtype, memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        self.fused_attention = fused_attention
        if fused_attention:
            _fuse(model, self.device)
        if compile:
            model.compile()  # nn.Module.compile: restore() calls self(...), so the compiled forward is used
        self.model = model
        self._pinned: torch.Tensor | None = None

    @classmethod
    def from_options(cls, options) -> "TorchBackend":
        from .. import load_model

        model = load_model(options.weights)
        return cls(model, device=options.device, precision=options.precision,
                   compile=options.compile, weights=options.weights, fused_attention=options.fused_attention)

    def _upload(self, frames: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(frames)
        if self.device.type != "cuda":
            return host
        if self._pinned is None or self._pinned.shape != host.shape or self._pinned.dtype != host.dtype:
            self._pinned = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
        self._pinned.copy_(host)
        return self._pinned.to(self.device, non_blocking=True)

    def run(self, frames: np.ndarray) -> np.ndarray:
        self.check_frames(frames)
        scale = _SCALE[frames.dtype]
        with torch.inference_mode():
            x = self._upload(np.ascontiguousarray(frames))
            # NHWC -> NCHW view: the strides are already channels_last, no copy. Normalise in fp32:
            # 65535 overflows fp16 and bf16 would round the division.
            x = x.permute(0, 3, 1, 2).float().div_(scale).to(self.dtype)
            y = self.model.restore(x)
            y = y.float().mul_(scale).round_()
            out_type = torch.uint8 if frames.dtype == np.uint8 else torch.int32
            y = y.to(out_type).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return y if y.dtype == frames.dtype else y.astype(frames.dtype)

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": str(self.device) if self.device.type == "cpu" else f"{self.device} ({torch.cuda.get_device_name(self.device)})",
            "precision": self.precision,
            "weights": self.weights or "shipped default",
            "channels_last": True,
            "compile": self.compiled,
            "fused_attention": self.fused_attention,
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }

    def close(self) -> None:
        self.model = None
        self._pinned = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _fuse(model: DeblurNet, device: torch.device) -> None:
    """Swap the blocks' attention for the Triton kernels the TensorRT plugin also carries (CUDA only)."""
    if device.type != "cuda":
        raise VdeblurError("--fused-attention runs Triton kernels on CUDA; on the CPU the reference attention is used")
    try:
        import triton  # noqa: F401
    except ImportError:
        raise VdeblurError("--fused-attention needs Triton: pip install 'vdeblur[kernels]'") from None
    from ..kernels.torch_ops import fuse_attention

    fuse_attention(model)
