"""The `deblur` job: CLI, backends, safety rules (no clobbering, nothing partial under the final name)."""

import os
import subprocess
from fractions import Fraction
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from media import IdentityBackend, make_video, video_pts
from vdeblur import VdeblurError, deblur_video, save_checkpoint
from vdeblur.backends import BACKENDS, BackendOptions, backend_class, open_backend
from vdeblur.backends.torch_backend import TorchBackend
from vdeblur.cli import main
from vdeblur.network import ModelConfig, build_model

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "in.mp4"
    make_video(path, frames=6, audio=True)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("w") / "tiny.safetensors", build_model(TINY))


def files(d):
    return sorted(p.name for p in d.iterdir())


def test_cli_deblurs_with_the_torch_backend(clip, weights, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    rc = main(["deblur", str(clip), "-o", str(out), "--weights", str(weights), "--backend", "torch",
               "--device", "cpu", "--precision", "fp32", "--batch", "4"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "6/6" in err and "6 frames" in err and "torch on cpu fp32" in err and "#1 audio aac" in err
    assert video_pts(out) == video_pts(clip)
    with av.open(str(clip)) as a, av.open(str(out)) as b:
        fa, fb = next(a.decode(video=0)), next(b.decode(video=0))
        assert not np.array_equal(fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24"))   # the model ran
    assert files(tmp_path) == ["out.mp4"]


def test_python_api_batches_and_tiles(clip, tmp_path):
    backend = IdentityBackend()
    report = deblur_video(clip, tmp_path / "o.mkv", backend=backend, batch=4, tile=32, tile_overlap=8)
    assert report.frames == 6 and backend.calls == 2 * 6   # 2 batches (4 + 2) x 6 tiles (3 x 2) of 64x48
    assert report.backend["tile"] == [32, 32] and report.fps > 0
    backend = IdentityBackend()
    report = deblur_video(clip, tmp_path / "r.mkv", backend=backend, batch=4, tile="40x48", tile_overlap=8)
    assert report.frames == 6 and backend.calls == 2 * 2   # 2 batches x 2 tiles (full height, 2 columns)
    assert report.backend["tile"] == [40, 48]


def test_existing_output_needs_overwrite(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    assert main(["deblur", str(clip), "-o", str(out), "-q"]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    deblur_video(clip, out, backend=IdentityBackend(), overwrite=True)
    assert len(video_pts(out)) == 6 and files(tmp_path) == ["out.mp4"]


def test_an_existing_pipe_or_device_is_never_renamed_over(clip, tmp_path, capsys):
    import os
    import stat

    fifo = tmp_path / "out.mp4"
    os.mkfifo(fifo)
    assert main(["deblur", str(clip), "-o", str(fifo), "--overwrite", "-q"]) == 1
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(fifo.stat().st_mode) and files(tmp_path) == ["out.mp4"]


def test_refuses_to_write_onto_the_input(clip, tmp_path, capsys):
    link = tmp_path / "link.mp4"
    link.symlink_to(clip)
    before = clip.read_bytes()
    for target in (clip, link):
        assert main(["deblur", str(clip), "-o", str(target), "--overwrite", "-q"]) == 1
        assert "would overwrite the input" in capsys.readouterr().err
    assert clip.read_bytes() == before


@pytest.mark.parametrize("option", ["--weights", "--onnx"])
def test_refuses_to_write_onto_its_own_model_file(clip, tmp_path, capsys, option):
    model = tmp_path / "model.mkv"   # a name OUTPUT may well have
    model.write_bytes(b"weights")
    backend = ["--backend", "onnxruntime"] if option == "--onnx" else []
    assert main(["deblur", str(clip), "-o", str(model), "--overwrite", "-q", option, str(model), *backend]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    with pytest.raises(VdeblurError, match="would overwrite the input"):
        deblur_video(clip, model, weights=str(model), overwrite=True)
    assert model.read_bytes() == b"weights"


@pytest.mark.parametrize("deep", [False, True])
def test_an_odd_size_for_420_names_options_that_keep_the_depth(tmp_path, deep):
    src = tmp_path / "odd.png"   # RGB: written as 4:2:0 into .mp4
    with av.open(str(src), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = 65, 33, "rgb48be" if deep else "rgb24"
        c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((33, 65, 3), np.uint16 if deep else np.uint8),
                                                  format="rgb48le" if deep else "rgb24")))
        c.mux(s.encode(None))
    full = "yuv444p10le" if deep else "yuv444p"
    with pytest.raises(VdeblurError, match=f"cannot write yuv420p{'10le' if deep else ''} at 65x33 .*; use --pix-fmt "
                                           f"{full} \\(fewer players take it\\)"):
        deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(uint16=deep))
    deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(uint16=deep), pix_fmt=full)   # the hint works


def test_an_8_bit_backend_on_10_bit_video_is_said(tmp_path):
    src = tmp_path / "ten.mkv"
    make_video(src, frames=1, pix_fmt="yuv420p10le")
    notes = []
    deblur_video(src, tmp_path / "a.mkv", backend=IdentityBackend(uint16=False), notify=notes.append)
    assert notes == ["identity takes 8-bit frames: this 10-bit video is deblurred at 8 bits and written as "
                     "yuv420p10le (--backend torch keeps the depth)"]
    notes.clear()
    deblur_video(src, tmp_path / "b.mkv", backend=IdentityBackend(uint16=True), notify=notes.append)
    assert notes == []


class Squatter(IdentityBackend):
    """Another program writes the output's name while the run works."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def run(self, frames):
        if not self.path.exists():
            self.path.write_bytes(b"precious")
        return super().run(frames)


@pytest.mark.parametrize("resume", [True, False])
def test_a_file_that_appears_at_output_during_the_run_is_left_alone(clip, tmp_path, resume):
    out = tmp_path / "out.mkv"
    with pytest.raises(VdeblurError, match=f"{out}: appeared while this run was writing it, and was left alone; "
                                           f"the result is {tmp_path / 'out.vdeblur-1.mkv'}"):
        deblur_video(clip, out, backend=Squatter(out), codec="ffv1", resume=resume)
    assert out.read_bytes() == b"precious"
    assert files(tmp_path) == ["out.mkv", "out.vdeblur-1.mkv"]   # the result, and nothing kept beside
    assert len(video_pts(tmp_path / "out.vdeblur-1.mkv")) == 6
    deblur_video(clip, out, backend=Squatter(out), codec="ffv1", resume=resume, overwrite=True)   # asked to replace it
    assert len(video_pts(out)) == 6


def test_a_picture_that_appears_in_an_output_sequence_during_the_run_is_left_alone(clip, tmp_path):
    first = tmp_path / "f_0001.png"
    with pytest.raises(VdeblurError, match=f"{first}: appeared while this run was writing"):
        deblur_video(clip, tmp_path / "f_%04d.png", backend=Squatter(first))
    assert first.read_bytes() == b"precious"
    assert files(tmp_path) == [".f_%04d.png.vdeblur-resume", "f_0001.png"]   # the frames kept: --overwrite goes on
    report = deblur_video(clip, tmp_path / "f_%04d.png", backend=IdentityBackend(), overwrite=True)
    assert report.resumed_frames == 6 and files(tmp_path) == [f"f_{n:04d}.png" for n in range(1, 7)]


class Failing(IdentityBackend):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def run(self, frames):
        if self.calls == 2:
            raise self.exc
        return super().run(frames)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), VdeblurError("backend broke"), RuntimeError("a bug")])
def test_failure_or_ctrl_c_midway_leaves_nothing(clip, tmp_path, exc):
    out = tmp_path / "out.mp4"
    with pytest.raises(type(exc)):
        deblur_video(clip, out, backend=Failing(exc))
    assert files(tmp_path) == []


def _bad_inputs(tmp):
    text = tmp / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    audio_only = tmp / "audio.m4a"
    with av.open(str(audio_only), "w") as c:
        a = c.add_stream("aac", rate=48000)
        for k in range(5):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 48000, k * 1024
            c.mux(a.encode(f))
        c.mux(a.encode(None))
    full = tmp / "full.mp4"
    make_video(full, frames=10)
    empty = tmp / "empty"
    empty.mkdir()
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return {
        "missing": (tmp / "nope.mp4", [], "no such file"),
        "text": (text, [], "not a readable video file"),
        "audio-only": (audio_only, [], "has no video stream (audio)"),
        "truncated": (truncated, [], "truncated/damaged"),
        "directory": (empty, [], "no video files in it (looked for .mp4, .mov"),
        "codec": (full, ["--codec", "nosuchcodec"], "unknown encoder 'nosuchcodec'"),
        "audio-codec": (full, ["--codec", "aac"], "not a video encoder"),
        "crf": (full, ["--codec", "ffv1", "--crf", "10"], "ffv1 has no crf option"),
        "pix-fmt": (full, ["--pix-fmt", "rgb24"], "--pix-fmt rgb24: libx264 takes"),
        "preset": (full, ["--preset", "superduper"], "--preset superduper: libx264 takes ultrafast, superfast,"),
        "encoder-refuses": (full, ["--codec", "libsvtav1", "--preset", "99"], "; does libsvtav1 take --preset 99?"),
        "crf-high": (full, ["--crf", "52"], "--crf 52: libx264 takes 0 to 51 (lower is better)"),
        "crf-unset": (full, ["--crf", "-1"], "--crf -1: libx264 takes 0 to 51 (lower is better)"),
        "crf-svt": (full, ["--codec", "libsvtav1", "--crf", "64"], "--crf 64: libsvtav1 takes 0 to 63 (lower is better)"),
        "tile": (full, ["--tile", "64", "--tile-overlap", "40"], "--tile-overlap"),
        "tile-shape": (full, ["--tile", "64x"], "--tile '64x': expected N or WIDTHxHEIGHT"),
        "start": (full, ["--start", "100"], "--start 100 is past the end of"),
        "start-in-last-frame": (full, ["--start", "0.39"], "--start 0.39: no video frame of "
                                f"{full} starts at or after it (the last starts at 0.360 s, and the video ends at 0.400 s)"),
        "between-frames": (full, ["--start", "0.02", "--duration", "0.01"], f"{full}: no video frame starts between "
                           "0.02 and 0.03 s (--start and --duration select a part shorter than a frame)"),
        "start-huge": (full, ["--start", "1e15"], "--start 1e+15 is past the end of"),
        "start-inf": (full, ["--start", "1e308"], "--start 1e+308 is past the end of"),
        "start-nan": (full, ["--start", "nan"], "--start must be a number of seconds >= 0, got nan"),
        "duration-nan": (full, ["--duration", "nan"], "--duration must be > 0, got nan"),
        "crf-nan": (full, ["--crf", "nan"], "--crf must be a number, got nan"),
        "checkpoint-nan": (full, ["--checkpoint-minutes", "nan"], "--checkpoint-minutes must be >= 0, got nan"),
        "threads": (full, ["--threads", "999"], "--threads must be between 0 (one per core) and this machine's"),
        "overlap": (full, ["--tile-overlap", "-3"], "--tile-overlap must be >= 0, got -3"),
        "backend-weights": (full, ["--backend", "torch", "--weights", str(tmp / "none.safetensors")], "no such checkpoint file"),
    }


def test_bad_inputs_get_one_line_and_leave_nothing(tmp_path, capsys):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name, (src, extra, message) in _bad_inputs(src_dir).items():
        rc = main(["deblur", str(src), "-o", str(out_dir / "out.mp4"), "-q", *extra])
        err = capsys.readouterr().err
        assert rc == 1, name
        assert err.startswith("vdeblur: error: ") and err.count("\n") == 1 and message in err, (name, err)
        assert files(out_dir) == [], name


def test_no_traceback_from_the_real_command(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    run = subprocess.run([sys.executable, "-m", "vdeblur", "deblur", str(bad), "-o", str(tmp_path / "o.mp4")],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    assert files(tmp_path) == ["bad.mp4"]


def test_backend_factory(weights):
    assert set(BACKENDS) >= {"torch"}
    with pytest.raises(VdeblurError, match="unknown backend 'nope'"):
        backend_class("nope")
    options = BackendOptions(weights=str(weights), device="cpu", precision="fp32", deep_input=True)
    backend = open_backend("auto", options)   # 16-bit frames: torch, whatever the CPU
    assert isinstance(backend, TorchBackend) and backend.describe()["weights"] == str(weights)
    x = np.random.default_rng(0).integers(0, 256, (2, 37, 50, 3), dtype=np.uint8)
    y = backend.run(x)
    assert y.shape == x.shape and y.dtype == np.uint8
    y16 = backend.run(x.astype(np.uint16) * 257)
    assert y16.dtype == np.uint16 and np.abs(y16 / 257.0 - y).max() <= 1.0   # same picture at 16 bits
    with pytest.raises(VdeblurError, match="fp16 is not supported on the CPU"):
        open_backend("torch", BackendOptions(weights=str(weights), device="cpu", precision="fp16"))


@pytest.mark.gpu
def test_cuda_fp16_agrees_with_cpu_fp32(weights):
    x = np.random.default_rng(0).integers(0, 256, (3, 74, 130, 3), dtype=np.uint8)
    reference = open_backend("torch", BackendOptions(weights=str(weights), device="cpu", precision="fp32")).run(x)
    cuda = open_backend("torch", BackendOptions(weights=str(weights), device="cuda"))
    assert cuda.precision == "fp16" and cuda.describe()["device"].startswith("cuda")
    for _ in range(2):   # second call reuses the pinned upload buffer
        out = cuda.run(x)
        assert out.shape == x.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - reference).mean() < 2.0
    wide = cuda.run(x.astype(np.uint16) * 257)
    assert wide.dtype == np.uint16 and np.abs(wide / 257.0 - reference).mean() < 2.0
    cuda.close()


def test_ctrl_c_from_the_cli_says_so_and_leaves_nothing(clip, tmp_path, capsys, monkeypatch):
    import vdeblur.pipeline as pipeline

    monkeypatch.setattr(pipeline, "open_backend", lambda name, options: Failing(KeyboardInterrupt()))
    out = tmp_path / "out.mp4"
    assert main(["deblur", str(clip), "-o", str(out), "-q"]) == 130
    assert capsys.readouterr().err == f"vdeblur: interrupted; {out} was not written\n"
    monkeypatch.setattr(pipeline, "open_backend", lambda name, options: Failing(RuntimeError("CUDA out of memory. Tried")))
    assert main(["deblur", str(clip), "-o", str(out), "-q", "--batch", "2"]) == 1
    assert capsys.readouterr().err == (
        "vdeblur: out of memory on a batch of 2 frames of 64x48; going on one frame at a time (--batch 1 starts there)\n"
        "vdeblur: error: out of memory running the model on one 64x48 frame; free the device's memory "
        "(other programs?) or use another --device\n")
    assert files(tmp_path) == []


def test_backend_specific_options_need_their_backend(weights):
    for option, name in (("engine", "tensorrt"), ("onnx", "onnxruntime")):
        options = BackendOptions(weights=str(weights), **{option: "model.bin"})
        if name in BACKENDS:
            continue   # that backend's own tests cover it
        with pytest.raises(VdeblurError, match=f"--{option} needs the {name} backend"):
            open_backend("auto", options)


def test_bf16_on_cpu_agrees_with_fp32(weights):
    x = np.random.default_rng(1).integers(0, 256, (1, 40, 56, 3), dtype=np.uint8)
    ref = open_backend("torch", BackendOptions(weights=str(weights), device="cpu", precision="fp32")).run(x)
    bf16 = open_backend("torch", BackendOptions(weights=str(weights), device="cpu", precision="bf16"))
    assert bf16.describe()["precision"] == "bf16"
    out = bf16.run(x.astype(np.uint16) * 257)   # full 16-bit scale through bf16 stays finite and right
    assert out.dtype == np.uint16 and np.abs(out / 257.0 - ref).mean() < 3.0


def test_fused_attention_on_cpu_is_a_clear_error(tmp_path):
    from vdeblur.backends.torch_backend import TorchBackend
    from vdeblur.network import ModelConfig, build_model

    model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4))
    with pytest.raises(VdeblurError, match="CUDA"):
        TorchBackend(model, device="cpu", fused_attention=True)


def _poison(backend, frame):
    """Make the backend's own (reduced-precision) model give NaN in one pixel of batch frame ``frame``."""
    original = backend.model.restore

    def restore(frames):
        y = original(frames).clone()
        y[frame, 0, 5, 7] = float("nan")
        return y

    backend.model.restore = restore


def test_frames_with_nan_in_reduced_precision_are_redone_in_fp32(weights, capsys):
    from vdeblur.pipeline import Report

    x = np.random.default_rng(2).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    # The redo runs the bad frame alone: oneDNN's fp32 can round a pixel differently in a batch of 3.
    ref = open_backend("torch", BackendOptions(weights=str(weights), device="cpu", precision="fp32")).run(x[1:2])
    backend = open_backend("torch", BackendOptions(weights=str(weights), device="cpu", precision="bf16"))
    clean = backend.run(x)
    _poison(backend, 1)
    out = backend.run(x)
    assert np.array_equal(out[[0, 2]], clean[[0, 2]]) and np.array_equal(out[1], ref[0])
    facts = backend.describe()
    assert (facts["bad_frames"], facts["bad_frame_fallback"], facts["nonfinite_frames"]) == (1, "fp32", 0)
    assert capsys.readouterr().err.count("bf16 output had NaN/inf; such frames are redone in fp32") == 1
    backend.run(x)
    assert backend.describe()["bad_frames"] == 2 and capsys.readouterr().err == ""   # warned once only
    report = Report(output="o.mp4", frames=3, expected_frames=3, seconds=1.0, corrupt_packets=0, corrupt_frames=0,
                    dropped_frames=0, copied_streams=[], skipped_streams=[], backend=backend.describe())
    assert "2 frame(s) came out NaN/inf (or black) in bf16 and were redone in fp32" in report.warnings()


def test_nan_in_fp32_is_counted_and_reported(weights, capsys):
    backend = open_backend("torch", BackendOptions(weights=str(weights), device="cpu", precision="fp32"))
    _poison(backend, 0)
    backend.run(np.zeros((2, 32, 32, 3), np.uint8))
    facts = backend.describe()
    assert (facts["bad_frames"], facts["bad_frame_fallback"], facts["nonfinite_frames"]) == (0, None, 1)
    assert "NaN/inf output in fp32" in capsys.readouterr().err


def test_without_pyav_only_the_video_commands_refuse(tmp_path):
    """PyAV is imported on first use: train/eval/info work without it; deblur and bench say why in one line."""
    blocker = ("import sys\n"
               "class NoAV:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'av' or name.startswith('av.'):\n"
               "            raise ImportError(\"No module named 'av'\", name='av')\n"
               "sys.meta_path.insert(0, NoAV())\n"
               "from vdeblur.cli import main\n"
               "sys.exit(main(sys.argv[1:]))\n")
    def vdeblur(*argv):
        return subprocess.run([sys.executable, "-c", blocker, *argv], capture_output=True, text=True, timeout=120)

    assert vdeblur("train", "--help").returncode == 0
    (tmp_path / "in.mp4").write_bytes(b"not read")
    for argv in (["deblur", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4")], ["bench", "--size", "32x32"]):
        proc = vdeblur(*argv)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
            "vdeblur: error: reading and writing video needs PyAV (No module named 'av'): pip install 'av<19'"], proc.stderr


def _cli_torch(weights):
    return ["--weights", str(weights), "--backend", "torch", "--device", "cpu", "--precision", "fp32", "-q"]


def test_several_inputs_load_the_model_once_and_go_on_past_a_bad_file(clip, weights, tmp_path, capsys, monkeypatch):
    import shutil

    from vdeblur import pipeline

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "c.mkv"):
        shutil.copy(clip, src / name)
    (src / "b.mp4").write_text("not a video")
    opened = []
    real_open = pipeline.open_backend
    monkeypatch.setattr(pipeline, "open_backend", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    out = tmp_path / "out"   # made by the command
    inputs = [str(src / n) for n in ("a.mp4", "b.mp4", "c.mkv")]
    assert main(["deblur", *inputs, "-o", str(out), *_cli_torch(weights)]) == 1
    err = capsys.readouterr().err
    assert len(opened) == 1 and files(out) == ["a.mp4", "c.mkv"]
    assert video_pts(out / "a.mp4") == video_pts(clip) and len(video_pts(out / "c.mkv")) == len(video_pts(clip))
    assert f"{src / 'b.mp4'}:" in err and "2 of 3 file(s) written, 1 failed" in err

    # Again: existing outputs are refused up front, or skipped when asked (an interrupted batch goes on).
    assert main(["deblur", *inputs, "-o", str(out), *_cli_torch(weights)]) == 1
    assert f"{out / 'a.mp4'}: already exists; pass --overwrite" in capsys.readouterr().err
    (out / "c.mkv").unlink()
    assert main(["deblur", inputs[0], inputs[2], "-o", str(out), "--skip-existing", *_cli_torch(weights)]) == 0
    err = capsys.readouterr().err
    assert f"{out / 'a.mp4'} exists, skipped" in err and "file(s) written" not in err   # -q: no summary
    assert files(out) == ["a.mp4", "c.mkv"]
    (out / "c.mkv").unlink()
    loud = [a for a in _cli_torch(weights) if a != "-q"]
    assert main(["deblur", inputs[0], inputs[2], "-o", str(out), "--skip-existing", *loud]) == 0
    assert "1 of 2 file(s) written, 1 skipped (existed)" in capsys.readouterr().err


def test_output_plans(tmp_path, clip, weights, capsys):
    from vdeblur.pipeline import plan_outputs

    (tmp_path / "d").mkdir()
    assert plan_outputs(["x/in.mp4"], str(tmp_path / "o.mkv")) == [(Path("x/in.mp4"), tmp_path / "o.mkv")]
    assert plan_outputs(["x/in.mp4"], str(tmp_path / "d")) == [(Path("x/in.mp4"), tmp_path / "d" / "in.mp4")]
    assert plan_outputs(["in.mp4"], str(tmp_path / "new") + "/") == [(Path("in.mp4"), tmp_path / "new" / "in.mp4")]
    with pytest.raises(VdeblurError, match="would both be written as"):
        plan_outputs(["a/x.mp4", "b/x.mp4"], str(tmp_path / "d"))
    with pytest.raises(VdeblurError, match="output directory does not exist"):
        plan_outputs(["a.mp4", "b.mp4"], str(tmp_path / "no" / "such"))
    (tmp_path / "f.mp4").write_text("")
    with pytest.raises(VdeblurError, match="not a directory"):
        plan_outputs(["a.mp4", "b.mp4"], str(tmp_path / "f.mp4"))
    # A file name for several inputs (a shell-expanded pattern): not made into a folder of that name.
    with pytest.raises(VdeblurError, match=r"multi.mp4: 2 inputs need a directory as OUTPUT, not a file name; give -o "):
        plan_outputs(["a.mp4", "b.mp4"], str(tmp_path / "multi.mp4"))
    assert not (tmp_path / "multi.mp4").exists()
    assert plan_outputs(["a.mp4", "b.mp4"], str(tmp_path / "v1.2")) == [
        (Path("a.mp4"), tmp_path / "v1.2" / "a.mp4"), (Path("b.mp4"), tmp_path / "v1.2" / "b.mp4")]
    # A collision is found before any folder is made.
    with pytest.raises(VdeblurError, match="would both be written as"):
        plan_outputs(["a/x.mp4", "b/x.mp4"], str(tmp_path / "coll"))
    assert not (tmp_path / "coll").exists()
    # One input into a directory: written there under its own name.
    assert main(["deblur", str(clip), "-o", str(tmp_path / "d"), *_cli_torch(weights)]) == 0
    assert files(tmp_path / "d") == [clip.name]
    assert main(["deblur", str(clip), "-o", str(tmp_path / "d"), "--skip-existing", "--overwrite"]) == 1
    assert "contradict" in capsys.readouterr().err


def test_a_refused_batch_leaves_no_output_folder(tmp_path, clip, capsys):
    """The folder for several outputs was made before the inputs and options were checked."""
    out = tmp_path / "made"
    assert main(["deblur", str(clip), str(tmp_path / "nothere.mp4"), "-o", str(out), "-q"]) == 1
    assert "nothere.mp4" in capsys.readouterr().err and not out.exists()
    assert main(["deblur", str(clip), str(clip), "-o", str(out), "--tile", "3", "-q"]) == 1
    assert not out.exists()
    single = tmp_path / "no" / "such" / "out.mp4"   # one file: its folder must exist already
    assert main(["deblur", str(clip), "-o", str(single), "-q"]) == 1
    assert "output directory does not exist" in capsys.readouterr().err and not (tmp_path / "no").exists()


class DeferredBackend(IdentityBackend):
    """submit() returns before the work is done (as torch on CUDA does); a result is computed when
    collected and must come back in submission order, frames matched to their timestamps."""

    batches_in_flight = 2

    def __init__(self):
        super().__init__()
        self.log = []

    def submit(self, frames):
        from vdeblur.backends.base import Pending

        n = len([e for e in self.log if e[0] == "submit"])
        self.log.append(("submit", n))
        backend = self

        class Later(Pending):
            def result(self):
                backend.log.append(("result", n))
                return 255 - frames   # a visible, exactly invertible change

        return Later(None)


def test_a_synchronous_backends_frame_goes_on_before_the_next_is_computed(clip, tmp_path):
    """With two batches in flight for every backend, a CPU's finished frame waited for the next
    one's model call before going to the writer: a 720p frame that takes 14 s was written after 28 s."""
    from vdeblur.backends.base import Pending

    log = []

    class Logged(IdentityBackend):
        def submit(self, frames):
            log.append("model")
            done = self.run(frames)

            class Handed(Pending):
                def result(self):
                    log.append("handed on")
                    return done

            return Handed(done)

    deblur_video(clip, tmp_path / "s.mkv", backend=Logged(), codec="ffv1", dedup=False)
    assert log[:4] == ["model", "handed on", "model", "handed on"], log


def test_pipeline_keeps_two_batches_in_flight_and_collects_in_order(clip, tmp_path):
    backend = DeferredBackend()
    deblur_video(clip, tmp_path / "d.mkv", backend=backend, batch=2, codec="ffv1")
    assert backend.log == [("submit", 0), ("submit", 1), ("result", 0), ("submit", 2), ("result", 1), ("result", 2)]
    ref = IdentityBackend()
    deblur_video(clip, tmp_path / "i.mkv", backend=ref, batch=2, codec="ffv1")
    with av.open(str(tmp_path / "d.mkv")) as a, av.open(str(tmp_path / "i.mkv")) as b:
        pairs = list(zip(a.decode(video=0), b.decode(video=0)))
        assert len(pairs) == 6 and [fa.pts for fa, _ in pairs] == [fb.pts for _, fb in pairs]
        inverted = [fa.to_ndarray(format="rgb24").astype(int) for fa, _ in pairs]
        plain = [255 - fb.to_ndarray(format="rgb24").astype(int) for _, fb in pairs]
    for i in range(6):   # each frame is the inverse of its own input (up to YUV rounding), not a neighbour's
        errors = [np.abs(inverted[i] - plain[j]).mean() for j in range(6)]
        assert errors[i] < 4 and int(np.argmin(errors)) == i, errors


def test_a_directory_or_an_unexpanded_pattern_as_input(tmp_path):
    from vdeblur.pipeline import expand_inputs, plan_outputs

    clips = tmp_path / "clips"
    (clips / "sub").mkdir(parents=True)
    for name in ("b.MOV", "a.mp4", "notes.txt", ".a.vdeblur-1.partial.mp4", "sub/c.mp4"):
        (clips / name).write_bytes(b"")
    assert expand_inputs([str(clips)]) == [str(clips / "a.mp4"), str(clips / "b.MOV")]
    assert expand_inputs([str(clips / "*.mp4")]) == [str(clips / "a.mp4")]   # as Windows passes it
    (tmp_path / "empty").mkdir()
    with pytest.raises(VdeblurError, match=r"empty: no video files in it \(looked for .mp4, .mov"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(VdeblurError, match="matches no file"):
        expand_inputs([str(clips / "*.mkv")])
    # One file in a directory given as INPUT still goes to OUTPUT/<its name>.
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x.mp4").write_bytes(b"")
    assert plan_outputs(expand_inputs([str(tmp_path / "one")]), str(tmp_path / "out"), to_directory=True) == [
        (tmp_path / "one" / "x.mp4", tmp_path / "out" / "x.mp4")]


def test_recursive_input_mirrors_its_subdirectories_and_passes_over_the_output(tmp_path):
    from vdeblur.pipeline import expand_inputs, make_folders, plan_outputs, remove_folders

    card = tmp_path / "DCIM"
    for name in ("100GOPRO/GX01.MP4", "100GOPRO/GX02.MP4", "101GOPRO/GX01.MP4", "top.mov", ".hidden/x.mp4",
                 "deblurred/old.mp4", "101GOPRO/readme.txt"):
        (card / name).parent.mkdir(parents=True, exist_ok=True)
        (card / name).write_bytes(b"")
    out = card / "deblurred"   # inside the input: its videos are outputs, not inputs
    found = expand_inputs([str(card)], recursive=True, skip=str(out))
    assert found == [str(card / n) for n in ("top.mov", "100GOPRO/GX01.MP4", "100GOPRO/GX02.MP4", "101GOPRO/GX01.MP4")]
    assert expand_inputs([str(card)], skip=str(out)) == [str(card / "top.mov")]
    pairs = plan_outputs(found, str(out), to_directory=True, folders=[str(card)])
    assert [(str(a.relative_to(card)), str(b.relative_to(out))) for a, b in pairs] == [
        ("top.mov", "top.mov"), ("100GOPRO/GX01.MP4", "100GOPRO/GX01.MP4"),
        ("100GOPRO/GX02.MP4", "100GOPRO/GX02.MP4"), ("101GOPRO/GX01.MP4", "101GOPRO/GX01.MP4")]
    assert not (out / "100GOPRO").exists()   # planned, made only when the run starts
    made = make_folders(pairs, out)
    assert made == [out / "100GOPRO", out / "101GOPRO"] and (out / "101GOPRO").is_dir()
    remove_folders(made)
    assert not (out / "100GOPRO").exists() and (out / "old.mp4").parent.is_dir()
    # Without the mirrored folders, the two GX01.MP4 would collide.
    with pytest.raises(VdeblurError, match="would both be written as"):
        plan_outputs(found, str(tmp_path / "flat"), to_directory=True)
    (tmp_path / "nothing" / "deeper").mkdir(parents=True)
    with pytest.raises(VdeblurError, match="no video files in it or its subdirectories"):
        expand_inputs([str(tmp_path / "nothing")], recursive=True)


def test_cli_recursive_run(clip, tmp_path, capsys, monkeypatch):
    import shutil

    import vdeblur.pipeline as pipeline
    from media import IdentityBackend

    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(clip, tmp_path / "in" / sub / "same.mp4")
    real = pipeline.deblur_video
    monkeypatch.setattr(pipeline, "deblur_video", lambda *a, **kw: real(*a, **{**kw, "backend": IdentityBackend()}))
    monkeypatch.setattr(pipeline, "open_backend", lambda *a, **kw: IdentityBackend())
    assert main(["deblur", str(tmp_path / "in"), "-o", str(tmp_path / "in" / "out"), "-r"]) == 0
    assert "2 of 2 file(s) written" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path / "in" / "out").as_posix() for p in (tmp_path / "in" / "out").rglob("*.mp4")) \
        == ["a/same.mp4", "b/same.mp4"]


def test_an_os_error_anywhere_in_a_run_is_one_line(clip, tmp_path, capsys, monkeypatch):
    import errno

    import vdeblur.pipeline as pipeline

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(pipeline, "deblur_video", full)
    assert main(["deblur", str(clip), "-o", str(tmp_path / "out.mp4"), "-q"]) == 1
    assert capsys.readouterr().err == f"vdeblur: error: {tmp_path / 'x'}: No space left on device\n"


def test_json_prints_a_line_per_input_with_its_report_error_or_skip(clip, weights, tmp_path, capsys):
    import json
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(clip, src / "a.mp4")
    (src / "b.mp4").write_text("not a video")
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.mp4").write_text("done before")
    shutil.copy(clip, src / "c.mp4")
    inputs = [str(src / n) for n in ("a.mp4", "b.mp4", "c.mp4")]
    assert main(["deblur", *inputs, "-o", str(out), "--skip-existing", "--json", *_cli_torch(weights)]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_input = {Path(line["input"]).name: line for line in lines}
    assert len(lines) == 3 and set(by_input) == {"a.mp4", "b.mp4", "c.mp4"}
    report = by_input["a.mp4"]
    assert report["output"] == str(out / "a.mp4") and report["frames"] == 6 and report["fps"] > 0
    assert report["backend"]["backend"] == "torch" and report["warnings"] == []
    assert report["copied_streams"] == ["#1 audio aac"] and report["verified"][0] == "6 frames at the input's timestamps"
    assert "b.mp4" in by_input["b.mp4"]["error"] and "frames" not in by_input["b.mp4"]
    assert report["notes"] == [] and by_input["b.mp4"]["notes"] == []
    assert by_input["c.mp4"] == {"input": inputs[2], "skipped": "the output exists", "output": str(out / "c.mp4")}
    assert main(["deblur", str(clip), "-o", "-", "--json"]) == 1
    assert "--json prints on standard output, which -o - fills with video" in capsys.readouterr().err


def test_json_carries_the_lines_said_before_the_first_frame(weights, tmp_path, capsys):
    """What the output cannot keep is said before the first frame; a script reads it in the report."""
    import json

    from vdeblur.video import pix_fmt_loss

    src = tmp_path / "in.mkv"
    make_video(src, frames=2, codec="ffv1", pix_fmt="yuv444p", options={"level": "3"})
    assert main(["deblur", str(src), "-o", str(tmp_path / "o.mkv"), "--codec", "mpeg2video", "--json",
                 *_cli_torch(weights)]) == 0
    (report,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert report["notes"] == [pix_fmt_loss("yuv444p", "yuv420p", "mpeg2video")]


def test_every_refused_input_of_a_batch_is_named_before_any_starts(clip, tmp_path, capsys):
    import json

    gone, also_gone, out = tmp_path / "gone.mp4", tmp_path / "also.mp4", tmp_path / "out"
    out.mkdir()
    assert main(["deblur", str(gone), str(clip), str(also_gone), "-o", str(out), "--json"]) == 1
    cap = capsys.readouterr()
    lines = [json.loads(line) for line in cap.out.splitlines()]
    assert [line.get("error") for line in lines] == [f"{gone}: no such file", f"{also_gone}: no such file"]
    assert cap.err == f"vdeblur: error: {gone}: no such file (and 1 more of the 3 inputs; none was started)\n"
    assert list(out.iterdir()) == []


def test_json_says_refusals_before_any_file_is_started(clip, tmp_path, capsys):
    import json

    def printed():
        cap = capsys.readouterr()
        return [json.loads(line) for line in cap.out.splitlines()], cap.err

    missing = tmp_path / "gone.mp4"
    assert main(["deblur", str(missing), "-o", str(tmp_path / "o.mp4"), "--json"]) == 1
    lines, err = printed()
    assert lines == [{"input": str(missing), "error": f"{missing}: no such file", "output": str(tmp_path / "o.mp4")}]
    assert err == f"vdeblur: error: {missing}: no such file\n"
    assert main(["deblur", str(clip), "-o", str(tmp_path / "o.mp4"), "--json", "--batch", "0"]) == 1
    assert printed()[0] == [{"input": None, "error": "--batch must be >= 1, got 0", "output": str(tmp_path / "o.mp4")}]
    assert main(["deblur", str(tmp_path / "f_%04d.png"), "-o", str(tmp_path / "o.mp4"), "--json-progress"]) == 1
    lines, _ = printed()
    assert len(lines) == 1 and "f_%04d.png" in lines[0]["error"]


def _clip_with_audio(path, *, video_frames: int, audio_seconds: float, video_start: float = 0.0):
    """A Matroska clip whose audio runs ``audio_seconds`` and whose video starts at ``video_start``."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt, vs.codec_context.time_base = 64, 48, "yuv420p", Fraction(1, 25)
        aus = c.add_stream("aac", rate=48000)
        offset = round(video_start * 25)
        for i in range(video_frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 5 * i % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = offset + i, Fraction(1, 25)
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
        samples = 1024
        for k in range(int(audio_seconds * 48000 / samples)):
            af = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 48000, k * samples
            c.mux(aus.encode(af))
        c.mux(aus.encode())


@pytest.mark.parametrize("audio_seconds, video_start", [(3.0, 0.0), (0.4, 1.5)])
def test_audio_longer_or_a_late_video_start_is_no_truncation(tmp_path, audio_seconds, video_start):
    """The container's length ends with its longest stream and starts with its first: neither an
    audio tail nor a video that starts late means the video was cut short."""
    src = tmp_path / "in.mkv"
    _clip_with_audio(src, video_frames=10, audio_seconds=audio_seconds, video_start=video_start)
    report = deblur_video(src, tmp_path / "out.mkv", backend=IdentityBackend(), resume=False)
    assert report.frames == 10
    assert not [w for w in report.warnings() if "truncated" in w], report.warnings()


def test_a_matroska_file_cut_short_still_warns(tmp_path):
    """Cut, a Matroska file loses its DURATION tags (written at the end) but keeps the length in its
    header: every stream ending early is a truncated file, and the summary says so."""
    whole, cut = tmp_path / "whole.mkv", tmp_path / "cut.mkv"
    _clip_with_audio(whole, video_frames=50, audio_seconds=2.0)
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    report = deblur_video(cut, tmp_path / "out.mkv", backend=IdentityBackend(), resume=False)
    assert 0 < report.frames < 45
    assert [w for w in report.warnings() if "truncated" in w], report.warnings()


def test_partials_of_killed_runs_are_removed_and_others_left(tmp_path):
    """kill -9 leaves the hidden temp file behind; the next run of that output removes it once its
    process is gone and it has not changed for a while, and leaves a live run's alone."""
    import os
    import time

    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=3)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    old_dead = tmp_path / f".out.vdeblur-{gone.pid}.partial.mp4"
    fresh_dead = tmp_path / f".out.vdeblur-{gone.pid}0.partial.mp4"
    live = tmp_path / f".out.vdeblur-{os.getppid()}.partial.mp4"
    other = tmp_path / f".other.vdeblur-{gone.pid}.partial.mp4"
    for path in (old_dead, fresh_dead, live, other):
        path.write_bytes(b"half a video")
    hour_ago = time.time() - 3600
    for path in (old_dead, live, other):
        os.utime(path, (hour_ago, hour_ago))
    notes = []
    deblur_video(src, dst, backend=IdentityBackend(), notify=notes.append)
    assert not old_dead.exists() and live.exists() and other.exists() and dst.exists()
    assert fresh_dead.exists()   # its process is gone, but it changed too recently to be sure
    assert any(str(old_dead) in n and "killed" in n for n in notes)


def test_stopped_while_reading_back_says_the_output_is_written(tmp_path, monkeypatch, capsys):
    import json

    import vdeblur.pipeline as pipeline

    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=3)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_read_back", stopped)
    monkeypatch.setattr(pipeline, "open_backend", lambda name, options: IdentityBackend())
    assert main(["deblur", str(src), "-o", str(dst), "--json", "--quiet"]) == 130
    captured = capsys.readouterr()
    assert dst.exists() and "out.mp4 is written, but was not read back" in captured.err
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert "not read back" in line["error"] and line["output"] == str(dst)


def test_an_error_names_the_output_not_its_hidden_temp_file(tmp_path, monkeypatch, capsys):
    import errno

    import vdeblur.pipeline as pipeline

    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=3)

    class DiskFull(IdentityBackend):
        def run(self, frames):
            raise OSError(errno.ENOSPC, "No space left on device", str(pipeline._temp_path(dst)))

    monkeypatch.setattr(pipeline, "open_backend", lambda name, options: DiskFull())
    assert main(["deblur", str(src), "-o", str(dst), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{dst}: No space left on device" in err and ".partial" not in err


def test_odd_output_paths_are_refused_up_front(tmp_path, capsys):
    """A loop of links was a RuntimeError traceback; a dangling link was found only after the whole
    run ("appeared while this run was writing it"); a file as the folder was "does not exist"."""
    src = tmp_path / "a.mp4"
    make_video(src, frames=2)
    (tmp_path / "A.mp4").symlink_to(tmp_path / "B")
    (tmp_path / "B").symlink_to(tmp_path / "A.mp4")
    (tmp_path / "dangle.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (tmp_path / "afile").write_bytes(b"")
    for out, said in (("A.mp4", "a loop of symbolic links"),
                      ("dangle.mp4", f"already exists (a symbolic link to {tmp_path / 'nowhere.mp4'}, which does not)"),
                      ("afile/x.mp4", "afile: not a directory")):
        assert main(["deblur", str(src), "-o", str(tmp_path / out), "-q"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, err
    assert not (tmp_path / "nowhere.mp4").exists()


def test_a_long_but_legal_output_name_is_written(tmp_path):
    """A 250-byte name failed with "File name too long" on its hidden temp file and resume folder."""
    src = tmp_path / "a.mp4"
    make_video(src, frames=2)
    out = tmp_path / ("x" * 246 + ".mp4")
    assert deblur_video(src, out, backend=IdentityBackend()).frames == 2 and out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.mp4", out.name])
    onnx = tmp_path / ("y" * 245 + ".onnx")   # atomic_write's temp name too
    from vdeblur.fileio import atomic_write

    atomic_write(onnx, b"data")
    assert onnx.read_bytes() == b"data"


def test_a_named_pipe_as_input_is_refused_with_the_way_that_works(tmp_path, capsys):
    """FFmpeg opened a FIFO twice and waited forever; a signal then made it "not a readable video file"."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (["deblur", str(fifo), "-o", str(tmp_path / "o.mp4")], ["bench", str(fifo), "--stages", "decode"]):
        assert main(args) == 1
        assert capsys.readouterr().err == (f"vdeblur: error: {fifo}: not a regular file (a named pipe or a device); "
                                           f"a stream goes in as standard input: vdeblur deblur - -o OUT < {fifo}\n")
