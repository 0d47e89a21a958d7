"""The kernels compile to PTX for the four GPU generations we target, with the entry signature the
TensorRT AOT plugin launches (tensor inputs, the int32 pixel count, the output, then Triton's own
hidden scratch pointers). Runs in a subprocess: the real compiler, not the interpreter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="the fused-attention kernels need triton (pip install 'vdeblur[kernels]')")

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, re
from vdeblur.kernels import fused_attention as fa
out = []
for cc in (80, 86, 89, 90):
    for kernel in ("sa_pool", "sa_apply"):
        for dtype, c, hid in (("fp16", 32, 2), ("fp32", 128, 8), ("bf16", 64, 4)):
            if cc == 90 or (kernel, dtype) == ("sa_apply", "fp16"):
                ck = fa.compile_kernel(kernel, dtype, c, hid, capability=cc)
                entry = re.search(r"\.entry\s+(\w+)\s*\((.*?)\)", ck.ptx, re.S)
                params = re.findall(r"\.param\s+\.(u64|u32|b64|b32)", entry.group(2))
                target = re.search(r"\.target\s+(\S+)", ck.ptx).group(1)
                out.append(dict(cc=cc, kernel=kernel, dtype=dtype, name=ck.name, entry=entry.group(1),
                                params=params, target=target, bytes=len(ck.ptx), threads=ck.threads, shared=ck.shared,
                                scratch=ck.global_scratch))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled():
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_ptx_for_every_target(compiled):
    targets = {r["cc"]: r["target"] for r in compiled}
    assert targets[80] == "sm_80" and targets[86] == "sm_86" and targets[89] == "sm_89"
    assert targets[90] in ("sm_90", "sm_90a")
    for r in compiled:
        assert r["entry"] == r["name"] == f"{r['kernel']}_kernel"
        assert r["bytes"] > 1000 and r["threads"] == 128
        assert r["scratch"] == 0  # TensorRT passes nothing for Triton's hidden scratch pointers


def test_entry_signature_is_the_plugin_abi(compiled):
    # inputs (pointers), hw (i32), output (pointer); Triton appends two scratch pointers.
    expected = {"sa_pool": ["u64"] * 5 + ["u32"] + ["u64"], "sa_apply": ["u64"] * 7 + ["u32"] + ["u64"]}
    for r in compiled:
        declared = expected[r["kernel"]]
        assert r["params"][:len(declared)] == declared
        assert len(r["params"]) - len(declared) in (0, 2), r["params"]
