"""What is written from input and result: `deblur --strength` (a share of the model's change) and
`--compare` (the input and the result in one video, composed after the model)."""

import av
import numpy as np
import pytest

from media import IdentityBackend, make_video
from vdeblur import VdeblurError
from vdeblur.cli import main
from vdeblur.compare import blend, compose
from vdeblur.pipeline import deblur_video
from vdeblur.resume import state_dir


class Invert(IdentityBackend):
    def run(self, frames):
        return np.iinfo(frames.dtype).max - frames


class StopAtNine(Invert):
    """Ctrl-C once 9 frames are done: a run that leaves kept segments behind."""

    def run(self, frames):
        self.calls += len(frames)
        if self.calls > 9:
            raise KeyboardInterrupt
        return super().run(frames)


def rgb_frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("cmp") / "in.mkv"
    make_video(path, width=64, height=48, frames=4, codec="ffv1", pix_fmt="yuv444p")
    return path


def test_side_by_side_is_input_then_result_at_twice_the_width(clip, tmp_path):
    out = tmp_path / "side.mkv"
    report = deblur_video(clip, out, backend=Invert(), codec="ffv1", pix_fmt="yuv444p", compare="side")
    assert not report.verify_problems and "size, rotation, aspect ratio and colour tags" in report.verified
    for source, composed in zip(rgb_frames(clip), rgb_frames(out), strict=True):
        assert composed.shape == (48, 128, 3)
        assert np.abs(composed[:, :64] - source).max() <= 2
        assert np.abs(composed[:, 64:] - (255 - source)).max() <= 2


@pytest.mark.parametrize("resume", [True, False])
@pytest.mark.parametrize("rotation", [90, 180])
def test_a_rotated_phone_video_is_compared_as_shown(tmp_path, rotation, resume):
    """Composed in stored pixels with the rotation tag copied, a portrait video's halves were stacked,
    and an upside-down one showed result | input. The comparison is built upright and written untagged."""
    src, out = tmp_path / "phone.mkv", tmp_path / "side.mkv"
    make_video(src, width=64, height=48, frames=2, codec="ffv1", pix_fmt="yuv444p", rotation=rotation, options={"level": "3"})
    report = deblur_video(src, out, backend=Invert(), codec="ffv1", pix_fmt="yuv444p", compare="side", resume=resume)
    assert not report.verify_problems, report.verify_problems
    with av.open(str(src)) as c:
        shown = [np.rot90(f.to_ndarray(format="rgb24"), k=f.rotation // 90).astype(int) for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert {f.rotation for f in frames} == {0}
    for source, frame in zip(shown, frames, strict=True):
        composed = frame.to_ndarray(format="rgb24").astype(int)
        height, width = source.shape[:2]
        assert composed.shape == (height, 2 * width, 3)
        assert np.abs(composed[:, :width] - source).max() <= 2
        assert np.abs(composed[:, width:] - (255 - source)).max() <= 2


def test_split_keeps_the_size_with_a_divider(clip, tmp_path):
    out = tmp_path / "split.mp4"
    deblur_video(clip, out, backend=Invert(), codec="libx264", crf=0, pix_fmt="yuv444p", compare="split")
    for source, composed in zip(rgb_frames(clip), rgb_frames(out), strict=True):
        assert composed.shape == source.shape
        assert np.abs(composed[:, :31] - source[:, :31]).max() <= 3
        assert np.abs(composed[:, 33:] - (255 - source[:, 33:])).max() <= 3
        assert composed[:, 31:33].min() >= 250


def test_compose_keeps_16_bits():
    before = np.full((1, 4, 6, 3), 1000, np.uint16)
    after = np.full((1, 4, 6, 3), 2000, np.uint16)
    split = compose("split", before, after)
    assert split.dtype == np.uint16 and split[0, 0].tolist() == [[1000] * 3, [1000] * 3, [65535] * 3, [65535] * 3,
                                                                  [2000] * 3, [2000] * 3]
    assert compose("side", before, after).shape == (1, 4, 12, 3)


def test_blend_moves_the_input_part_of_the_way_rounded_and_clipped():
    before = np.array([[[[0, 100, 250]]]], np.uint8)
    after = np.array([[[[255, 101, 240]]]], np.uint8)
    assert blend(before, after, 0.5).tolist() == [[[[128, 100, 245]]]]   # 127.5 rounds to even, 100.5 too
    assert blend(before, after, 2.0).tolist() == [[[[255, 102, 230]]]]   # 510 clipped to 255
    assert blend(before, after, 1.0).tolist() == after.tolist()
    deep = blend(np.full((1, 1, 1, 3), 60000, np.uint16), np.full((1, 1, 1, 3), 65000, np.uint16), 1.5)
    assert deep.dtype == np.uint16 and deep.ravel().tolist() == [65535] * 3


def test_strength_half_writes_the_middle_of_input_and_result(clip, tmp_path):
    out = tmp_path / "half.mkv"
    deblur_video(clip, out, backend=Invert(), codec="ffv1", pix_fmt="yuv444p", strength=0.5)
    frames = rgb_frames(out)
    assert len(frames) == 4
    assert all(abs(f - 128).max() <= 2 for f in frames)   # x + (255 - 2x) / 2, whatever x was


def test_strength_applies_to_the_result_half_of_a_comparison(clip, tmp_path):
    out = tmp_path / "side.mkv"
    deblur_video(clip, out, backend=Invert(), codec="ffv1", pix_fmt="yuv444p", compare="side", strength=0.5)
    for source, written in zip(rgb_frames(clip), rgb_frames(out)):
        assert abs(written[:, :64] - source).max() <= 2
        assert abs(written[:, 64:] - 128).max() <= 2


def test_the_summary_names_the_strength(clip, tmp_path, capsys):
    assert main(["deblur", str(clip), "-o", str(tmp_path / "out.mkv"), "--strength", "0.75", "--backend", "torch"]) == 0
    summary = [line for line in capsys.readouterr().err.splitlines() if " frames in " in line]
    assert len(summary) == 1 and " at strength 0.75" in summary[0]


def test_a_bad_strength_is_one_line(clip, tmp_path, capsys):
    with pytest.raises(VdeblurError, match="--strength 0: give a value above 0 and at most 2"):
        deblur_video(clip, tmp_path / "x.mp4", backend=Invert(), strength=0)
    assert main(["deblur", str(clip), "-o", str(tmp_path / "x.mp4"), "--strength", "3"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--strength 3: give a value above 0" in err
    assert not (tmp_path / "x.mp4").exists()


def test_kept_progress_is_reused_only_at_the_same_strength(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=12)

    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=StopAtNine(), segment_frames=2, segment_seconds=0, strength=0.5)   # 4 segments kept
    notes = []
    deblur_video(src, out, backend=Invert(), notify=notes.append, segment_frames=2, segment_seconds=0)
    assert len(notes) == 1 and "starting over" in notes[0], notes
    for source, written in zip(rgb_frames(src), rgb_frames(out)):   # every frame the full result, none half-way
        assert np.abs(written - (255 - source)).mean() < 0.2 * np.abs(128 - (255 - source)).mean()


def test_a_comparison_does_not_reuse_plain_progress(tmp_path):
    """Kept segments of a plain run must not end up in a comparison (and the other way round)."""
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=12)

    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=StopAtNine(), segment_frames=2, segment_seconds=0)
    assert state_dir(out).exists()   # plain frames kept
    notes = []
    deblur_video(src, out, backend=Invert(), compare="split", notify=notes.append, segment_frames=2, segment_seconds=0)
    assert len(notes) == 1 and "starting over" in notes[0], notes
    assert not state_dir(out).exists()
    assert all(f[:, 31:33].mean() >= 220 for f in rgb_frames(out))   # every frame is a comparison (x264, 4:2:0)


def test_a_bad_mode_is_one_line(clip, tmp_path, capsys):
    with pytest.raises(VdeblurError, match="--compare 'both': choose side or split"):
        deblur_video(clip, tmp_path / "x.mp4", backend=Invert(), compare="both")
    with pytest.raises(SystemExit) as exit_:
        main(["deblur", str(clip), "-o", str(tmp_path / "x.mp4"), "--compare", "both"])
    assert exit_.value.code == 2
    assert "invalid choice: 'both'" in capsys.readouterr().err


def test_a_rotated_videos_comparison_shows_what_a_plain_run_writes(tmp_path):
    """--compare builds frames as shown, so the model got a phone video's pixels turned, and the
    network is not rotation-invariant: the preview's result differed from the real run's."""

    class Gradient(IdentityBackend):   # a change that depends on which way the picture lies
        def run(self, frames):
            ramp = (np.arange(frames.shape[2]) % 50).astype(np.int32)[None, None, :, None]
            return np.minimum(frames.astype(np.int32) + ramp, 255).astype(np.uint8)

    src = tmp_path / "portrait.mkv"
    make_video(src, width=96, height=64, frames=3, rotation=90, codec="ffv1", pix_fmt="yuv444p")
    deblur_video(src, tmp_path / "plain.mkv", backend=Gradient(), codec="ffv1")
    deblur_video(src, tmp_path / "side.mkv", backend=Gradient(), codec="ffv1", compare="side")
    with av.open(str(tmp_path / "plain.mkv")) as a, av.open(str(tmp_path / "side.mkv")) as b:
        for plain, side in zip(a.decode(video=0), b.decode(video=0), strict=True):
            shown = np.rot90(plain.to_ndarray(format="rgb24"), 1)   # the plain run keeps the rotation tag
            right = side.to_ndarray(format="rgb24")[:, side.width // 2:]
            assert np.array_equal(right, shown)
