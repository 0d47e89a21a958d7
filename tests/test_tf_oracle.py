"""Oracle: TensorFlow runs the official graph, vdeblur runs the converted checkpoint; outputs must agree.

Proves the converter (names, layouts, block order) and our operator semantics (SAME padding,
transposed conv, TF1 bilinear resize, serial attention, ReLU placement) at once, on the full
paper configuration. Needs ``pip install tensorflow-cpu``; skipped without it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")

from tf_reference import save_reference  # noqa: E402

from vdeblur.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from vdeblur.cli import main  # noqa: E402
from vdeblur.network import ModelConfig  # noqa: E402
from vdeblur.tf_checkpoint import TFCheckpoint  # noqa: E402


@pytest.mark.slow
def test_converted_model_reproduces_tensorflow(tmp_path, capsys):
    prefix = tmp_path / "deblur.model-675000"
    x = np.random.default_rng(0).random((1, 64, 96, 3), dtype=np.float32)
    reference = save_reference(prefix, ModelConfig(), x, seed=3, step=675000)

    entries = TFCheckpoint(prefix).entries
    assert "g_net/enc1_2/conv2d-1/weights/Adam" in entries and "beta1_power" in entries

    out = tmp_path / "converted.safetensors"
    assert main(["import-tf", str(prefix), "-o", str(out)]) == 0
    ckpt = read_checkpoint(out)
    assert ckpt.config == ModelConfig()
    assert ckpt.extra["provenance"]["step"] == 675000
    assert ckpt.extra["provenance"]["variables"] == 228

    model = load_checkpoint(out)
    with torch.no_grad():
        y = model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert 0.05 < np.abs(reference).mean() < 5  # a real signal, not a collapsed one
    diff = float(np.abs(y - reference).max())
    with capsys.disabled():
        print(f"\n[tf oracle] 64x96, paper config: max abs diff {diff:.3g}")
    assert diff <= 1e-4
