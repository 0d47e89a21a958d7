"""The TensorRT backend: a compiled engine with the fused attention plugin, run with pycuda.

With ``--engine`` it runs that file after checking its sidecar against this machine (TensorRT
version, GPU, and the weights when given). Without, it picks or builds the engine for the first
batch's frame size under ``engines/`` (`vdeblur compile` does the same ahead of time). A guard
counts frames with NaN/Inf or an all-black result and, by default, redoes them with the torch
backend so one bad frame never reaches the output.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import VdeblurError
from .base import Backend

FALLBACKS = ("torch", "none")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, engine: str | None = None, weights: str | None = None, precision: str = "auto",
                 batch: int = 1, fallback: str = "torch", engine_dir: str | None = None):
        from ..trt import import_pycuda, import_tensorrt

        self.trt = import_tensorrt()  # a one-line error here lets "auto" move on to torch
        import_pycuda()
        if fallback not in FALLBACKS:
            raise VdeblurError(f"unknown fallback {fallback!r}; use {' or '.join(FALLBACKS)}")
        if precision not in ("auto", "fp16", "bf16", "fp32"):
            raise VdeblurError(f"unknown precision {precision!r} for TensorRT; use fp16, bf16 or fp32")
        self.asked_precision = precision
        self.precision = "fp16" if precision == "auto" else precision
        self.weights = weights
        self.batch = max(1, int(batch))
        self.fallback = fallback
        self.engine_dir = Path(engine_dir) if engine_dir else None
        self.engine_path: Path | None = None
        self.sidecar: dict = {}
        self.runner = None          # the --engine file's runner, if one was given
        self._built: dict = {}      # (H, W) -> runner of an engine built here (tiles may come in several sizes)
        self._torch = None
        self.frames_done = 0
        self.bad_frames = 0
        # Frames the engine gets wrong are redone by torch in fp32 from the weights it was built from:
        # --weights, else (for --engine) the checkpoint its sidecar names, else the shipped default.
        self.fallback_weights: str | None = None
        if engine:
            self.runner = self._load(Path(engine))
        elif importlib.util.find_spec("triton") is None:
            # Building needs triton for the plugin's PTX; say so now, so "auto" can move on to torch.
            raise VdeblurError("no --engine given and triton is missing to build one: pip install 'vdeblur[tensorrt]' "
                               "or run `vdeblur compile` where it is installed")

    @classmethod
    def from_options(cls, options) -> "TensorRTBackend":
        device = options.device
        if device not in ("auto", "cuda") and not device.startswith("cuda:"):
            raise VdeblurError(f"the tensorrt backend runs on the GPU; --device {device} asks for something else")
        if device.startswith("cuda:") and device != "cuda:0":
            # pycuda's primary context, the engine and the fp32 fallback all live on the first visible GPU
            index = device.partition(":")[2]
            hint = f"CUDA_VISIBLE_DEVICES={index} with --device cuda" if index.isdigit() else "--device cuda:N"
            raise VdeblurError(f"--device {device}: the tensorrt backend runs on the first visible GPU; "
                               f"for another, use {hint}")
        return cls(engine=options.engine, weights=options.weights, precision=options.precision, batch=options.batch)

    def _load(self, path: Path):
        from ..checkpoint import file_sha256
        from ..trt.build import gpu_facts
        from ..trt.cache import check_runtime_match, engine_mismatch, read_sidecar
        from ..trt.runtime import EngineRunner

        if not path.is_file():
            raise VdeblurError(f"{path}: no such engine file; build one with `vdeblur compile`")
        doc = read_sidecar(path)
        gpu_name, cc = gpu_facts()
        check_runtime_match(path, doc, tensorrt_version=self.trt.__version__, gpu_name=gpu_name, compute_capability=cc,
                            weights_sha256=file_sha256(self.weights) if self.weights else None)
        plan = path.read_bytes()
        if problem := engine_mismatch(doc, plan):
            raise VdeblurError(f"{path}: {problem}; rebuild it with `vdeblur compile` (with -o and --overwrite to "
                               "replace this file)")
        built = doc["key"].get("precision", self.precision)
        if self.asked_precision not in ("auto", built):
            raise VdeblurError(f"{path} is built in {built} and --precision asks for {self.asked_precision}; "
                               f"compile one with `vdeblur compile --precision {self.asked_precision}`, or drop --precision")
        self.engine_path, self.sidecar = path, doc
        self.precision = built
        if self.weights is None:
            self.fallback_weights = _built_from(doc)
        return EngineRunner(plan, str(path))

    def _runner_for(self, height: int, width: int):
        """The --engine file's runner, or the one for this size, picked or built under engines/."""
        if self.runner is not None:
            return self.runner
        if (height, width) not in self._built:
            from ..compile import DEFAULT_ENGINE_DIR, compile_engine
            from ..trt.cache import ShapeProfile

            path, _ = compile_engine(self.weights, ShapeProfile.fixed(height, width, self.batch), self.precision,
                                     engine_dir=self.engine_dir or DEFAULT_ENGINE_DIR)
            self._built[(height, width)] = self._load(path)
        return self._built[(height, width)]

    def _torch_backend(self):
        if self._torch is None:
            from .. import load_model
            from .torch_backend import TorchBackend

            weights = self.weights or self.fallback_weights
            self._torch = TorchBackend(load_model(weights), device="cuda", precision="fp32", weights=weights)
        return self._torch

    def run(self, frames: np.ndarray) -> np.ndarray:
        from ..trt.runtime import bad_frames

        self.check_frames(frames)
        if not len(frames):   # no engine built (or run) for nothing
            return frames.copy()
        out, nonfinite = self._runner_for(*frames.shape[1:3]).run(frames)
        bad = bad_frames(frames, out, nonfinite)
        self.frames_done += len(frames)
        if len(bad):
            self.bad_frames += len(bad)
            if self._can_redo():
                out[bad] = self._torch_backend().run(frames[bad])
        return out

    def describe(self) -> dict:
        key = self.sidecar.get("key", {})
        return {
            "backend": self.name,
            "device": f"cuda ({key.get('gpu_name', '?')}, sm_{key.get('compute_capability', '?')})",
            "precision": self.precision,
            "engine": str(self.engine_path) if self.engine_path else "built on first frames",
            "plugin": key.get("plugin"),
            "tensorrt": self.trt.__version__,
            "weights": self._weights_shown(),
            "bad_frames": self.bad_frames,
            "bad_frame_fallback": "torch fp32" if self._can_redo() else None,
        }

    def _weights_shown(self) -> str:
        """--weights; for an --engine, the checkpoint it was built from where found, else its sha256."""
        if self.weights:
            return self.weights
        if self.runner is None:
            return "shipped default"
        return self.fallback_weights or f"sha256 {self.sidecar.get('key', {}).get('weights_sha256', '?')[:16]} (file not found)"

    def _can_redo(self) -> bool:
        """An --engine of unknown weights (no --weights, and its checkpoint not found) has no fp32
        model to redo frames with: redoing them with other weights would write another model's frames."""
        return self.fallback == "torch" and (self.weights is not None or self.runner is None
                                             or self.fallback_weights is not None)

    def release_memory(self) -> None:
        """Engines built here for other sizes go (their files stay in the engine cache)."""
        for runner in self._built.values():
            runner.close()
        self._built = {}

    def close(self) -> None:
        for runner in [self.runner, *self._built.values()]:
            if runner is not None:
                runner.close()
        self.runner, self._built = None, {}
        if self._torch is not None:
            self._torch.close()
            self._torch = None


def _built_from(doc: dict) -> str | None:
    """The checkpoint an engine was built from, found by its sha256: the shipped default, or the file
    its sidecar names if that still holds the same weights. None when neither does."""
    from ..checkpoint import file_sha256
    from ..weights import default_weights_path

    want = doc.get("key", {}).get("weights_sha256")
    for candidate in (default_weights_path(), doc.get("weights")):
        try:
            if candidate and Path(candidate).is_file() and file_sha256(candidate) == want:
                return str(candidate)
        except OSError:
            continue
    return None
