"""TensorRT glue that needs no GPU: engine keys and sidecars, shape profiles, the one-line errors
without TensorRT, the frame guard, and the runtime's chunking and buffer flow against a fake
TensorRT/pycuda (the real ones run in the gpu-marked tests)."""

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from vdeblur import VdeblurError
from vdeblur.cli import main
from vdeblur.trt import cache
from vdeblur.trt.cache import EngineKey, ShapeProfile, parse_shape
from vdeblur.trt.runtime import EngineRunner, bad_frames, chunks

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _key(**changes):
    base = EngineKey(weights_sha256="a" * 64, onnx_sha256="b" * 64, precision="fp16",
                     profile=ShapeProfile.fixed(720, 1280), plugin=True, tensorrt_version="10.9.0.34",
                     gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0", kernel_sha256="c" * 64,
                     triton_version="3.5.0", builder_sha256="9" * 64, vdeblur_version="0.1.0")
    return dataclasses.replace(base, **changes)


def test_engine_key_changes_with_every_component():
    base = _key()
    variants = dict(weights_sha256="d" * 64, onnx_sha256="e" * 64, precision="bf16",
                    profile=ShapeProfile.fixed(1080, 1920), plugin=False, tensorrt_version="11.4.0.106",
                    gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9", kernel_sha256="f" * 64,
                    triton_version="3.9.0", builder_sha256="8" * 64, vdeblur_version="0.2.0")
    assert set(variants) == {f.name for f in dataclasses.fields(EngineKey)}
    seen = {base.digest}
    for field, value in variants.items():
        other = _key(**{field: value})
        assert other.digest not in seen, field
        assert other.filename() != base.filename()
        assert other.mismatches(base.to_dict()) == [field]
        seen.add(other.digest)
    assert _key().digest == base.digest  # deterministic
    assert _key(profile=ShapeProfile.fixed(720, 1280, batch=4)).digest != base.digest
    name = base.filename()
    assert name.startswith("vdeblur-fp16-720x1280-b1-nvidia-h100-80gb-hbm3-sm90-trt10.9.0.34-") and name.endswith(".engine")


def test_kernel_hash_covers_kernel_sources():
    assert len(cache.kernel_sha256()) == 64
    assert len(cache.builder_sha256()) == 64 and cache.builder_sha256() != cache.kernel_sha256()


def test_shape_profiles():
    assert parse_shape("720x1280") == (1, 720, 1280)
    assert parse_shape("4x720x1280") == (4, 720, 1280)
    assert parse_shape("720X1280", batch=2) == (2, 720, 1280)
    for bad in ("720", "axb", "0x10", "1x2x3x4"):
        with pytest.raises(VdeblurError, match="bad shape"):
            parse_shape(bad)
    p = ShapeProfile((1, 360, 640), (1, 720, 1280), (2, 1080, 1920))
    assert p.static_size is None and p.accepts(2, 720, 1000) and not p.accepts(3, 720, 1280)
    assert p.nhwc("max") == (2, 1080, 1920, 3) and p.label().startswith("dyn-")
    assert ShapeProfile.fixed(720, 1280, 2).static_size == (720, 1280)
    with pytest.raises(VdeblurError, match="min <= opt <= max"):
        ShapeProfile((1, 720, 1280), (1, 360, 640), (1, 1080, 1920))


def test_sidecar_roundtrip_and_staleness(tmp_path):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(VdeblurError, match="no sidecar"):
        cache.read_sidecar(engine)
    key = _key()
    cache.write_sidecar(engine, key, {"verify_psnr_db": 51.2})
    doc = cache.read_sidecar(engine)
    assert doc["digest"] == key.digest and doc["verify_psnr_db"] == 51.2 and not key.mismatches(doc["key"])
    here = dict(tensorrt_version="10.9.0.34", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    cache.check_runtime_match(engine, doc, **here, weights_sha256="a" * 64)
    for change, message in ((dict(tensorrt_version="11.4.0.106"), "TensorRT 10.9.0.34"),
                            (dict(gpu_name="NVIDIA A100"), "GPU NVIDIA H100"),
                            (dict(compute_capability="8.0"), "sm_9.0")):
        with pytest.raises(VdeblurError, match="stale engine.*" + message):
            cache.check_runtime_match(engine, doc, **{**here, **change})
    with pytest.raises(VdeblurError, match="other weights"):
        cache.check_runtime_match(engine, doc, **here, weights_sha256="0" * 64)
    cache.sidecar_path(engine).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(VdeblurError, match="not a vdeblur engine sidecar"):
        cache.read_sidecar(engine)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_without_tensorrt_compile_and_backend_fail_in_one_line(capsys, tmp_path):
    assert main(["compile", "--height", "64", "--width", "64"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'vdeblur[tensorrt]'" in err and "Traceback" not in err
    from vdeblur.backends.tensorrt_backend import TensorRTBackend

    with pytest.raises(VdeblurError, match="TensorRT is not usable here"):
        TensorRTBackend(engine=str(tmp_path / "x.engine"))
    from vdeblur.trt.plugin import ensure_registered

    with pytest.raises(VdeblurError, match="TensorRT is not usable here"):
        ensure_registered(90)


def test_compile_profile_arguments():
    import argparse

    from vdeblur.compile import profile_from_args, register

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    parse = sub.choices["compile"].parse_args
    assert profile_from_args(parse(["--height", "720", "--width", "1280", "--batch", "2"]), None) == ShapeProfile.fixed(720, 1280, 2)
    assert profile_from_args(parse([]), (480, 640)) == ShapeProfile.fixed(480, 640)
    dyn = profile_from_args(parse(["--min", "360x640", "--opt", "720x1280", "--max", "2x1080x1920"]), None)
    assert dyn.max == (2, 1080, 1920) and dyn.min == (1, 360, 640)
    batched = profile_from_args(parse(["--min", "360x640", "--opt", "720x1280", "--max", "1080x1920", "--batch", "4"]), None)
    assert batched.min == (1, 360, 640) and batched.opt == (4, 720, 1280) and batched.max == (4, 1080, 1920)
    for argv, message in ((["--min", "360x640"], "all of --min"), ([], "give --video"),
                          (["--height", "720", "--width", "1280", "--min", "1x1", "--opt", "1x1", "--max", "1x1"], "replace"),
                          (["--height", "720", "--width", "1280", "--batch", "0"], "--batch"),
                          (["--height", "0", "--width", "64"], "must be positive")):
        with pytest.raises(VdeblurError, match=message):
            profile_from_args(parse(argv), None)
    with pytest.raises(VdeblurError, match="--video gives the frame size; drop --width"):
        profile_from_args(parse(["--width", "1280"]), (480, 640))   # was built for 480x640 without a word


def test_plugin_launch_geometry_covers_every_pixel():
    from vdeblur.kernels import POOL_PROGRAMS
    from vdeblur.trt.plugin import launch_geometry

    def cdiv(a, b):
        return -(-a // b)

    assert launch_geometry("sa_pool", 2, 720 * 1280, 128, cdiv) == (POOL_PROGRAMS, 2)
    gx, gy = launch_geometry("sa_apply", 3, 45 * 80, 32, cdiv)
    assert gy == 3 and gx * 32 >= 45 * 80 > (gx - 1) * 32


def test_psnr_and_synthetic_frames():
    from vdeblur.compile import psnr, synthetic_frames

    a = synthetic_frames(2, 48, 80)
    assert a.shape == (2, 48, 80, 3) and a.dtype == np.uint8 and a.std() > 20
    assert psnr(a, a) == float("inf")
    b = a.copy()
    b[0, 0, 0, 0] ^= 1
    assert psnr(a, b) > 80
    assert abs(psnr(np.zeros((10,), np.uint8), np.full((10,), 255, np.uint8))) < 1e-9


def test_chunks_and_guard():
    assert chunks(5, 2) == [(0, 2), (2, 4), (4, 5)] and chunks(1, 4) == [(0, 1)]
    frames = np.full((4, 8, 8, 3), 100, np.uint8)
    out = frames.copy()
    out[1] = 0                      # black result for a non-black input
    frames[2] = out[2] = 0          # black input, black output: fine
    nonfinite = np.array([0, 0, 0, 3], np.float32)
    assert bad_frames(frames, out, nonfinite).tolist() == [1, 3]


# --- the runtime against a fake TensorRT + pycuda --------------------------------------------------

class _FakeCuda:
    class Event:
        def record(self, stream):
            stream.log.append("record")

        def synchronize(self):
            pass

    class Stream:
        log: list = []

        def __init__(self):
            self.handle = id(self)

        def wait_for_event(self, event):
            self.log.append("wait")

        def synchronize(self):
            pass

    class Context:
        pops = 0

        @classmethod
        def pop(cls):
            cls.pops += 1

    class _Dev:
        def __init__(self, nbytes):
            self.mem = np.zeros(nbytes, np.uint8)
            _FakeCuda.memory[id(self)] = self
            self.freed = False

        def __int__(self):
            return id(self)

        def free(self):
            self.freed = True

    memory: dict = {}

    @staticmethod
    def pagelocked_empty(n, dtype):
        return np.empty(n, dtype)

    @classmethod
    def mem_alloc(cls, nbytes):
        return cls._Dev(nbytes)

    @staticmethod
    def memcpy_htod_async(dev, host, stream):
        dev.mem[:host.nbytes] = host.view(np.uint8)

    @staticmethod
    def memcpy_dtoh_async(host, dev, stream):
        host.view(np.uint8)[:] = dev.mem[:host.nbytes]


class _FakeTrt:
    __version__ = "10.9.0.34"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class TensorIOMode:
        INPUT, OUTPUT = "in", "out"

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return None if plan == b"junk" else _FakeEngine()


class _FakeEngine:
    names = ["frames", "restored", "nonfinite"]
    num_io_tensors = 3

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "in" if name == "frames" else "out"

    def get_tensor_profile_shape(self, name, index):
        return [(1, 4, 6, 3), (2, 4, 6, 3), (2, 4, 6, 3)]

    def create_execution_context(self):
        return _FakeContext()


class _FakeContext:
    def __init__(self):
        self.addresses, self.shape, self.calls = {}, None, 0

    def set_input_shape(self, name, shape):
        self.shape = shape
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream_handle):
        assert set(self.addresses) == {"frames", "restored", "nonfinite"}
        mem = _FakeCuda.memory
        n = int(np.prod(self.shape))
        x = mem[self.addresses["frames"]].mem[:n]
        mem[self.addresses["restored"]].mem[:n] = 255 - x
        mem[self.addresses["nonfinite"]].mem[:4 * self.shape[0]] = np.zeros(self.shape[0], np.float32).view(np.uint8)
        self.calls += 1
        return True


@pytest.fixture
def fake_runtime(monkeypatch):
    import vdeblur.trt.runtime as rt

    monkeypatch.setattr(rt, "import_tensorrt", lambda: _FakeTrt)
    monkeypatch.setattr(rt, "import_pycuda", lambda: (_FakeCuda, type("Ctx", (), {"push": lambda self: None})()))
    return rt


def test_runner_chunks_frames_through_two_slots(fake_runtime):
    runner = EngineRunner(b"plan", "fake.engine")
    assert runner.max_batch == 2
    frames = np.random.RandomState(0).randint(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    out, nonfinite = runner.run(frames)
    assert np.array_equal(out, 255 - frames) and nonfinite.tolist() == [0] * 5
    assert runner.context.calls == 3 and runner.context.shape == (1, 4, 6, 3)
    used = {int(s.dev_in) for s in runner.slots}
    assert len(used) == 2  # both slots carried chunks
    with pytest.raises(VdeblurError, match="takes 4x6 frames, not 8x6"):
        runner.run(np.zeros((1, 8, 6, 3), np.uint8))
    slots = list(runner.slots)
    runner.close()
    assert all(s.dev_in is None for s in slots)


def test_runner_rejects_unloadable_plan(fake_runtime):
    with pytest.raises(VdeblurError, match="could not load this engine"):
        EngineRunner(b"junk", "bad.engine")


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="needs TensorRT (pip install 'vdeblur[tensorrt]')")
def test_compile_and_run_engine_on_gpu(tmp_path):
    """Build with the plugin, verify (>= 40 dB vs fp32 torch inside compile), run through the backend."""
    from vdeblur import ModelConfig, build_model, save_checkpoint
    from vdeblur.backends.tensorrt_backend import TensorRTBackend
    from vdeblur.compile import compile_engine, synthetic_frames

    weights = save_checkpoint(tmp_path / "w.safetensors", build_model(ModelConfig(widths=(8, 16, 32), blocks_per_group=1)))
    path, doc = compile_engine(str(weights), ShapeProfile.fixed(72, 120, 2), "fp16", engine_dir=tmp_path / "engines")
    assert doc["plugin_layers"] == 2 * 6 * 3  # two fused nodes per block, 6 blocks, 3 scales
    assert doc["verify_psnr_db"] == "inf" or doc["verify_psnr_db"] >= 40
    again, _ = compile_engine(str(weights), ShapeProfile.fixed(72, 120, 2), "fp16", engine_dir=tmp_path / "engines")
    assert again == path
    with TensorRTBackend(engine=str(path), weights=str(weights)) as backend:
        out = backend.run(synthetic_frames(3, 72, 120))
        assert out.shape == (3, 72, 120, 3) and backend.describe()["bad_frames"] == 0


def test_backend_guard_replaces_bad_frames_with_the_fallback(monkeypatch):
    import vdeblur.trt as trt_pkg
    from vdeblur.backends.tensorrt_backend import TensorRTBackend

    pytest.importorskip("triton")
    monkeypatch.setattr(trt_pkg, "import_tensorrt", lambda: _FakeTrt)
    monkeypatch.setattr(trt_pkg, "import_pycuda", lambda: (_FakeCuda, None))

    class Runner:
        def run(self, frames):
            out = 255 - frames
            out[1] = 0  # black result for a non-black frame
            return out, np.array([0, 0, 7], np.float32)  # and NaNs in frame 2

        def close(self):
            self.closed = True

    class Torch:
        def run(self, frames):
            return np.full_like(frames, 42)

        def close(self):
            pass

    backend = TensorRTBackend(weights=None)
    backend.runner = runner = Runner()   # an --engine whose checkpoint is unknown: nothing to redo with
    monkeypatch.setattr(backend, "_torch_backend", lambda: Torch())
    frames = np.full((3, 4, 6, 3), 100, np.uint8)
    out = backend.run(frames)
    assert (out[1] == 0).all() and backend.describe()["bad_frame_fallback"] is None
    backend.bad_frames = 0
    backend.fallback_weights = "built-from.safetensors"   # found by the sidecar's sha256
    out = backend.run(frames)
    assert (out[0] == 155).all() and (out[1:] == 42).all()
    assert backend.describe()["bad_frames"] == 2 and backend.describe()["bad_frame_fallback"] == "torch fp32"
    backend.fallback = "none"
    assert (backend.run(frames)[1] == 0).all() and backend.bad_frames == 4
    with pytest.raises(VdeblurError, match="expected uint8"):
        backend.run(frames.astype(np.float32))
    backend.close()
    assert runner.closed and backend.runner is None
    with pytest.raises(VdeblurError, match="unknown fallback"):
        TensorRTBackend(fallback="cpu")


@pytest.fixture
def fake_builder(monkeypatch):
    """TensorRT, pycuda, the GPU and the engine build faked for compile_engine; the builds it was asked
    for, as (profile, plugin, compute capability), in order."""
    import vdeblur.trt as trt_pkg
    import vdeblur.trt.build as build

    pytest.importorskip("triton")
    monkeypatch.setattr(trt_pkg, "import_tensorrt", lambda: _FakeTrt)
    monkeypatch.setattr(trt_pkg, "import_pycuda", lambda: (_FakeCuda, None))
    monkeypatch.setattr(build, "gpu_facts", lambda: ("NVIDIA H100 80GB HBM3", "9.0"))
    builds = []

    def fake_build(onnx_bytes, profile, timing_cache, *, plugin, capability=None, source=""):
        builds.append((profile, plugin, capability))
        return b"PLAN" + onnx_bytes[:16], {"plugin_layers": 36 if plugin else 0, "build_seconds": 1.0}

    monkeypatch.setattr(build, "build_engine", fake_build)
    return builds


def test_compile_engine_reuses_rebuilds_and_never_keeps_a_failed_engine(tmp_path, monkeypatch, capsys, fake_builder):
    """compile's bookkeeping with the TensorRT calls faked: build once, reuse by key, rebuild when
    the weights change, and leave nothing under the final name when verification fails."""
    import vdeblur.compile as comp
    from vdeblur import ModelConfig, build_model, save_checkpoint

    builds = fake_builder

    verdict = {"psnr": 52.0}

    checked = []

    def fake_verify(plan, weights, frames, source):
        checked.append(frames.shape[1:3])
        if verdict["psnr"] < comp.MIN_PSNR_DB:
            raise VdeblurError(f"{source}: engine output is {verdict['psnr']} dB from the fp32 torch model")
        return {"verify_psnr_db": verdict["psnr"], "verify_frames": len(frames)}

    monkeypatch.setattr(comp, "verify_engine", fake_verify)
    cfg = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4)
    w1 = save_checkpoint(tmp_path / "a.safetensors", build_model(cfg))
    w2 = save_checkpoint(tmp_path / "b.safetensors", build_model(cfg))
    engines = tmp_path / "engines"
    profile = ShapeProfile.fixed(48, 64)
    logs = []

    path, doc = comp.compile_engine(str(w1), profile, "fp16", engine_dir=engines, log=logs.append)
    assert path.is_file() and path.read_bytes().startswith(b"PLAN") and doc["verify_psnr_db"] == 52.0
    assert builds == [(profile, True, 90)] and cache.read_sidecar(path)["key"]["precision"] == "fp16"
    again, _ = comp.compile_engine(str(w1), profile, "fp16", engine_dir=engines, log=logs.append)
    assert again == path and len(builds) == 1 and "up to date" in logs[-1]
    capsys.readouterr()
    comp.compile_engine(str(w1), profile, "fp16", engine_dir=engines)   # as `deblur -o -` calls it
    said = capsys.readouterr()
    assert said.out == "" and "up to date" in said.err      # stdout may be the video
    other, _ = comp.compile_engine(str(w2), profile, "fp16", engine_dir=engines, log=logs.append)
    assert other != path and len(builds) == 2
    bf16, _ = comp.compile_engine(str(w1), profile, "bf16", engine_dir=engines, log=logs.append)
    assert bf16 not in (path, other) and len(builds) == 3

    verdict["psnr"] = 31.0
    with pytest.raises(VdeblurError, match="31.0 dB"):
        comp.compile_engine(str(w1), ShapeProfile.fixed(32, 32), "fp16", engine_dir=engines, log=logs.append)
    assert sorted(p.name for p in engines.glob("*.engine")) == sorted(p.name for p in (path, other, bf16))
    assert not list(engines.glob(".*partial"))
    verdict["psnr"] = 50.0
    damaged = path.read_bytes()
    path.write_bytes(damaged[:-3])          # truncated (a full disk, a copy cut short)
    again, _ = comp.compile_engine(str(w1), profile, "fp16", engine_dir=engines, log=logs.append)
    assert again == path and len(builds) == 5 and "building it again" in " ".join(logs[-2:])
    assert path.read_bytes() == damaged and cache.engine_mismatch(cache.read_sidecar(path), damaged) is None
    checked.clear()
    comp.compile_engine(str(w1), ShapeProfile((1, 32, 48), (1, 48, 64), (1, 64, 96)), "fp16", engine_dir=engines)
    assert checked == [(48, 64), (32, 48), (64, 96)]   # a dynamic engine, checked at its opt, min and max
    with pytest.raises(VdeblurError, match="smallest batch of an engine must be 1, not 2"):
        comp.compile_engine(str(w1), ShapeProfile((2, 48, 64), (2, 48, 64), (2, 48, 64)), "fp16", engine_dir=engines)
    target = tmp_path / "mine.engine"
    target.write_bytes(b"someone else's file")
    verdict["psnr"] = 50.0
    with pytest.raises(VdeblurError, match="--overwrite"):
        comp.compile_engine(str(w1), profile, "fp16", engine_dir=engines, output=target, log=logs.append)
    assert target.read_bytes() == b"someone else's file"
    comp.compile_engine(str(w1), profile, "fp16", engine_dir=engines, output=target, overwrite=True, log=logs.append)
    assert target.read_bytes().startswith(b"PLAN")


def test_an_engine_is_found_out_when_it_is_not_the_file_built_and_its_weights_by_sha(tmp_path, monkeypatch):
    from vdeblur.backends import tensorrt_backend as tb
    from vdeblur.checkpoint import file_sha256
    from vdeblur.weights import default_weights_path

    plan = b"PLAN-bytes"
    doc = {"key": {}, **cache.engine_facts(plan)}
    assert cache.engine_mismatch(doc, plan) is None
    assert "not the one built" in cache.engine_mismatch(doc, plan[:-1])
    assert "not the one built" in cache.engine_mismatch(doc, b"PLAN-bytez")
    assert "no checksum" in cache.engine_mismatch({"key": {}}, plan)
    assert tb._built_from({"key": {"weights_sha256": file_sha256(default_weights_path())}}) == str(default_weights_path())
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"not the shipped weights")
    assert tb._built_from({"key": {"weights_sha256": file_sha256(mine)}, "weights": str(mine)}) == str(mine)
    assert tb._built_from({"key": {"weights_sha256": "0" * 64}, "weights": str(mine)}) is None


def test_an_engine_knows_its_weights_from_any_folder_and_keeps_its_precision(tmp_path, monkeypatch, fake_runtime,
                                                                             fake_builder):
    """The sidecar named the weights as typed (relative): from another folder the fp32 fallback was
    lost. A checkpoint without both attentions has nothing for the plugin: built plain, not refused.
    An --engine's precision overrode an explicit --precision without a word."""
    import vdeblur.compile as comp
    from vdeblur import ModelConfig, build_model, save_checkpoint
    from vdeblur.backends.tensorrt_backend import TensorRTBackend

    monkeypatch.setattr(comp, "verify_engine", lambda plan, weights, frames, source: {"verify_frames": len(frames)})
    monkeypatch.chdir(tmp_path)
    plain = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, channel_attention=False)
    save_checkpoint(tmp_path / "plain.safetensors", build_model(plain))
    logs = []
    path, doc = comp.compile_engine("plain.safetensors", ShapeProfile.fixed(4, 6, 2), "fp16",
                                    engine_dir=tmp_path / "engines", log=logs.append)
    assert [plugin for _, plugin, _ in fake_builder] == [False] and doc["key"]["plugin"] is False and "plain layers" in logs[0]
    assert doc["weights"] == str(tmp_path / "plain.safetensors")
    monkeypatch.chdir(tmp_path / "engines")
    backend = TensorRTBackend(engine=str(path))
    assert backend.fallback_weights == str(tmp_path / "plain.safetensors")
    assert backend.describe()["weights"] == backend.fallback_weights and backend.describe()["precision"] == "fp16"
    assert backend.run(np.zeros((0, 4, 6, 3), np.uint8)).shape == (0, 4, 6, 3)
    out, nonfinite = backend.runner.run(np.zeros((0, 4, 6, 3), np.uint8))
    assert out.shape == (0, 4, 6, 3) and nonfinite.shape == (0,)
    backend.close()
    (tmp_path / "plain.safetensors").unlink()
    assert "file not found" in TensorRTBackend(engine=str(path)).describe()["weights"]
    with pytest.raises(VdeblurError, match="is built in fp16 and --precision asks for fp32"):
        TensorRTBackend(engine=str(path), precision="fp32")


def test_the_tensorrt_backend_says_how_to_run_on_another_gpu():
    from vdeblur.backends import BackendOptions
    from vdeblur.backends.tensorrt_backend import TensorRTBackend

    with pytest.raises(VdeblurError, match="use CUDA_VISIBLE_DEVICES=1 with --device cuda"):
        TensorRTBackend.from_options(BackendOptions(device="cuda:1"))
    with pytest.raises(VdeblurError, match="runs on the GPU; --device cpu"):
        TensorRTBackend.from_options(BackendOptions(device="cpu"))
