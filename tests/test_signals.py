"""SIGTERM and SIGHUP end a command like Ctrl-C: temp files removed, nothing under the final name, 128+N."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from media import make_video
from vdeblur import save_checkpoint
from vdeblur.cli import main
from vdeblur.fileio import atomic_write
from vdeblur.network import ModelConfig, build_model
from vdeblur.signals import Terminated, describe, exit_status, terminate_as_interrupt

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def long_job(tmp_path_factory):
    """A clip long enough (~10 s of tiny-model work here) to be signalled mid-run, and its weights."""
    d = tmp_path_factory.mktemp("long")
    make_video(d / "in.mp4", width=128, height=96, frames=1200, options={"preset": "ultrafast"})
    torch.manual_seed(0)
    return d / "in.mp4", save_checkpoint(d / "tiny.safetensors", build_model(TINY))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_run_leaves_nothing_and_exits_128_plus_n(long_job, tmp_path, signum):
    clip, weights = long_job
    out = tmp_path / "out.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "vdeblur", "deblur", str(clip), "-o", str(out), "-q",
                             "--weights", str(weights), "--backend", "torch", "--device", "cpu",
                             "--precision", "fp32", "--preset", "ultrafast"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 600   # generous: the test machine may be loaded
        # Frames are being encoded once the hidden temp file has data in it.
        while not any(p.stat().st_size for p in tmp_path.glob(".out.vdeblur-*.partial.mp4")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the temp file never appeared"
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert err == f"vdeblur: terminated by {signal.Signals(signum).name}; {out} was not written\n"
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_cleans_up_when_terminated_midway(tmp_path):
    target = tmp_path / "model.onnx"

    def slow_writer(f):
        f.write(b"half a model")
        f.flush()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)   # the handler interrupts this
        raise AssertionError("SIGTERM was not delivered")

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught, terminate_as_interrupt():
        atomic_write(target, slow_writer)
    assert exit_status(caught.value) == 143 and describe(caught.value) == "terminated by SIGTERM"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_handlers_are_restored_ignored_signals_stay_ignored(tmp_path, capsys):
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)   # as under nohup
    try:
        before = signal.getsignal(signal.SIGTERM)
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) != before
        assert signal.getsignal(signal.SIGTERM) == before
        # The CLI installs them for one command only, and gives them back on errors too.
        assert main(["deblur", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4"), "-q"]) == 1
        assert "no such file" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGTERM) == before and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old_hup)
    assert exit_status(KeyboardInterrupt()) == 130 and describe(KeyboardInterrupt()) == "interrupted"


def test_outside_the_main_thread_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def worker():
        with terminate_as_interrupt():
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [before]
