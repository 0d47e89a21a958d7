"""CUDA graphs for the eager CUDA path.

On the CPU: the capture policy (``GraphCache``) driven by a fake capture that keeps the real
contract (a static input copied into, a static output overwritten by each replay), the torch
backend's forward replayed through it, and the one-line errors. On a GPU: graphs against eager
(bit-exact or within one level), fused and unfused, fp16 and bf16, and a tail batch of another
size, through ``benchmarks/cuda_vs_cpu.py`` in a subprocess (the CPU tests switch Triton to its
interpreter for the whole pytest process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vdeblur.backends.cuda_graphs import GraphCache, signature
from vdeblur.backends.torch_backend import TorchBackend
from vdeblur.cli import main
from vdeblur.errors import VdeblurError
from vdeblur.network import ModelConfig, build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4)


class FakeGraph:
    """What ``cuda_graphs.capture`` returns, on the CPU: replay recomputes into the static output."""

    def __init__(self, fn, example):
        self.fn, self.static_input = fn, example.clone()
        out = fn(self.static_input)
        self.static_output = tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()
        self.replays = 0

    def __call__(self, x):
        self.static_input.copy_(x)
        out = self.fn(self.static_input)
        statics, news = (self.static_output, out) if isinstance(out, tuple) else ((self.static_output,), (out,))
        for static, new in zip(statics, news):
            static.copy_(new)
        self.replays += 1
        return self.static_output


class Recorder:
    def __init__(self, fail_for=()):
        self.captured, self.fail_for = [], set(fail_for)

    def __call__(self, fn, example):
        if tuple(example.shape) in self.fail_for:
            raise RuntimeError("operation not permitted when stream is capturing\nsecond line")
        graph = FakeGraph(fn, example)
        self.captured.append(graph)
        return graph


def test_a_signature_runs_eagerly_once_then_replays_its_graph():
    calls = []
    fn = lambda x: (calls.append(tuple(x.shape)), x * 2)[1]  # noqa: E731
    capture = Recorder()
    cache = GraphCache(fn, capture=capture, capacity=2)
    a = torch.ones(2, 3)
    assert torch.equal(cache(a), a * 2) and not capture.captured     # first sight: eager (its warm-up)
    assert torch.equal(cache(a + 1), (a + 1) * 2) and len(capture.captured) == 1
    assert torch.equal(cache(a + 2), (a + 2) * 2) and capture.captured[0].replays == 2
    d = cache.describe()
    assert d == {"captured": 1, "replays": 2, "live": 1, "failed": []}


def test_a_tail_batch_of_another_size_never_costs_a_capture():
    capture = Recorder()
    cache = GraphCache(lambda x: x + 1, capture=capture)
    for _ in range(4):
        cache(torch.zeros(4, 2))
    tail = cache(torch.zeros(3, 2))                               # the video's last, shorter batch
    assert torch.equal(tail, torch.ones(3, 2))
    assert [tuple(g.static_input.shape) for g in capture.captured] == [(4, 2)]


def test_strides_and_dtypes_are_part_of_the_signature():
    x = torch.zeros(1, 3, 4, 5)
    assert signature(x) != signature(x.contiguous(memory_format=torch.channels_last))
    assert signature(x) != signature(x.half())
    assert signature(x) == signature(torch.ones(1, 3, 4, 5))


def test_least_recently_used_graph_is_dropped_beyond_capacity():
    capture = Recorder()
    cache = GraphCache(lambda x: x, capture=capture, capacity=2, capture_after=1)
    for n in (1, 2, 1, 3):     # 1 is used again before 3 arrives, so 2 is the one dropped
        cache(torch.zeros(n))
    assert [k[0] for k in cache.graphs] == [(1,), (3,)]
    cache(torch.zeros(2))      # comes back: captured again
    assert len(capture.captured) == 4 and cache.describe()["live"] == 2


def test_a_failed_capture_warns_once_and_stays_eager_for_that_signature():
    warnings = []
    capture = Recorder(fail_for={(2,)})
    cache = GraphCache(lambda x: x - 1, capture=capture, capture_after=1, warn=warnings.append)
    for _ in range(3):
        assert torch.equal(cache(torch.zeros(2)), -torch.ones(2))
    assert len(warnings) == 1 and "running it eagerly" in warnings[0] and "second line" not in warnings[0]
    assert cache.describe()["failed"] == ["[2]: operation not permitted when stream is capturing"]
    cache(torch.zeros(5))      # other signatures still get graphs
    assert len(capture.captured) == 1


def test_backend_forward_through_static_buffers_matches_eager(one_thread):
    """The backend consumes a replay's static output before the next replay overwrites it."""
    torch.manual_seed(0)
    backend = TorchBackend(build_model(TINY), device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8) for _ in range(3)]
    expected = [backend.run(f) for f in frames]
    capture = Recorder()
    backend.graphs = GraphCache(backend._forward, capture=capture)
    got = [backend.run(f) for f in frames + frames[:1]]
    for a, b in zip(got, expected + expected[:1]):
        np.testing.assert_array_equal(a, b)
    wide = backend.run(frames[0].astype(np.uint16) * 257)      # uint16: its own signature, still right
    assert wide.dtype == np.uint16 and np.abs(wide / 257.0 - expected[0]).max() <= 1.0
    assert len(capture.captured) == 1 and backend.describe()["cuda_graphs"]["replays"] == 3


def test_cuda_graphs_on_the_cpu_is_a_one_line_error():
    with pytest.raises(VdeblurError, match="--cuda-graphs needs --device cuda"):
        TorchBackend(build_model(TINY), device="cpu", cuda_graphs=True)
    with pytest.raises(VdeblurError, match="both capture CUDA graphs"):
        TorchBackend(build_model(TINY), device="cpu", cuda_graphs=True, compile_mode="reduce-overhead")


@pytest.mark.parametrize("command", ["deblur", "bench"])
def test_cli_cuda_graphs_on_the_cpu(command, tmp_path, capsys):
    argv = ["bench", "--size", "32x32", "--frames", "1", "--stages", "model"] if command == "bench" else \
        ["deblur", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4")]
    if command == "deblur":
        from vdeblur.bench import make_clip

        make_clip(tmp_path / "in.mp4", 32, 32, 2)
    assert main([*argv, "--device", "cpu", "--cuda-graphs"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vdeblur: error: --cuda-graphs needs --device cuda")
    assert not (tmp_path / "out.mp4").exists()


# --- on a GPU ---------------------------------------------------------------------------------


def _cuda_vs_cpu(*argv):
    env = dict(os.environ, TRITON_INTERPRET="0", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cuda_vs_cpu.py"), *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.gpu
def test_cuda_graphs_match_eager_and_cpu_fp32_through_a_tail_batch():
    pytest.importorskip("triton")
    # 5 frames in batches of 2, 3 passes: batches of 2 run eager once, are captured, then replay; the
    # tail of 1 is captured on its second pass (a new signature) and replayed on the third.
    r = _cuda_vs_cpu("--size", "200x120", "--frames", "5", "--batch", "2", "--repeat", "3",
                     "--variants", "fp16,fp16+graphs,fp16+fused,fp16+fused+graphs,bf16,bf16+graphs,bf16+fused+graphs")
    v = r["variants"]
    for name in ("fp16", "fp16+graphs", "fp16+fused", "fp16+fused+graphs"):
        assert v[name]["psnr_db"] >= 45.0, (name, v[name])
    for name, eager in (("fp16+graphs", "fp16"), ("fp16+fused+graphs", "fp16+fused"), ("bf16+graphs", "bf16")):
        assert v[name]["max_abs_diff_vs"][eager] <= 1, (name, v[name])
        graphs = v[name]["backend"]["cuda_graphs"]
        assert graphs["captured"] == 2 and graphs["replays"] == 7 and graphs["live"] == 2, graphs
        assert not graphs["failed"] and v[name]["passes_agree"], (name, v[name])
    assert v["bf16+fused+graphs"]["psnr_db"] >= 30.0   # bf16 has no bar of its own; this catches garbage


@pytest.mark.gpu
@pytest.mark.slow
def test_compile_reduce_overhead_matches_eager_on_cuda(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "vdeblur" / "torchinductor"))
    torch.manual_seed(0)
    model = build_model(TINY)
    eager = TorchBackend(model, device="cuda", precision="fp16")
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    expected = eager.run(x)
    torch.manual_seed(0)
    compiled = TorchBackend(build_model(TINY), device="cuda", precision="fp16", compile_mode="reduce-overhead")
    for i in range(4):   # warm-up, record, replays: every one must give the same frames
        out = compiled.run(np.roll(x, i, axis=0))
        assert np.abs(out.astype(int) - np.roll(expected, i, axis=0)).max() <= 2, i
    assert compiled.describe()["compile_cache"] == str(tmp_path / "vdeblur" / "torchinductor")


@pytest.mark.gpu
@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graphs"])
def test_two_batches_in_flight_give_the_frames_of_one_at_a_time(graphs):
    """The CUDA path's three streams (upload, compute, download) and its two page-locked slots: batches
    submitted ahead come back exactly as one-at-a-time runs, replayed graphs included (a replay must
    not overwrite the output the previous download still reads)."""
    torch.manual_seed(0)
    backend = TorchBackend(build_model(TINY), device="cuda", precision="fp16", cuda_graphs=graphs)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (2, 72, 128, 3), dtype=np.uint8) for _ in range(6)]
    one_at_a_time = [backend.run(b) for b in batches]
    in_flight, got = [], []
    for b in batches:
        in_flight.append(backend.submit(b))
        if len(in_flight) == 2:
            got.append(in_flight.pop(0).result())
    got += [h.result() for h in in_flight]
    assert all(np.array_equal(a, b) for a, b in zip(one_at_a_time, got))
    first, second = backend.submit(batches[0]), backend.submit(batches[1])
    with pytest.raises(RuntimeError, match="two batches are already in flight"):
        backend.submit(batches[2])
    assert np.array_equal(first.result(), one_at_a_time[0]) and np.array_equal(second.result(), one_at_a_time[1])
    if graphs:
        assert backend.describe()["cuda_graphs"]["replays"] > 0


def test_a_backend_leaves_the_callers_model_as_it_was(one_thread):
    """Building a backend turned the caller's model into bf16, eval mode, channels_last, no gradients."""
    model = build_model(TINY).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    TorchBackend(model, device="cpu", precision="bf16").close()
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in model.state_dict().items())
