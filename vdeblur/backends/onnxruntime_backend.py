"""The ONNX Runtime backend: a CPU/CUDA alternative to torch, and the oracle for the exported graph.

It runs the file `vdeblur export` writes (uint8 NHWC in and out, normalisation inside), or, with
no file given, exports the checkpoint in memory first. The fused-attention custom nodes run
through their model-local function bodies, so the very file TensorRT compiles is checked here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VdeblurError
from .base import Backend


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise VdeblurError("the onnxruntime backend needs ONNX Runtime: pip install 'vdeblur[onnx]'") from None
    return onnxruntime


def _providers(ort, device: str) -> list:
    available = ort.get_available_providers()
    if device == "auto":
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = device.partition(":")[2]
    if device != "cuda" and not (device.startswith("cuda:") and index.isdigit()):
        raise VdeblurError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if "CUDAExecutionProvider" not in available:
        raise VdeblurError(f"--device {device} with onnxruntime needs the onnxruntime-gpu package and a CUDA GPU "
                           f"(this onnxruntime offers {', '.join(available)})")
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    """Runs an exported vdeblur ONNX model with ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, onnx: str | None = None, weights: str | None = None, device: str = "auto",
                 precision: str = "auto", threads: int = 0):
        _ort()   # the missing package is the first thing to say
        self.device = device
        self.weights = weights
        self.source = onnx or "exported in memory"
        self.bad_frames = 0   # frames whose fp16 output had NaN/inf (an overflow, written black): redone in fp32
        self.nonfinite = 0    # frames still not finite in fp32 (written as the model gave them)
        if onnx:
            data, meta = self._read_file(onnx)
            if weights:
                self._check_weights(meta, weights, onnx)
        else:
            data, meta = self._export(weights, precision)
        self.meta = meta
        self.precision = meta.get("precision", "fp32")
        if precision not in ("auto", self.precision):
            raise VdeblurError(f"{self.source}: the model is {self.precision}; re-export with --precision {precision}")
        if self.precision == "bf16":
            raise VdeblurError(f"{self.source}: ONNX Runtime has no bf16 convolutions; export fp32 or fp16 for it")
        self.threads = int(threads)
        self.session = self._session(data)
        # fp16 can overflow where fp32 cannot: such frames are redone by an fp32 export of the same
        # weights, made on first need (torch and TensorRT redo them too).
        self._fp32_weights = self._weights_for_redo(onnx, weights, meta) if self.precision == "fp16" else None
        self._fp32_session = None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_size = tuple(inp.shape[1:3]) if all(isinstance(d, int) for d in inp.shape[1:3]) else None

    def _session(self, data: bytes):
        ort = _ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(data, sess_options=opts, providers=_providers(ort, self.device))
        except VdeblurError:
            raise
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types for bad files
            raise VdeblurError(f"{self.source}: ONNX Runtime cannot load it: {str(e).splitlines()[0]}") from None
        if self.device.startswith("cuda") and session.get_providers()[0] != "CUDAExecutionProvider":
            # ORT falls back to the CPU with only a log line when the CUDA libraries do not load
            raise VdeblurError(f"--device {self.device}: ONNX Runtime could not start its CUDA provider here "
                               "(CUDA or cuDNN libraries missing?); use --device cpu or auto")
        return session

    @staticmethod
    def _weights_for_redo(onnx: str | None, weights: str | None, meta: dict) -> Path | None:
        """The checkpoint an fp16 model came from, where it is known: the one given (checked against
        the file's record), or the shipped default when the file records its sha256. None otherwise."""
        from ..weights import default_weights_path

        if weights:
            return Path(weights)
        default = default_weights_path()
        if not onnx:
            return default
        from ..checkpoint import file_sha256

        try:
            return default if meta.get("weights_sha256") == file_sha256(default) else None
        except OSError:
            return None

    @classmethod
    def from_options(cls, options) -> "OnnxRuntimeBackend":
        return cls(onnx=options.onnx, weights=options.weights, device=options.device, precision=options.precision,
                   threads=options.threads)

    @staticmethod
    def _read_file(path: str) -> tuple[bytes, dict]:
        from ..onnx_export import require_onnx

        onnx = require_onnx()
        try:
            model = onnx.load(path, load_external_data=False)
        except FileNotFoundError:
            raise VdeblurError(f"{path}: no such ONNX file") from None
        except Exception as e:  # noqa: BLE001 - protobuf decode errors have no common base
            raise VdeblurError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
        meta = {p.key: p.value for p in model.metadata_props}
        names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
        if meta.get("io") == "planar":
            raise VdeblurError(f"{path}: a planar export, for vs-mlrt; vdeblur runs the default layout "
                               "(`vdeblur export` without --io planar)")
        if names != (["frames"], ["restored", "nonfinite"]):
            raise VdeblurError(f"{path}: not a vdeblur export (inputs {names[0]}, outputs {names[1]}); make one with `vdeblur export`")
        return model.SerializeToString(), meta

    @staticmethod
    def _check_weights(meta: dict, weights: str, path: str) -> None:
        from ..checkpoint import file_sha256

        sha = file_sha256(weights)
        if meta.get("weights_sha256") not in (None, sha):
            raise VdeblurError(f"{path} was exported from other weights than {weights}; re-export it")

    @staticmethod
    def _export(weights: str | None, precision: str) -> tuple[bytes, dict]:
        from .. import load_model
        from ..checkpoint import file_sha256
        from ..onnx_export import ExportSpec, build_onnx
        from ..weights import default_weights_path

        path = Path(weights) if weights else default_weights_path()
        spec = ExportSpec(precision="fp32" if precision == "auto" else precision, plugin=False)
        proto = build_onnx(load_model(path), spec, {"weights_sha256": file_sha256(path)})
        return proto.SerializeToString(), {p.key: p.value for p in proto.metadata_props}

    def run(self, frames: np.ndarray) -> np.ndarray:
        self.check_frames(frames)
        if self.fixed_size and tuple(frames.shape[1:3]) != self.fixed_size:
            h, w = self.fixed_size
            raise VdeblurError(f"{self.source} is built for {h}x{w} frames (height x width), got "
                               f"{frames.shape[1]}x{frames.shape[2]}; "
                               "export it with --dynamic or the video's size")
        frames = np.ascontiguousarray(frames)
        if not len(frames):   # as the torch backend: nothing in, nothing out
            return frames.copy()
        restored, nonfinite = self.session.run(["restored", "nonfinite"], {self.input_name: frames})
        bad = np.flatnonzero(np.asarray(nonfinite).reshape(len(frames), -1).max(axis=1) > 0)
        if len(bad) and self.precision == "fp32":   # nothing more precise to redo them in: damaged weights?
            self.nonfinite += len(bad)
        elif len(bad):
            self.bad_frames += len(bad)
            if self._fp32_weights is not None:   # else written as they came; the summary says so
                if self._fp32_session is None:
                    self._fp32_session = self._session(self._export(str(self._fp32_weights), "fp32")[0])
                redone, still = self._fp32_session.run(["restored", "nonfinite"], {self.input_name: frames[bad]})
                restored[bad] = redone
                self.nonfinite += int((np.asarray(still).reshape(len(bad), -1).max(axis=1) > 0).sum())
        return restored

    def describe(self) -> dict:
        ort = _ort()
        return {
            "backend": self.name,
            "device": self.session.get_providers()[0],
            "precision": self.precision,
            "onnx": self.source,
            "weights": self.weights or self.meta.get("weights", "shipped default"),
            "plugin_nodes": self.meta.get("plugin") == "true",
            "cpu_threads": self.threads or "one per core",
            "onnxruntime": ort.__version__,
            "bad_frames": self.bad_frames,
            "bad_frame_fallback": "fp32" if self._fp32_weights is not None else None,
            "nonfinite_frames": self.nonfinite,
        }

    def close(self) -> None:
        self.session = self._fp32_session = None
