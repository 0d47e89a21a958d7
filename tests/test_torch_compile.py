"""torch.compile switches: modes, the persistent inductor cache, compile time in bench's JSON."""

import json
import os

import pytest
import torch

from vdeblur.backends import BackendOptions, torch_argv, torch_options
from vdeblur.backends import torch_compile as tc
from vdeblur.backends.torch_backend import TorchBackend
from vdeblur.cli import build_parser, main
from vdeblur.errors import VdeblurError
from vdeblur.network import ModelConfig, build_model

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """XDG_CACHE_HOME in tmp_path and no user choice of cache; both restored afterwards (the backend
    writes TORCHINDUCTOR_CACHE_DIR into os.environ, so it is set here first to be undone)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(tc.CACHE_ENV, os.path.abspath(default_cache_dir()))
    return tmp_path / "vdeblur" / "torchinductor"


def test_cache_dir_follows_xdg_and_home(tmp_path):
    assert tc.compile_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == (tmp_path / "vdeblur" / "torchinductor", "vdeblur")
    home = os.path.expanduser("~")
    assert tc.compile_cache_dir({}) == (tc.Path(home) / ".cache" / "vdeblur" / "torchinductor", "vdeblur")


def test_a_user_cache_dir_wins_but_torchs_own_default_does_not(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), tc.CACHE_ENV: str(tmp_path / "mine")}
    assert tc.compile_cache_dir(env) == (tmp_path / "mine", "user")
    # importing torch._dynamo writes inductor's default into the variable: that is not a choice
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    env[tc.CACHE_ENV] = os.path.abspath(default_cache_dir())
    assert tc.compile_cache_dir(env) == (tmp_path / "xdg" / "vdeblur" / "torchinductor", "vdeblur")


def test_use_compile_cache_creates_and_exports_it(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    path = tc.use_compile_cache(env)
    assert path.is_dir() and env[tc.CACHE_ENV] == str(path)
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(VdeblurError, match=f"set {tc.CACHE_ENV}"):
        tc.use_compile_cache({tc.CACHE_ENV: str(blocked / "sub")})


def test_inductor_reads_the_directory_we_set(fresh_cache):
    """The contract the cache relies on: inductor looks the variable up when it needs the directory."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    assert tc.use_compile_cache() == fresh_cache
    assert cache_dir() == str(fresh_cache)


def test_backend_compiles_with_the_mode_asked_for(fresh_cache, monkeypatch):
    modes = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, mode=None, **kw: modes.append(mode))
    b = TorchBackend(build_model(TINY), device="cpu", precision="fp32", compile_mode="max-autotune-no-cudagraphs")
    d = b.describe()
    assert modes == ["max-autotune-no-cudagraphs"] and d["compile"] and d["compile_mode"] == "max-autotune-no-cudagraphs"
    assert d["compile_cache"] == str(fresh_cache) and os.environ[tc.CACHE_ENV] == d["compile_cache"]
    TorchBackend(build_model(TINY), device="cpu", precision="fp32", compile=True)
    assert modes[-1] is None   # "default" is torch's own default: no mode argument
    assert TorchBackend(build_model(TINY), device="cpu", precision="fp32").describe()["compile_mode"] is None
    with pytest.raises(VdeblurError, match="unknown compile mode 'fast'"):
        TorchBackend(build_model(TINY), device="cpu", compile_mode="fast")


def test_cli_compile_mode_implies_compile_and_round_trips():
    parser = build_parser()
    args = parser.parse_args(["bench", "--compile-mode", "max-autotune"])
    opts = torch_options(args)
    assert opts == {"compile": True, "compile_mode": "max-autotune", "fused_attention": None, "cuda_graphs": None}
    assert BackendOptions(**opts).compile
    assert torch_argv(opts) == ["--compile-mode", "max-autotune"]
    args = parser.parse_args(["deblur", "in.mp4", "-o", "out.mp4", "--compile", "--fused-attention", "--cuda-graphs"])
    opts = torch_options(args)
    assert opts["compile"] and opts["compile_mode"] is None
    assert torch_argv(opts) == ["--compile", "--fused-attention", "--cuda-graphs"]
    args = parser.parse_args(["deblur", "in.mp4", "-o", "out.mp4", "--no-fused-attention", "--no-cuda-graphs"])
    opts = torch_options(args)
    assert opts["fused_attention"] is False and opts["cuda_graphs"] is False
    assert torch_argv(opts) == ["--no-fused-attention", "--no-cuda-graphs"]


def test_cuda_speedups_default_on_for_cuda_only(monkeypatch):
    """Unset switches: both on for CUDA (measured 1.42x eager on an H200), off on the CPU; what a
    user says wins, and a compile mode that captures graphs itself turns the graphs default off."""
    import importlib.util

    from vdeblur.backends.torch_backend import default_speedups

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    has_triton = importlib.util.find_spec("triton") is not None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert default_speedups(cpu, None, None, None) == (False, False)
    assert default_speedups(cuda, None, None, None) == (has_triton, True)
    assert default_speedups(cuda, "default", None, None) == (has_triton, True)
    assert default_speedups(cuda, "reduce-overhead", None, None) == (has_triton, False)
    assert default_speedups(cuda, None, False, False) == (False, False)
    assert default_speedups(cpu, None, True, True) == (True, True)   # then refused by check_speed_options
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))   # a V100
    assert default_speedups(cuda, None, None, None) == (False, True)
    assert default_speedups(cuda, None, True, None) == (True, True)
    # The CPU path with nothing asked for runs: unset does not mean "on" there.
    d = TorchBackend(build_model(TINY), device="cpu", precision="fp32").describe()
    assert d["fused_attention"] is False and d["cuda_graphs"] is False


def test_cli_rejects_an_unknown_mode(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--compile-mode", "fastest"])
    assert e.value.code == 2 and "invalid choice: 'fastest'" in capsys.readouterr().err


def test_bench_json_reports_compile_seconds_and_cache(capsys, fresh_cache, monkeypatch, one_thread):
    """bench's JSON says what compiling cost and where it is cached. Dynamo really traces the model,
    with its "eager" backend: inductor's code generation takes ~10 minutes on this loaded CPU (it is
    measured in BENCHMARKS.md, not here)."""
    from vdeblur import bench

    monkeypatch.setattr(bench, "ModelConfig", lambda: TINY)
    monkeypatch.setattr(bench, "weights_source", lambda weights, backend: (None, "random initialisation (test)"))
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, mode=None: compile_module(self, backend="eager"))
    assert main(["bench", "--json", "--size", "32x32", "--frames", "1", "--stages", "model", "--precision", "fp32",
                 "--repeats", "2", "--warmup", "1", "--threads", "1", "--compile"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["settings"]["compile"] and r["settings"]["compile_mode"] is None
    m = r["sizes"][0]["stages"]["model"]["fp32"]
    assert m["backend"]["compile_mode"] == "default"
    assert m["compile_s"] == pytest.approx(m["first_call_s"] - m["median_s"]) and m["compile_s"] > 0
    assert m["backend"]["compile_cache"] == str(fresh_cache) and fresh_cache.is_dir()
    assert "(compile " in bench.format_table(r)
