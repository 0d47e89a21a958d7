"""Progress for callers: `deblur_video(progress=...)` and the CLI's `--json-progress` lines."""

import json
import subprocess
import sys

import pytest

from media import IdentityBackend, make_video
from test_resume import SMALL, Counting
from vdeblur import deblur_video
from vdeblur.cli import main
from vdeblur.pipeline import JsonProgress
from vdeblur.resume import kept_frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "in.mp4"
    make_video(path, frames=9, audio=True)
    return path


def test_callback_counts_every_frame_written(clip, tmp_path):
    seen = []
    report = deblur_video(clip, tmp_path / "o.mp4", backend=IdentityBackend(), progress=lambda *a: seen.append(a))
    assert report.frames == 9
    assert seen == [(n, 9) for n in range(1, 10)]


def test_a_resumed_run_counts_from_the_frames_kept(clip, tmp_path):
    out = tmp_path / "o.mkv"
    with pytest.raises(KeyboardInterrupt):
        deblur_video(clip, out, backend=Counting(fail_at=7), codec="ffv1", **SMALL)
    kept = kept_frames(out)
    assert 0 < kept < 9
    seen = []
    deblur_video(clip, out, backend=IdentityBackend(), codec="ffv1", progress=lambda *a: seen.append(a), **SMALL)
    assert seen == [(n, 9) for n in range(kept + 1, 10)]


def test_an_exception_in_the_callback_stops_the_run_and_leaves_no_output(clip, tmp_path):
    def cancel(done, total):
        if done == 4:
            raise KeyboardInterrupt   # what a front-end's cancel button may raise

    out = tmp_path / "o.mp4"
    with pytest.raises(KeyboardInterrupt):
        deblur_video(clip, out, backend=IdentityBackend(), progress=cancel, resume=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def lines(capsys):
    return [json.loads(line)["progress"] for line in capsys.readouterr().out.splitlines()]


def test_json_progress_throttles_and_counts_speed_from_the_first_frame(capsys):
    clock = Clock()
    progress = JsonProgress("in.mp4", "out.mp4", every=1.0, clock=clock)
    for done, at in ((1, 100.0), (2, 100.5), (3, 101.0), (4, 101.2), (5, 103.0), (6, 103.1)):
        clock.now = at
        progress(done, 6)
    out = lines(capsys)
    assert [p["frames"] for p in out] == [1, 3, 5, 6]   # the first, then one a second, and the last
    assert out[0] == {"frames": 1, "total": 6, "fraction": 0.1667, "fps": None, "eta_seconds": None}
    assert out[1]["fps"] == 2.0 and out[1]["eta_seconds"] == 1.5   # 2 frames in 1 s after the first
    assert out[3] == {"frames": 6, "total": 6, "fraction": 1.0, "fps": round(5 / 3.1, 4), "eta_seconds": 0.0}


def test_json_progress_without_a_length(capsys):
    clock = Clock()
    progress = JsonProgress("-", "out.mkv", clock=clock)
    progress(1, None)
    clock.now += 2
    progress(5, None)
    assert lines(capsys) == [{"frames": 1, "total": None, "fraction": None, "fps": None, "eta_seconds": None},
                             {"frames": 5, "total": None, "fraction": None, "fps": 2.0, "eta_seconds": None}]


def test_cli_json_progress_lines_then_the_report(clip, tmp_path, capsys, monkeypatch):
    import vdeblur.pipeline as pipeline

    real = pipeline.deblur_video
    monkeypatch.setattr(pipeline, "deblur_video", lambda *a, **kw: real(*a, **{**kw, "backend": IdentityBackend()}))
    out = tmp_path / "out.mp4"
    assert main(["deblur", str(clip), "-o", str(out), "-q", "--json-progress"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    *progress, report = printed
    assert progress and all(p["input"] == str(clip) and p["output"] == str(out) for p in progress)
    assert progress[0]["progress"]["frames"] == 1 and progress[-1]["progress"]["frames"] == 9
    assert progress[-1]["progress"]["fraction"] == 1.0
    assert report["frames"] == 9 and "progress" not in report


def test_from_a_pipe_the_last_object_is_the_last_frame(tmp_path):
    """MPEG-TS from a pipe has no frame count; the last object gives the total once it is known."""
    clip, out = tmp_path / "in.ts", tmp_path / "o.mkv"
    make_video(clip, frames=9)
    cat = subprocess.Popen(["cat", str(clip)], stdout=subprocess.PIPE)   # a real pipe: no seeking, no header count
    run = subprocess.run([sys.executable, "-m", "vdeblur", "deblur", "-", "-o", str(out), "--json-progress",
                          "--codec", "ffv1", "--threads", "1"], stdin=cat.stdout, capture_output=True, text=True)
    cat.stdout.close()
    assert cat.wait() == 0
    assert run.returncode == 0, run.stderr
    *progress, report = [json.loads(line) for line in run.stdout.splitlines()]
    assert progress[0]["progress"]["total"] is None and report["frames"] == 9
    assert progress[-1]["progress"] == {**progress[-1]["progress"], "frames": 9, "total": 9, "fraction": 1.0}


def test_a_reader_of_stderr_that_goes_away_neither_hangs_nor_stops_the_job(tmp_path):
    """`vdeblur deblur ... 2>&1 | head -c 300`: the progress bar's next write hit a closed pipe in the
    encode thread, which left tqdm's lock held, and the main thread waited on it for ever."""
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(clip, frames=40)
    run = subprocess.Popen([sys.executable, "-m", "vdeblur", "deblur", str(clip), "-o", str(out), "--threads", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert run.stdout.read(1)     # the bar has started; then the reader leaves
    run.stdout.close()
    try:
        rc = run.wait(timeout=120)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait()
        pytest.fail("vdeblur hung after its reader went away")
    assert rc == 0
    import av
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 40


def test_json_progress_read_by_head_n_1_lets_the_job_finish(tmp_path):
    """`--json-progress | head -n 1`: the reader takes one line and goes; the job ended with rc 1 and
    no word, its output unwritten."""
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(clip, frames=30)
    run = subprocess.Popen([sys.executable, "-m", "vdeblur", "deblur", str(clip), "-o", str(out), "--threads", "1",
                            "--json-progress"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert json.loads(run.stdout.readline())["progress"]["frames"] >= 1
    run.stdout.close()
    assert run.wait(timeout=120) == 0
    import av
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30
