"""Resumable runs: an interrupted `deblur` goes on from its kept segments, and the file it writes
holds the same frames, timestamps and streams as a run in one go."""

import json
from pathlib import Path

import av
import numpy as np
import pytest

from media import IdentityBackend, make_video, packets, video_pts
from vdeblur import VdeblurError
from vdeblur.pipeline import deblur_video
from vdeblur.resume import kept_frames, state_dir

SMALL = dict(segment_frames=3, segment_seconds=0)   # a segment every 3 frames


class Counting(IdentityBackend):
    """Identity that counts frames, and raises ``exc`` when asked for frame ``fail_at`` (0-based)."""

    def __init__(self, fail_at=None, exc=KeyboardInterrupt):
        super().__init__()
        self.fail_at, self.exc, self.frames = fail_at, exc, 0

    def run(self, frames):
        if self.fail_at is not None and self.frames + len(frames) > self.fail_at:
            raise self.exc()
        self.frames += len(frames)
        return super().run(frames)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    spec = {
        "vfr.mp4": dict(vfr=True, audio=True, subtitles=True, frames=20, bt709=True, metadata={"title": "kept"}),
        "long.mkv": dict(frames=25, audio=True, subtitles=True, chapters=[(0, 0.6, "one"), (0.6, 1.0, "two")],
                         attachment=("font.ttf", "font/ttf", b"\x00\x01font")),
    }
    return {name: (d / name, make_video(d / name, **kw)) for name, kw in spec.items()}


def decoded(path) -> list[tuple[int, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def interrupted_then_resumed(src, out, fail_at, **kw):
    first = Counting(fail_at)
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=first, **SMALL, **kw)
    assert not out.exists()
    kept = kept_frames(out)
    notes = []
    second = Counting()
    report = deblur_video(src, out, backend=second, notify=notes.append, **SMALL, **kw)
    return first, second, kept, notes, report


def test_lossless_resumed_output_equals_one_pass_output(clips, tmp_path):
    src, pts = clips["long.mkv"]
    first, second, kept, notes, report = interrupted_then_resumed(src, tmp_path / "out.mkv", 14, codec="ffv1")
    assert kept == 12 and notes == [f"resuming after frame 12 (kept in {state_dir(tmp_path / 'out.mkv')})"]
    assert second.frames == 25 - 12   # the kept frames were not computed again
    assert report.frames == 25 and report.resumed_frames == 12
    deblur_video(src, tmp_path / "whole.mkv", backend=IdentityBackend(), codec="ffv1", resume=False)
    a, b = decoded(tmp_path / "out.mkv"), decoded(tmp_path / "whole.mkv")
    assert [p for p, _ in a] == [p for p, _ in b] == video_pts(src)
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b))
    for kind in ("audio", "subtitle"):
        assert packets(tmp_path / "out.mkv", kind) == packets(src, kind)
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["one", "two"]
        assert [s.name for s in c.streams if s.type == "attachment"] == ["font.ttf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv", "whole.mkv"]   # the kept segments are gone


def test_x264_segments_keep_vfr_timestamps_and_streams(clips, tmp_path):
    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    first, second, kept, notes, report = interrupted_then_resumed(src, out, 10, preset="medium")
    assert kept == 9 and second.frames == 11   # segments end when the next frame arrives
    assert video_pts(out) == pts   # B-frames and variable frame rate through restarted encoders
    for kind in ("audio", "subtitle"):
        assert packets(out, kind) == packets(src, kind)
    assert report.copied_streams == ["#1 audio aac", "#2 subtitle mov_text"]
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc) == (1, 1, 1, 1)
        assert c.metadata["title"] == "kept"
        keyframes = [p.pts for p in c.demux(video=0) if p.size and p.is_keyframe]
    assert len(keyframes) == 20 // 3 + 1   # one keyframe per segment, from each new encoder
    whole = tmp_path / "whole.mp4"
    deblur_video(src, whole, backend=IdentityBackend(), preset="medium", resume=False)
    source = decoded(src)
    segmented, one_pass = ([_psnr(x, y) for (_, x), (_, y) in zip(decoded(path), source)] for path in (out, whole))
    assert min(segmented) > min(one_pass) - 1.5 and np.mean(segmented) > np.mean(one_pass) - 0.5


def _psnr(x, y):
    mse = np.mean((x.astype(float) - y.astype(float)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def test_part_of_the_input_resumes_inside_the_part(clips, tmp_path):
    src, pts = clips["long.mkv"]
    out = tmp_path / "part.mkv"
    first, second, kept, notes, report = interrupted_then_resumed(src, out, 7, codec="ffv1", start=0.2, duration=0.6)
    whole = tmp_path / "whole.mkv"
    one = deblur_video(src, whole, backend=IdentityBackend(), codec="ffv1", start=0.2, duration=0.6, resume=False)
    assert kept == 6 and report.frames == one.frames == kept + second.frames
    assert video_pts(out) == video_pts(whole)
    assert packets(out, "audio") == packets(whole, "audio")


def test_other_settings_or_a_changed_input_start_over(clips, tmp_path):
    src, _ = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=Counting(10), **SMALL)
    notes, again = [], Counting()
    deblur_video(src, out, backend=again, crf=30, notify=notes.append, **SMALL)
    assert again.frames == 20 and "another input, model or encoding, starting over" in notes[0]

    copy = tmp_path / "copy.mp4"
    copy.write_bytes(src.read_bytes())
    out2 = tmp_path / "out2.mp4"
    with pytest.raises(KeyboardInterrupt):
        deblur_video(copy, out2, backend=Counting(10), **SMALL)
    make_video(copy, vfr=True, frames=20, audio=True)   # another video under the same name
    notes, again = [], Counting()
    deblur_video(copy, out2, backend=again, notify=notes.append, **SMALL)
    assert again.frames == 20 and "another input, model or encoding, starting over" in notes[0]


def test_damaged_segment_and_later_ones_are_redone(clips, tmp_path):
    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=Counting(16), **SMALL)
    kept = state_dir(out)
    manifest = json.loads((kept / "manifest.json").read_text())
    assert [s["frames"] for s in manifest["segments"]] == [3, 3, 3, 3, 3]
    with open(kept / manifest["segments"][2]["file"], "r+b") as f:
        f.seek(30)
        f.write(b"\xff\xff")
    notes, again = [], Counting()
    deblur_video(src, out, backend=again, notify=notes.append, **SMALL)
    assert notes == [f"resuming after frame 6 (kept in {kept})"] and again.frames == 14
    assert video_pts(out) == pts


def test_stopped_while_writing_the_file_only_writes_it(clips, tmp_path, monkeypatch):
    import vdeblur.resume as resume

    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    real_mux = resume.mux

    def stopped(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(resume, "mux", stopped)
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=IdentityBackend(), **SMALL)
    assert kept_frames(out) == 20 and not out.exists()
    monkeypatch.setattr(resume, "mux", real_mux)
    again = Counting()
    report = deblur_video(src, out, backend=again, **SMALL)
    assert again.frames == 0 and report.frames == 20 and video_pts(out) == pts
    assert report.copied_streams == ["#1 audio aac", "#2 subtitle mov_text"]


def test_no_resume_and_in_band_formats_keep_nothing(clips, tmp_path):
    src, _ = clips["vfr.mp4"]
    for out, kw in ((tmp_path / "a.mp4", dict(resume=False)), (tmp_path / "b.ts", {})):
        with pytest.raises(KeyboardInterrupt):
            deblur_video(src, out, backend=Counting(10), **SMALL, **kw)
        assert list(tmp_path.iterdir()) == []


def test_failure_before_a_segment_is_finished_leaves_nothing(clips, tmp_path):
    src, _ = clips["vfr.mp4"]
    with pytest.raises(VdeblurError):
        deblur_video(src, tmp_path / "out.mp4", backend=Counting(0, lambda: VdeblurError("backend broke")))
    assert list(tmp_path.iterdir()) == []


def test_unreadable_progress_starts_over_and_other_files_stay(clips, tmp_path):
    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    kept = state_dir(out)
    kept.mkdir()
    (kept / "manifest.json").write_text('{"format": 1, "segments": [{"file": "../../x"}]')   # cut short
    (kept / "mine.txt").write_text("not vdeblur's")
    notes = []
    deblur_video(src, out, backend=IdentityBackend(), notify=notes.append, **SMALL)
    assert notes == [f"{kept}: unreadable progress from an earlier run, starting over"]
    assert video_pts(out) == pts and sorted(p.name for p in kept.iterdir()) == ["mine.txt"]


def test_out_of_memory_then_tiles_goes_on_from_kept_segments(clips, tmp_path):
    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    with pytest.raises(VdeblurError, match="out of memory"):
        deblur_video(src, out, backend=Counting(10, lambda: RuntimeError("CUDA out of memory")), **SMALL)
    notes, again = [], Counting()
    deblur_video(src, out, backend=again, tile=32, tile_overlap=8, notify=notes.append, **SMALL)
    assert notes == [f"resuming after frame 9 (kept in {state_dir(out)})"] and video_pts(out) == pts


def test_elementary_stream_without_timestamps_resumes_by_count(tmp_path):
    src = tmp_path / "in.h264"   # no container: frame n is at n / rate
    make_video(src, frames=20)
    out = tmp_path / "out.mp4"
    first, second, kept, notes, report = interrupted_then_resumed(src, out, 10)
    whole = tmp_path / "whole.mp4"
    deblur_video(src, whole, backend=IdentityBackend(), resume=False)
    assert kept == 9 and second.frames == 11
    assert video_pts(out) == video_pts(whole) and len(video_pts(out)) == 20


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(clips, tmp_path):
    from vdeblur.resume import ResumeState

    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    first, _ = ResumeState.open(state_dir(out), {"a": 1})   # holds the lock, as a run in progress does
    with pytest.raises(VdeblurError, match="another vdeblur run is writing this output now"):
        deblur_video(src, out, backend=IdentityBackend(), **SMALL)
    first.release()
    deblur_video(src, out, backend=IdentityBackend(), **SMALL)
    assert video_pts(out) == pts and sorted(tmp_path.iterdir()) == [out]


def test_the_lock_is_let_go_before_its_file_is_deleted_where_open_files_cannot_be(clips, tmp_path, monkeypatch):
    """Windows refuses to delete an open file: release() closes the lock first there, and a finished
    run still leaves nothing beside its output."""
    import vdeblur.resume as resume

    monkeypatch.setattr(resume, "_OPEN_FILES_STAY", True)
    removed_while_open = []
    unlink = Path.unlink

    def windows_unlink(path, missing_ok=False):
        if path.name == resume.LOCK and any(state._lock_fd is not None for state in open_locks):
            removed_while_open.append(path)
        unlink(path, missing_ok=missing_ok)

    open_locks = []
    real_lock = resume.ResumeState._lock

    def track(self):
        real_lock(self)
        open_locks.append(self)

    monkeypatch.setattr(resume.ResumeState, "_lock", track)
    monkeypatch.setattr(Path, "unlink", windows_unlink)
    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    deblur_video(src, out, backend=IdentityBackend(), **SMALL)
    assert video_pts(out) == pts and sorted(tmp_path.iterdir()) == [out]
    assert removed_while_open == []


def test_a_full_disk_keeps_the_finished_segments_and_the_same_command_goes_on(clips, tmp_path, monkeypatch):
    """The README's promise: a long job is not lost to a full disk. The segment write's OSError was a
    traceback; now it is one line, and after space is freed the next run continues."""
    import errno

    import vdeblur.resume as resume

    class FillsUp:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):   # a buffered file flushes on close: that fails too, and once raised over the first error
            self.file.close()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

    opened = []
    real_open = resume.SegmentWriter._open

    def open_until_full(self, encoder):
        real_open(self, encoder)
        opened.append(self)
        if len(self.state.segments) == 2:   # two segments of 3 frames fit, the third does not
            self._file = FillsUp(self._file)

    monkeypatch.setattr(resume.SegmentWriter, "_open", open_until_full)
    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    with pytest.raises(VdeblurError, match="writing a segment failed \\(No space left on device\\)"):
        deblur_video(src, out, backend=IdentityBackend(), **SMALL)
    assert not out.exists() and kept_frames(out) == 6
    assert not list(state_dir(out).glob("*.partial"))   # the unfinished segment does not keep the disk full
    monkeypatch.setattr(resume.SegmentWriter, "_open", real_open)   # space freed
    notes = []
    report = deblur_video(src, out, backend=IdentityBackend(), notify=notes.append, **SMALL)
    assert report.resumed_frames == 6 and video_pts(out) == pts and notes[0].startswith("resuming after frame 6")


def test_a_one_pass_run_says_it_left_an_earlier_runs_progress_alone(clips, tmp_path):
    src, _ = clips["long.mkv"]
    out = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=Counting(fail_at=10), **SMALL)
    kept = kept_frames(out)
    assert kept > 0
    notes = []
    deblur_video(src, out, backend=IdentityBackend(), resume=False, notify=notes.append)
    assert notes == [f"{state_dir(out)} still keeps {kept} finished frames of an earlier run of this output, which "
                     f"this run did not use; delete it if that run is not to go on"]
    assert kept_frames(out) == kept   # not deleted


def test_an_input_replaced_during_the_run_is_not_muxed_with_the_kept_frames(tmp_path):
    """The final mux reopens the input by name for its audio and subtitles: a file put in its place
    mid-run must stop the run, not lend the output another file's sound."""
    src, other, out = tmp_path / "in.mp4", tmp_path / "other.mp4", tmp_path / "out.mp4"
    make_video(src, frames=12, audio=True)
    make_video(other, frames=12, audio=True, width=64, height=48, rate=30)

    class Replacing(Counting):
        def run(self, frames):
            if self.frames == 6:
                other.replace(src)
            return super().run(frames)

    with pytest.raises(VdeblurError, match="changed while it was being deblurred"):
        deblur_video(src, out, backend=Replacing(), **SMALL)
    assert not out.exists()


def stopped_then_edited(src, out, edit) -> None:
    """A run stopped after its first segments, then its manifest changed by ``edit``."""
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=Counting(10), **SMALL)
    manifest = state_dir(out) / "manifest.json"
    doc = json.loads(manifest.read_text())
    assert len(doc["segments"]) >= 2
    edit(doc)
    manifest.write_text(json.dumps(doc))


def test_progress_of_another_encoder_build_is_redone_once_and_the_run_finishes(clips, tmp_path):
    """Kept segments from another libx264 build (other headers) are dropped and the run starts over;
    the new encoder's headers were not recorded, so the final mux refused the new segments, and every
    rerun deblurred everything again only to fail the same way."""
    src, _ = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    stopped_then_edited(src, out, lambda doc: doc.update(extradata="ff" + doc["extradata"][2:]))   # another build's headers
    notes, again = [], Counting()
    report = deblur_video(src, out, backend=again, notify=notes.append, **SMALL)
    assert again.frames == 20 and report.frames == 20 and out.exists()
    assert any("another encoder version, starting over" in n for n in notes)
    assert not state_dir(out).exists()


@pytest.mark.parametrize("edit", [
    lambda doc: doc["segments"][0].update(frames="x"),          # was a TypeError traceback
    lambda doc: doc["segments"][0].update(frames=-100),         # was trusted: the report's count went wrong
    lambda doc: (doc["segments"].pop(), doc.update(complete=True)),   # "complete" with a part gone: cut short
])
def test_progress_with_numbers_no_run_wrote_is_redone(clips, tmp_path, edit):
    src, pts = clips["vfr.mp4"]
    out = tmp_path / "out.mp4"
    stopped_then_edited(src, out, edit)
    again = Counting()
    report = deblur_video(src, out, backend=again, **SMALL)
    assert report.frames == 20 and video_pts(out) == pts and report.warnings() == []
