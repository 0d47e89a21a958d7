"""The ONNX Runtime backend reproduces the torch output on uint8 frames, from a file or in memory."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from vdeblur import ModelConfig, VdeblurError, build_model, save_checkpoint  # noqa: E402
from vdeblur.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from vdeblur.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4))
    return save_checkpoint(tmp_path_factory.mktemp("w") / "tiny.safetensors", model)


def _torch_u8(weights, frames):
    from vdeblur import load_model

    with torch.no_grad():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        y = load_model(weights).restore(x)
    return (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_backend_from_exported_file_matches_torch(weights, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(weights), "-o", str(onnx_path)]) == 0
    frames = np.random.RandomState(3).randint(0, 256, (2, 50, 74, 3), dtype=np.uint8)
    with OnnxRuntimeBackend(onnx=str(onnx_path), weights=str(weights), device="cpu") as backend:
        out = backend.run(frames)
        info = backend.describe()
    assert info["backend"] == "onnxruntime" and info["plugin_nodes"] is True and info["precision"] == "fp32"
    assert info["bad_frames"] == 0
    diff = np.abs(out.astype(int) - _torch_u8(weights, frames))
    assert out.shape == frames.shape and diff.max() <= 1 and (diff > 0).mean() < 1e-3


def _loud_weights(tmp_path):
    """Weights whose first layer is scaled so far that fp16 activations overflow on bright frames."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4))
    with torch.no_grad():
        next(model.parameters()).mul_(3000.0)
    return save_checkpoint(tmp_path / "loud.safetensors", model)


def test_an_fp16_overflow_is_counted_not_passed_off_as_a_frame(tmp_path):
    """An fp16 graph whose activations overflow writes NaN/inf as black: the run must say so."""
    loud = _loud_weights(tmp_path)
    frames = np.full((2, 32, 48, 3), 255, dtype=np.uint8)
    backend = OnnxRuntimeBackend(weights=str(loud), device="cpu", precision="fp16")
    backend.run(frames)
    info = backend.describe()
    assert info["bad_frames"] == 2 and info["bad_frame_fallback"] == "fp32"


def test_fp16_frames_that_overflow_are_redone_in_fp32(tmp_path):
    """Weights whose fp16 activations overflow on bright frames: those frames come out as the fp32
    model's, the others stay fp16's; an fp16 file whose weights are unknown cannot be redone."""
    loud = _loud_weights(tmp_path)
    frames = np.zeros((3, 32, 48, 3), dtype=np.uint8)
    frames[1] = 255
    fp32 = OnnxRuntimeBackend(weights=str(loud), device="cpu", precision="fp32").run(frames)
    fp16 = OnnxRuntimeBackend(weights=str(loud), device="cpu", precision="fp16")
    out = fp16.run(frames)
    info = fp16.describe()
    assert info["bad_frames"] >= 1 and info["nonfinite_frames"] == 0 and info["bad_frame_fallback"] == "fp32"
    assert np.array_equal(out[1], fp32[1]) and out[1].max() > 0
    onnx_path = tmp_path / "loud16.onnx"
    assert main(["export", "--weights", str(loud), "--precision", "fp16", "-o", str(onnx_path)]) == 0
    unknown = OnnxRuntimeBackend(onnx=str(onnx_path), device="cpu")
    assert not np.array_equal(unknown.run(frames)[1], fp32[1])
    assert unknown.describe()["bad_frame_fallback"] is None and unknown.describe()["bad_frames"] >= 1
    known = OnnxRuntimeBackend(onnx=str(onnx_path), weights=str(loud), device="cpu")
    assert np.array_equal(known.run(frames)[1], fp32[1])


def test_frames_not_finite_in_fp32_are_counted_as_such(tmp_path):
    """An fp32 model has nothing more precise to redo a frame in: the warning must say "even in
    fp32: damaged weights?", not that they were written as they came from a lower precision."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4))
    with torch.no_grad():
        for p in list(model.parameters())[:4]:
            p.mul_(1e12)   # fp32 overflows too
    huge = save_checkpoint(tmp_path / "huge.safetensors", model)
    backend = OnnxRuntimeBackend(weights=str(huge), device="cpu", precision="fp32")
    backend.run(np.full((2, 32, 48, 3), 255, np.uint8))
    info = backend.describe()
    assert (info["bad_frames"], info["nonfinite_frames"]) == (0, 2)


class _OrtWith:
    def __init__(self, *providers):
        self.providers = list(providers)

    def get_available_providers(self):
        return self.providers


def test_a_cuda_device_number_reaches_onnx_runtime():
    from vdeblur.backends.onnxruntime_backend import _providers

    gpu = _OrtWith("CUDAExecutionProvider", "CPUExecutionProvider")
    assert _providers(gpu, "cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert _providers(gpu, "cuda")[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert _providers(gpu, "cpu") == ["CPUExecutionProvider"]
    for bad in ("cudaXYZ", "cuda:", "cuda:x", "gpu"):
        with pytest.raises(VdeblurError, match="unknown device"):
            _providers(gpu, bad)
    with pytest.raises(VdeblurError, match="--device cuda:1 with onnxruntime needs the onnxruntime-gpu package"):
        _providers(_OrtWith("CPUExecutionProvider"), "cuda:1")


def test_backend_exports_in_memory_without_a_file(weights):
    frames = np.random.RandomState(4).randint(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    backend = OnnxRuntimeBackend(weights=str(weights), device="cpu")
    out = backend.run(frames)
    assert np.abs(out.astype(int) - _torch_u8(weights, frames)).max() <= 1
    assert backend.run(frames[:0]).shape == (0, 32, 48, 3)   # an empty batch, as the torch backend gives


def test_backend_errors_are_one_line(weights, tmp_path):
    with pytest.raises(VdeblurError, match="no such ONNX file"):
        OnnxRuntimeBackend(onnx=str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model")
    with pytest.raises(VdeblurError, match="junk.onnx"):
        OnnxRuntimeBackend(onnx=str(junk))
    fixed = tmp_path / "fixed.onnx"
    assert main(["export", "--weights", str(weights), "-o", str(fixed), "--height", "32", "--width", "48"]) == 0
    backend = OnnxRuntimeBackend(onnx=str(fixed), device="cpu")
    with pytest.raises(VdeblurError, match=r"built for 32x48 frames \(height x width\), got 24x16"):
        backend.run(np.zeros((1, 24, 16, 3), np.uint8))
    with pytest.raises(VdeblurError, match="expected uint8"):
        backend.run(np.zeros((1, 32, 48, 3), np.float32))
    other = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4))
    other_weights = save_checkpoint(tmp_path / "other.safetensors", other)
    with pytest.raises(VdeblurError, match="other weights"):
        OnnxRuntimeBackend(onnx=str(fixed), weights=str(other_weights))
    bf16 = tmp_path / "bf16.onnx"
    assert main(["export", "--weights", str(weights), "-o", str(bf16), "--precision", "bf16"]) == 0
    with pytest.raises(VdeblurError, match="no bf16"):
        OnnxRuntimeBackend(onnx=str(bf16), device="cpu")
    from vdeblur.backends import BackendOptions, open_backend
    with pytest.raises(VdeblurError, match="--onnx is for the onnxruntime backend, not --backend torch"):
        open_backend("torch", BackendOptions(onnx=str(fixed)))


@pytest.fixture
def no_native_bf16(monkeypatch):
    import vdeblur.hardware

    monkeypatch.setattr(vdeblur.hardware, "cpu_bf16_kind", lambda: None)


@pytest.mark.parametrize("change,expected", [
    ({}, "onnxruntime"),                        # a CPU that runs torch in fp32: ORT measured 1.13-1.24x faster
    ({"deep_input": True}, "torch"),            # 10-bit video: only torch keeps 16-bit RGB
    ({"compile": True}, "torch"),               # torch-only switches mean torch
    ({"precision": "bf16"}, "torch"),
])
def test_auto_picks_onnxruntime_where_torch_would_run_fp32_on_the_cpu(weights, no_native_bf16, change, expected):
    from vdeblur.backends import BackendOptions, open_backend

    options = BackendOptions(weights=str(weights), device="cpu", **change)
    with open_backend("auto", options) as backend:
        assert backend.describe()["backend"] == expected


def test_auto_stays_torch_with_native_bf16_or_without_onnxruntime(weights, monkeypatch):
    import importlib.util

    import vdeblur.hardware
    from vdeblur.backends import BackendOptions, open_backend

    options = BackendOptions(weights=str(weights), device="cpu")
    monkeypatch.setattr(vdeblur.hardware, "cpu_bf16_kind", lambda: "amx")
    assert open_backend("auto", options).describe()["backend"] == "torch"
    monkeypatch.setattr(vdeblur.hardware, "cpu_bf16_kind", lambda: None)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a))
    assert open_backend("auto", options).describe()["backend"] == "torch"


def test_a_10_bit_video_keeps_torch_under_auto(weights, tmp_path, no_native_bf16):
    from media import make_video
    from vdeblur.pipeline import deblur_video

    src = tmp_path / "deep.mkv"
    make_video(src, frames=2, pix_fmt="yuv420p10le", codec="libx265", options={"preset": "ultrafast", "x265-params": "log-level=error"})
    report = deblur_video(src, tmp_path / "out.mkv", weights=str(weights), device="cpu")
    assert report.backend["backend"] == "torch"
    make_video(tmp_path / "8bit.mkv", frames=2)
    report = deblur_video(tmp_path / "8bit.mkv", tmp_path / "o8.mkv", weights=str(weights), device="cpu")
    assert report.backend["backend"] == "onnxruntime"


def test_a_run_stopped_under_torch_goes_on_under_onnxruntime(weights, tmp_path):
    """Installing onnxruntime mid-job (so auto switches) keeps the finished segments."""
    from media import make_video
    from test_resume import SMALL
    from vdeblur.backends import BackendOptions, open_backend
    from vdeblur.pipeline import deblur_video
    from vdeblur.resume import kept_frames

    def stopping(backend, after):
        """``backend``, interrupted once ``after`` frames are submitted."""
        submit, done = backend.submit, []

        def stop_or_submit(frames):
            if len(done) >= after:
                raise KeyboardInterrupt
            done.extend(frames)
            return submit(frames)

        backend.submit = stop_or_submit
        return backend

    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_video(src, frames=12)
    options = BackendOptions(weights=str(weights), device="cpu", precision="fp32")
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=stopping(open_backend("torch", options), 8), codec="ffv1", **SMALL)
    assert kept_frames(out) == 6
    notes = []
    report = deblur_video(src, out, backend=open_backend("onnxruntime", options), codec="ffv1", notify=notes.append, **SMALL)
    assert report.resumed_frames == 6 and notes[0].startswith("resuming after frame 6"), notes


def test_threads_reach_onnx_runtime_and_torch(weights, capsys):
    """--threads leaves cores to other jobs whichever backend auto picked."""
    from vdeblur.backends import BackendOptions, open_backend

    ort_backend = open_backend("onnxruntime", BackendOptions(weights=str(weights), device="cpu", threads=1))
    assert ort_backend.describe()["cpu_threads"] == 1
    before = torch.get_num_threads()
    try:
        assert open_backend("torch", BackendOptions(weights=str(weights), device="cpu", threads=1)).describe()["cpu_threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert main(["deblur", "in.mp4", "-o", "out.mp4", "--threads", "-1"]) == 1
    assert "--threads must be between 0 (one per core) and this machine's" in capsys.readouterr().err


@pytest.mark.parametrize("option, flag", [(dict(compile=True), "--compile"),
                                          (dict(compile=True, compile_mode="max-autotune"), "--compile-mode"),
                                          (dict(cuda_graphs=True), "--cuda-graphs"),
                                          (dict(fused_attention=True), "--fused-attention")])
def test_torch_switches_are_refused_for_another_backend(option, flag):
    """They were left unused without a word (and bench's header said 'torch.compile')."""
    from vdeblur.backends import BackendOptions, open_backend

    with pytest.raises(VdeblurError, match=f"^{flag} is for the torch backend, not --backend onnxruntime$"):
        open_backend("onnxruntime", BackendOptions(**option))
