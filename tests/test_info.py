import json
import subprocess
import sys

import vdeblur
from vdeblur.cli import main


def test_info_json_is_truthful(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == vdeblur.__version__
    assert info["model"]["parameters"] == 6_907_057
    assert info["model"]["mib_fp32"] == 26.35
    backends = {b["name"]: b for b in info["backends"]}
    assert backends["torch-cpu"]["usable"]
    try:
        import tensorrt  # noqa: F401
        have_trt = True
    except ImportError:
        have_trt = False
    assert backends["tensorrt"]["usable"] == have_trt
    if not have_trt:
        assert "vdeblur[tensorrt]" in backends["tensorrt"]["detail"]


def test_python_dash_m_runs_and_bad_usage_fails():
    out = subprocess.run([sys.executable, "-m", "vdeblur", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and vdeblur.__version__ in out.stdout
    bad = subprocess.run([sys.executable, "-m", "vdeblur", "no-such-command"], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_tensorrt_too_old_or_without_triton_is_said(monkeypatch):
    """TensorRT below 10.9 has no ahead-of-time plugins, so it cannot run the engine; without
    Triton it runs given engines but builds none."""
    import importlib.util
    import sys
    import types

    from vdeblur import hardware

    def status(version, triton):
        monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: (object() if triton else None) if name == "triton" else real(name, *a))
        return next(b for b in hardware.probe_backends() if b.name == "tensorrt")

    old = status("10.8.0.43", True)
    assert not old.usable and "too old" in old.detail
    bare = status("10.13.0.35", False)
    assert bare.usable and "building one needs triton" in bare.detail
    full = status("11.0.0.1", True)
    assert full.usable and "triton for building" in full.detail


def test_onnxruntime_without_onnx_says_it_runs_given_files_only(monkeypatch):
    """'onnxruntime yes' only looked at onnxruntime, but running the model without --onnx exports it
    first, which needs onnx."""
    from vdeblur import hardware

    real = hardware._import_version
    monkeypatch.setattr(hardware, "_import_version",
                        lambda module: (None, "`import onnx` failed") if module == "onnx" else real(module))
    status = {b.name: b for b in hardware.probe_backends()}["onnxruntime"]
    assert status.usable and "runs --onnx files only" in status.detail and "vdeblur[onnx]" in status.detail


def test_a_usage_mistake_is_one_line(capsys):
    """argparse printed the whole usage before its error, against the one-line rule."""
    import pytest

    for argv in (["deblur", "in.mp4"], ["nope"], ["bench", "--compile-mode", "bogus"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith("vdeblur: error: ") and err.count("\n") == 1, err


def test_a_usage_mistake_names_the_commands_help_and_gives_json_its_line(capsys):
    """An unknown option pointed at `vdeblur --help`, and --json printed nothing on stdout for it."""
    import json

    import pytest

    for argv, said in ((["deblur", "a.mp4", "-o", "b.mkv", "--bogus"], "unrecognized arguments: --bogus"),
                       (["deblur", "a.mp4", "-o", "b.mkv", "--json", "--batch", "abc"], "argument --batch: invalid int value: 'abc'")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        out, err = capsys.readouterr()
        assert stop.value.code == 2 and err == f"vdeblur: error: {said} (see `vdeblur deblur --help`)\n"
        assert out == ("" if "--json" not in argv else json.dumps({"input": None, "error": said, "output": None}) + "\n")


def test_a_device_name_is_said_as_given():
    import pytest

    from vdeblur.errors import VdeblurError
    from vdeblur.hardware import resolve_device

    with pytest.raises(VdeblurError, match=r"unknown device 'cuda:-1'"):   # was "--device cuda: no CUDA GPU"
        resolve_device("cuda:-1")


def test_a_negative_looking_value_is_a_value(capsys, tmp_path):
    """--region -8,0,32,32 got argparse's "expected one argument", not what is wrong with it."""
    assert main(["deblur", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "b.mp4"), "--region", "-8,0,32,32"]) == 1
    assert "--region '-8,0,32,32': the corner must not be negative" in capsys.readouterr().err
