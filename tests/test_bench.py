"""`vdeblur bench` reports every stage with sane numbers. No speed is asserted: the machine is shared."""

import json

import numpy as np
import pytest
import torch

from vdeblur import bench
from vdeblur.cli import main
from vdeblur.errors import VdeblurError
from vdeblur.network import ModelConfig, flops_per_frame

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4)


@pytest.fixture
def tiny_model(monkeypatch):
    """Bench always measures the paper's config; the tests swap in a tiny one to stay quick."""
    monkeypatch.setattr(bench, "ModelConfig", lambda: TINY)
    monkeypatch.setattr(bench, "weights_source", lambda weights, backend: (None, "random initialisation (test)"))


def _bench_json(capsys, *argv):
    assert main(["bench", "--json", "--repeats", "2", "--warmup", "1", "--threads", "1", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def _positive_timing(d, frames):
    assert d["frames_per_run"] == frames
    assert d["runs"] == 2 and len(d["runs_s"]) == 2
    assert d["median_s"] > 0 and d["fps"] > 0 and d["ms_per_frame"] > 0
    assert d["fps"] == pytest.approx(frames / d["median_s"])


def test_json_has_every_stage_with_positive_numbers(capsys, tiny_model):
    r = _bench_json(capsys, "--size", "64x64", "--frames", "4", "--precision", "fp32")
    assert r["weights"].startswith("random")
    assert r["device"]["type"] == "cpu" and r["device"]["description"]
    (entry,) = r["sizes"]
    assert entry["size"] == [64, 64]
    st = entry["stages"]
    assert set(st) == {"decode", "convert", "model", "encode", "pipeline", "end_to_end"}
    for name in ("decode", "convert", "encode", "pipeline", "end_to_end"):
        _positive_timing(st[name], 4)
    for name in ("pipeline", "end_to_end"):
        assert st[name]["steady_fps"] > 0 and st[name]["first_frame_s"] > 0   # the latter with opening the clip
    # the model only slows the pipeline down: copying frames through is the ceiling
    assert 0 < st["end_to_end"]["fraction_of_pipeline_fps"] < 1
    assert st["convert"]["yuv_to_rgb_ms_per_frame"] > 0 and st["convert"]["rgb_to_yuv_ms_per_frame"] > 0
    model = st["model"]["fp32"]
    _positive_timing(model, 1)
    assert model["flops_per_frame"] == flops_per_frame(TINY, 64, 64)
    assert model["tflops"] > 0 and model["peak_tflops"] > 0 and model["fraction_of_peak"] > 0
    assert st["end_to_end"]["fraction_of_model_fps"] > 0
    peak = r["peaks"]["fp32"]
    assert peak["tflops"] >= peak["mm_tflops"] > 0 and peak["via"] in ("mm", "conv1x1", "conv5x5")
    assert r["peak_rss_bytes"] > 0
    assert r["libraries"]["pyav"] and r["libraries"]["ffmpeg"] and r["libraries"]["numpy"]   # self-describing
    assert r["settings"]["threads"] == 1 and r["settings"]["frames"] == 4 and r["settings"]["stages"] == list(bench.STAGES)


def test_table_lists_stages_and_batch_counts_frames(capsys, tiny_model):
    assert main(["bench", "--size", "32x48", "--frames", "3", "--batch", "2", "--precision", "fp32",
                 "--repeats", "1", "--warmup", "0", "--threads", "1", "--stages", "model,end_to_end"]) == 0
    out = capsys.readouterr().out
    assert "32x48" in out and "model fp32" in out and "end to end" in out and "decode" not in out
    assert "% of fp32 peak" in out


def test_input_file_is_measured_on_its_own_frames(capsys, tiny_model, tmp_path):
    clip = bench.make_clip(tmp_path / "in.mp4", 48, 32, 5)
    before = clip.read_bytes()
    r = _bench_json(capsys, str(clip), "--frames", "3", "--precision", "fp32", "--stages", "decode,end_to_end")
    (entry,) = r["sizes"]
    assert entry["size"] == [48, 32] and entry["input"] == str(clip)
    assert entry["stages"]["decode"]["frames_per_run"] == 3
    assert entry["stages"]["end_to_end"]["frames_per_run"] == 3
    assert clip.read_bytes() == before


def test_peak_probe_times_a_real_product():
    probe = bench.PeakProbe(torch.device("cpu"), "fp32", n=256, seconds=0.01)
    probe.run()
    probe.run()
    d = probe.to_dict()
    assert d["tflops"] > 0 and d["runs"] == 2 and d["size"] == 256 and set(d["tflops_by_method"]) == {"mm", "conv1x1", "conv5x5"}


def test_memory_check_reports_both_lengths(tmp_path):
    clips = {n: bench.make_clip(tmp_path / f"m{n}.mp4", 32, 32, n) for n in (2, 4)}
    out = bench.memory_check(clips, ["--precision", "fp32", "--threads", "1"])
    assert set(out["runs"]) == {"2", "4"}
    assert [out["runs"][k]["frames"] for k in ("2", "4")] == [2, 4]
    assert all(v["peak_rss_bytes"] > 0 for v in out["runs"].values())
    assert out["growth_ratio"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--size", "10x10"], "--size"),
    (["--size", "abc"], "--size"),
    (["--frames", "0"], "--frames"),
    (["--stages", "model,nope"], "--stages"),
    (["--precision", "fp64"], "precision"),
    (["--precision", ","], "--precision: give at least one of auto, fp32, bf16, fp16"),
    (["--stages", ""], "--stages: give at least one of decode"),
    (["--memory-size", "0x0"], "--memory-size '0x0': width and height must be even and at least 16"),
    (["/no/such/file.mp4"], "no such file"),
    (["--threads", "9999"], "--threads must be between 0 (one per core) and this machine's"),
    (["--ensemble", "8"], "--ensemble must be one of 1, 2, 4, got 8"),
])
def test_bad_options_are_one_line_errors(capsys, argv, message):
    assert main(["bench", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vdeblur: error:") and message in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_is_one_line(capsys):
    assert main(["bench", "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0].lower()


@pytest.mark.gpu
def test_cuda_reports_gpu_memory_and_event_times(capsys, tiny_model):
    r = _bench_json(capsys, "--device", "cuda", "--size", "64x64", "--frames", "4", "--precision", "fp16,fp32")
    assert r["device"]["type"] == "cuda"
    st = r["sizes"][0]["stages"]
    for p in ("fp16", "fp32"):
        m = st["model"][p]
        assert m["gpu_memory"]["max_allocated_bytes"] > 0
        assert m["gpu_event_ms_per_frame"] > 0 and m["fraction_of_peak"] > 0
    assert r["peaks"]["fp16"]["via"] == "mm"
    assert st["end_to_end"]["frames_per_run"] == 4


def test_the_shipped_weights_config_is_reported_and_measured(capsys):
    """No --weights: the FLOPs and the reported config are the shipped checkpoint's, not the paper's defaults."""
    from vdeblur import load_model

    r = _bench_json(capsys, "--size", "32x32", "--frames", "1", "--precision", "fp32", "--stages", "model",
                    "--repeats", "1")
    shipped = load_model(None).config
    assert r["model"]["config"] == shipped.to_dict() and r["model"]["config"]["global_residual"] is True
    assert r["sizes"][0]["stages"]["model"]["fp32"]["flops_per_frame"] == flops_per_frame(shipped, 32, 32)


def test_auto_precision_is_the_backends_own_pick(capsys):
    """ONNX Runtime has no bf16 convolutions: its "auto" is fp32 even on a CPU where torch's is bf16."""
    pytest.importorskip("onnxruntime")
    r = _bench_json(capsys, "--backend", "onnxruntime", "--size", "32x32", "--frames", "1", "--stages", "model",
                    "--repeats", "1")
    assert r["settings"]["precisions"] == ["fp32"] and list(r["sizes"][0]["stages"]["model"]) == ["fp32"]


def test_onnxruntime_fp16_on_a_cpu_has_no_torch_peak_to_be_measured_against(capsys):
    """torch's fp16 products on a CPU are no ceiling for ONNX Runtime's fp16 kernels (a share of
    "peak" above 100 % said so); fp32 keeps its peak."""
    pytest.importorskip("onnxruntime")
    r = _bench_json(capsys, "--backend", "onnxruntime", "--size", "32x32", "--frames", "1", "--stages", "model",
                    "--repeats", "1", "--precision", "fp16,fp32")
    model = r["sizes"][0]["stages"]["model"]
    assert "fraction_of_peak" not in model["fp16"] and "fp16" not in r["peaks"]
    assert "fraction_of_peak" in model["fp32"] and "fp32" in r["peaks"]


def test_steady_rate_leaves_out_the_start_and_needs_two_frames():
    # 8 frames: the first two slow (opening, first frame), then one every 10 ms
    times = [0.5, 0.7] + [0.7 + 0.01 * i for i in range(1, 7)]
    assert bench.steady_fps(times) == pytest.approx(100.0)
    assert bench.steady_fps([1.0]) is None and bench.steady_fps([]) is None


def test_pass_through_copies_frames_of_either_depth():
    backend = bench.PassThrough()
    for dtype in (np.uint8, np.uint16):
        frames = np.arange(2 * 4 * 6 * 3, dtype=dtype).reshape(2, 4, 6, 3)
        out = backend.run(frames)
        assert out.dtype == dtype and np.array_equal(out, frames) and not np.shares_memory(out, frames)
    with pytest.raises(VdeblurError, match="expected"):
        backend.run(np.zeros((4, 6, 3), np.uint8))


def test_the_generated_clip_is_timed_as_progressive_video(capsys, tiny_model, tmp_path):
    """idet reads the generated clip's fine moving texture as woven fields: under deblur's "auto" the
    pipeline and end-to-end stages timed bwdif on every frame, a path progressive video never takes."""
    from vdeblur.deinterlace import detect
    import av

    clip = bench.make_clip(tmp_path / "c.mp4", 64, 48, 12)
    with av.open(str(clip)) as c:
        seen = detect(c.decode(video=0))
    assert seen.resolve()[0] != "auto"   # what "auto" would have done with it
    r = _bench_json(capsys, "--size", "64x48", "--frames", "12", "--precision", "fp32", "--stages", "pipeline,end_to_end")
    for stage in ("pipeline", "end_to_end"):
        assert r["sizes"][0]["stages"][stage]["deinterlaced_frames"] == 0
    r = _bench_json(capsys, str(clip), "--frames", "12", "--precision", "fp32", "--stages", "pipeline")
    assert r["sizes"][0]["stages"]["pipeline"]["deinterlaced_frames"] == 12   # a user's file: as deblur does


def test_steady_rate_leaves_out_the_last_batch_which_comes_without_a_wait():
    # a synchronous backend hands each batch over one model call late; the last comes at once
    times = [0.1 * i for i in range(1, 9)] + [0.8 + 1e-4]
    assert bench.steady_fps(times) == pytest.approx(10.0)
    assert bench.steady_fps(times[:-1] + [0.9], batch=2) == pytest.approx(10.0)


def test_steady_rate_counts_whole_batches():
    """Frames of a batch are handed over together: a window from inside one batch to inside the
    next counted frames that took no time (batch 4 of 8 frames read 5500 fps for 6.5)."""
    handed = [0.5 * (i // 4 + 1) + 1e-4 * (i % 4) for i in range(10)]   # batches of 4 every 0.5 s: 8 fps
    assert bench.steady_fps(handed, batch=4) == pytest.approx(8.0, rel=1e-3)
    assert bench.steady_fps(handed[:8], batch=4) is None   # no two batch ends to measure between


def test_tiled_work_counts_every_overlapping_tile():
    from vdeblur.tiling import TiledBackend

    tiled = TiledBackend(bench.PassThrough(), 64, 16)
    assert tiled.tile_shapes(96, 128) == [(64, 64)] * 6   # 2 rows of 3 (stride 48)
    assert bench.work_per_frame(TINY, 96, 128, tiled) == 6 * flops_per_frame(TINY, 64, 64)
    assert bench.work_per_frame(TINY, 96, 128, bench.PassThrough()) == flops_per_frame(TINY, 96, 128)


def test_an_ensemble_is_measured_with_the_work_of_every_mirror_image(capsys, tiny_model):
    r = _bench_json(capsys, "--size", "64x64", "--frames", "2", "--precision", "fp32", "--stages", "model",
                    "--ensemble", "4")
    assert r["settings"]["ensemble"] == 4 and r["backend"]["ensemble"] == 4
    assert r["sizes"][0]["stages"]["model"]["fp32"]["flops_per_frame"] == 4 * flops_per_frame(TINY, 64, 64)
    assert "an ensemble of 4 mirror images per frame" in bench.format_table(r).splitlines()[2]


def test_the_memory_check_runs_the_ensemble_it_reports(tmp_path, monkeypatch):
    import argparse

    seen = {}
    monkeypatch.setattr(bench, "memory_check", lambda clips, argv: seen.setdefault("argv", argv) and {})
    monkeypatch.setattr(bench, "make_clip", lambda path, w, h, n: path)
    sub = argparse.ArgumentParser().add_subparsers()
    bench.register(sub)
    args = sub.choices["bench"].parse_args(["--ensemble", "4", "--memory-size", "64x48"])
    bench._memory_check(args, tmp_path, "fp32")
    assert seen["argv"][seen["argv"].index("--ensemble") + 1] == "4"


def test_repeated_frames_and_single_runs_are_said(capsys, tiny_model, tmp_path):
    """An input of identical frames ran end to end at 5x the model's rate with nothing to say why,
    and one run showed a spread of 0 %, as if perfectly steady."""
    import av

    still = tmp_path / "still.mp4"
    with av.open(str(still), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(6):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")))
        c.mux(s.encode(None))
    r = _bench_json(capsys, str(still), "--precision", "fp32", "--stages", "end_to_end", "--e2e-repeats", "1")
    e = r["sizes"][0]["stages"]["end_to_end"]
    assert e["repeated_frames"] == 5 and e["spread"] is None
    assert main(["bench", "--size", ",", "--stages", "decode"]) == 1
    assert "give at least one WIDTHxHEIGHT" in capsys.readouterr().err


def test_timed_runs_pause_the_garbage_collector_after_a_collection():
    """A collection (0.1 s with torch and PyAV loaded) fell into whichever run crossed its threshold."""
    import gc

    seen = []
    timing = bench.time_runs(lambda: seen.append(gc.isenabled()), 1, 3, 1)
    assert len(timing.seconds) == 3 and gc.isenabled()
    assert seen == [True, False, False, False]   # the warm-up is not timed
