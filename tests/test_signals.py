"""SIGTERM and SIGHUP end a command like Ctrl-C: temp files removed, nothing under the final name, 128+N."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
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


def _deblur(clip, weights, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "vdeblur", "deblur", str(clip), "-o", str(out), "-q",
                             "--weights", str(weights), "--backend", "torch", "--device", "cpu",
                             "--precision", "fp32", "--preset", "ultrafast", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _signal_when(proc, ready, signum) -> str:
    """Send ``signum`` once ``ready()`` holds; the process's stderr."""
    try:
        deadline = time.monotonic() + 600   # generous: the test machine may be loaded
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never got there"
            time.sleep(0.05)
        proc.send_signal(signum)
        return proc.communicate(timeout=300)[1]
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_run_leaves_nothing_and_exits_128_plus_n(long_job, tmp_path, signum):
    clip, weights = long_job
    out = tmp_path / "out.mp4"
    proc = _deblur(clip, weights, out, "--no-resume")
    # Frames are being encoded once the hidden temp file has data in it.
    err = _signal_when(proc, lambda: any(p.stat().st_size for p in tmp_path.glob(".out.vdeblur-*.partial.mp4")), signum)
    assert proc.returncode == 128 + signum, err
    assert err == f"vdeblur: terminated by {signal.Signals(signum).name}; {out} was not written\n"
    assert list(tmp_path.iterdir()) == []


def test_terminated_run_goes_on_from_kept_segments(long_job, tmp_path):
    import av

    clip, weights = long_job
    out = tmp_path / "out.mp4"
    kept = tmp_path / ".out.mp4.vdeblur-resume"
    proc = _deblur(clip, weights, out, "--checkpoint-minutes", "0")   # a segment every 250 frames
    err = _signal_when(proc, lambda: (kept / "manifest.json").exists(), signal.SIGTERM)
    assert proc.returncode == 143, err
    assert err.startswith(f"vdeblur: terminated by SIGTERM; {out} was not written (") and "finished frames kept" in err
    assert list(tmp_path.iterdir()) == [kept]
    assert not list(kept.glob("*.partial"))

    proc = _deblur(clip, weights, out, "--checkpoint-minutes", "0")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert err.startswith("vdeblur: resuming after frame "), err
    assert sorted(tmp_path.iterdir()) == [out]

    whole = tmp_path / "whole.mp4"
    proc = _deblur(clip, weights, whole, "--no-resume")
    assert proc.wait(timeout=600) == 0

    def frames(path):
        with av.open(str(path)) as c:
            return [(f.pts, f.to_ndarray(format="rgb24").astype(float)) for f in c.decode(video=0)]

    a, b = frames(out), frames(whole)
    assert [pts for pts, _ in a] == [pts for pts, _ in b] and len(a) == 1200
    worst = min(10 * np.log10(255**2 / max(np.mean((x - y) ** 2), 1e-12)) for (_, x), (_, y) in zip(a, b))
    assert worst > 35, worst   # the same frames, encoded in segments vs in one go (x264 ultrafast)


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


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX's")
def test_atomic_write_gives_the_file_the_mode_a_new_file_gets(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "weights.safetensors", b"data")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"data" and path.stat().st_mode & 0o777 == 0o640   # 0666 less the umask, not 0600
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, where no file can be made")
def test_atomic_write_names_the_file_asked_for_when_it_cannot_start():
    with pytest.raises(OSError) as caught:
        atomic_write("/proc/vdeblur-test.onnx", b"data")
    assert caught.value.filename == "/proc/vdeblur-test.onnx"


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


def test_a_signal_while_the_threads_start_is_that_signal_not_a_traceback(tmp_path, monkeypatch):
    """SIGHUP landed inside Thread.start() once: the cleanup then joined a thread never started and
    raised "cannot join thread before it is started" over the signal."""
    from media import IdentityBackend
    from vdeblur.pipeline import deblur_video

    src = tmp_path / "in.mp4"
    make_video(src, frames=3)
    start = threading.Thread.start

    def signalled_start(thread):
        if thread.name == "vdeblur-decode":
            raise Terminated(signal.SIGHUP)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", signalled_start)
    with pytest.raises(Terminated):
        deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), resume=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_signal_in_a_deferred_block_is_handled_when_the_block_ends():
    """Publishing the output and deleting the kept progress must not stop half-way."""
    import os
    import signal

    from vdeblur.signals import Terminated, deferred, terminate_as_interrupt

    done = []
    with pytest.raises(Terminated):
        with terminate_as_interrupt():
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("both steps")
            done.append("not reached")
    assert done == ["both steps"]


def test_ctrl_c_while_the_command_starts_is_one_line(monkeypatch, capsys):
    """The first second of `vdeblur` is importing torch and PyAV: Ctrl-C there printed a traceback,
    because `import vdeblur` imported torch before the command could handle it."""
    run = subprocess.run([sys.executable, "-c", "import sys, vdeblur.cli; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"
    import vdeblur.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["deblur", "x.mp4", "-o", "y.mp4"]) == 130
    assert capsys.readouterr().err == "vdeblur: interrupted\n"


def test_a_full_disk_while_writing_names_the_file_asked_for(tmp_path):
    """The manifest of kept progress, a checkpoint: ENOSPC from a write names no file at all."""
    import errno

    from vdeblur.fileio import atomic_write, describe_os_error

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "manifest.json"
    with pytest.raises(OSError) as e:
        atomic_write(target, full)
    assert describe_os_error(e.value) == f"{target}: No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux's /proc to see the read blocking")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_standard_input_opens_is_that_signal_not_invalid_data(tmp_path, signum):
    """FFmpeg ran the handler inside its open of pipe:0 and dropped what it raised: the run went on
    until the pipe closed, then said "not a readable video file" and exited 1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "vdeblur", "deblur", "-", "-o", str(tmp_path / "out.mp4"), "-q",
                             "--device", "cpu"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wchan = Path(f"/proc/{proc.pid}/wchan")
    try:
        deadline = time.monotonic() + 300
        while "pipe" not in wchan.read_text():   # blocked reading standard input, in av.open
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signum)
        time.sleep(0.5)
        proc.stdin.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 128 + signum, err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert err.strip() == ("vdeblur: terminated by SIGTERM" if signum == signal.SIGTERM else "vdeblur: interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_batch_stops_at_a_signal_ffmpeg_dropped(tmp_path, monkeypatch, capsys):
    """A signal whose exception FFmpeg swallowed surfaces as the open's error: a batch took it for a
    bad file and went on to the next input."""
    import vdeblur.pipeline as pipeline

    for name in ("a.mp4", "b.mp4"):
        make_video(tmp_path / name, frames=2)
    started = []

    def opened_while_signalled(args, src, dst, backend, options):
        started.append(src.name)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)   # the handler runs here; its exception is dropped, as inside FFmpeg
        except Terminated:
            pass
        raise pipeline.VdeblurError(f"{src}: not a readable video file")

    monkeypatch.setattr(pipeline, "_deblur_one", opened_while_signalled)
    status = main(["deblur", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "-o", str(tmp_path / "out"),
                   "--backend", "torch", "--device", "cpu", "-q"])
    assert (status, started) == (143, ["a.mp4"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == "vdeblur: terminated by SIGTERM"


def test_a_signal_stops_a_run_whose_input_pipe_stalls(tmp_path):
    """The decoder thread, blocked reading a pipe that sends nothing more, was joined without end:
    SIGTERM did nothing until the pipe closed."""
    width, height = 64, 48
    frame = b"FRAME\n" + bytes(np.random.RandomState(0).randint(0, 255, width * height * 3 // 2, dtype=np.uint8))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = tmp_path / "out.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "vdeblur", "deblur", "-", "-o", str(out), "--threads", "1",
                             "--device", "cpu", "--json-progress"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        proc.stdin.write(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode() + frame * 3)
        proc.stdin.flush()
        assert b'"progress"' in proc.stdout.readline()   # frames came through; the reader now waits for more
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not stop a run waiting on its input pipe")
        assert status == 143
        assert proc.stderr.read().decode().strip().splitlines()[-1].startswith("vdeblur: terminated by SIGTERM")
        assert list(tmp_path.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
