"""Oracle: TensorFlow runs the official graph, vdeblur runs the converted checkpoint; outputs must agree.

Proves the converter (names, layouts, block order) and our operator semantics (SAME padding,
transposed conv, TF1 bilinear resize, serial attention, ReLU placement) at once, on the full
paper configuration. Needs ``pip install tensorflow-cpu``; skipped without it. TensorFlow runs
in a child process (tests/tf_reference.py): imported into the pytest process beside torch it
aborts later tests (both bring their own LLVM).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vdeblur.checkpoint import load_checkpoint, read_checkpoint
from vdeblur.cli import main
from vdeblur.network import ModelConfig
from vdeblur.tf_checkpoint import TFCheckpoint

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                reason="needs TensorFlow (pip install tensorflow-cpu)")
TESTS = Path(__file__).parent


@pytest.mark.slow
def test_converted_model_reproduces_tensorflow(tmp_path, capsys):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(TESTS.parent))
    done = subprocess.run([sys.executable, str(TESTS / "tf_reference.py"), str(tmp_path), "--preset", "paper"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    prefix = tmp_path / "deblur.model-675000"
    x = np.load(tmp_path / "input.npy")
    reference = np.load(tmp_path / "tf_output.npy")
    assert x.shape == (1, 64, 96, 3)

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
