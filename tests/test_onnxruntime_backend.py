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
    diff = np.abs(out.astype(int) - _torch_u8(weights, frames))
    assert out.shape == frames.shape and diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_backend_exports_in_memory_without_a_file(weights):
    frames = np.random.RandomState(4).randint(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    out = OnnxRuntimeBackend(weights=str(weights), device="cpu").run(frames)
    assert np.abs(out.astype(int) - _torch_u8(weights, frames)).max() <= 1


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
    with pytest.raises(VdeblurError, match="built for 32x48"):
        backend.run(np.zeros((1, 16, 16, 3), np.uint8))
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
