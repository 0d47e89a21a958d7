"""The scripts the GPU session runs (benchmarks/), checked on the CPU: the markdown tables from real
bench JSON, the CUDA-vs-CPU check in its CPU dry-run form, and run_gpu.sh's arguments and syntax."""

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from vdeblur.cli import build_parser, main
from vdeblur.network import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4)


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_bench(monkeypatch):
    from vdeblur import bench

    monkeypatch.setattr(bench, "ModelConfig", lambda: TINY)
    monkeypatch.setattr(bench, "weights_source", lambda weights, backend: (None, "random initialisation (test)"))
    probe = bench.PeakProbe
    monkeypatch.setattr(bench, "PeakProbe", lambda device, precision: probe(device, precision, n=256, seconds=0.01))


def test_table_from_bench_json(tmp_path, capsys, tiny_bench, one_thread):
    argv = ["bench", "--json", "--size", "64x64", "--frames", "4", "--precision", "fp32", "--repeats", "1",
            "--warmup", "1", "--threads", "1"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    (tmp_path / "eager.json").write_text(json.dumps(r))
    (tmp_path / "eager.cmd").write_text("vdeblur " + " ".join(argv))
    (tmp_path / "broken.json").write_text("{")
    table = _script("bench_table")
    assert table.main([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "skipping" in err and "broken.json" in err
    model = r["sizes"][0]["stages"]["model"]
    rows = [line for line in out.splitlines() if line.startswith("| eager | 64x64 |")]
    assert len(rows) == 1 + 4   # the model row, then decode / convert / encode / the pipeline without the model
    fp32 = rows[0]
    assert f"| {model['fp32']['ms_per_frame']:.2f} | {model['fp32']['fps']:.2f} |" in fp32
    e2e = r["sizes"][0]["stages"]["end_to_end"]
    assert f"{e2e['fps']:.2f} (" in fp32 and "| fp32 | 1 | eager |" in fp32
    assert f"steady {e2e['steady_fps']:.2f}" in fp32
    assert f"| eager | 64x64 | pipeline | {r['sizes'][0]['stages']['pipeline']['ms_per_frame']:.2f} |" in out
    assert f"| eager | 64x64 | encode | {r['sizes'][0]['stages']['encode']['ms_per_frame']:.2f} |" in out
    assert "- torch: " in out and "fp32 peak measured on the spot" in out
    assert "vdeblur bench --json --size 64x64" in out and out.count("```") == 2


def test_options_column_names_the_switches():
    table = _script("bench_table")
    assert table.options({"compile": True, "compile_mode": "max-autotune", "fused_attention": True,
                          "cuda_graphs": False, "tile": 0}, {}) == "compile max-autotune, fused attention"
    assert table.options({"compile": False, "cuda_graphs": True, "tile": 512}, {}) == "CUDA graphs, 512px tiles"
    assert table.options({"compile": False}, {"backend": "torch"}) == "eager"


def test_cuda_vs_cpu_dry_run_reports_each_variant(capsys, one_thread):
    check = _script("cuda_vs_cpu")
    rc = check.main(["--device", "cpu", "--variants", "fp32,fp32+graphs", "--size", "32x32", "--frames", "3",
                     "--batch", "2", "--repeat", "2"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 3 and r["ok"] is False             # the graphs variant cannot run on the CPU
    fp32 = r["variants"]["fp32"]
    assert fp32["psnr_db"] == float("inf") and fp32["max_abs_diff"] == 0 and fp32["passes_agree"]
    assert r["variants"]["fp32+graphs"]["error"].startswith("VdeblurError: --cuda-graphs needs --device cuda")
    table = _script("bench_table")
    assert "| fp32+graphs | failed: VdeblurError" in table.render([("check", r, None)])
    with pytest.raises(SystemExit, match="bad variant"):
        check.parse_variant("fp16+turbo")


def _run_gpu_steps():
    """Every `vdeblur ...` argument list run_gpu.sh would run, from its own dry-run form of the commands."""
    text = (ROOT / "benchmarks" / "run_gpu.sh").read_text()
    return [line.split()[1:] for line in text.splitlines() if line.strip().startswith("step ")]


def test_run_gpu_sh_parses_and_its_bench_arguments_are_valid():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "run_gpu.sh")]).returncode == 0
    usage = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_gpu.sh"), "nope"], capture_output=True, text=True)
    assert usage.returncode == 2 and "unknown argument 'nope'" in usage.stderr
    parser = build_parser()
    dry = {'"${BENCH[@]}"': ["bench", "--json", "--device", "cpu", "--size", "64x64", "--frames", "3"],
           '"$FP16"': ["fp32"], '"$BOTH"': ["fp32"]}
    benches = [s for s in _run_gpu_steps() if s[2] in ("bench", "heavy-bench")]
    assert len(benches) >= 12
    for name, _, _, *args in benches:
        argv = [a for token in args for a in dry.get(token, [token])]
        parser.parse_args(argv)   # argparse exits on an unknown flag or value
