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
