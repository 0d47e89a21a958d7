"""`deblur --compare`: the input and the result in one video, composed after the model."""

import av
import numpy as np
import pytest

from media import IdentityBackend, make_video
from vdeblur import VdeblurError
from vdeblur.cli import main
from vdeblur.compare import compose
from vdeblur.pipeline import deblur_video
from vdeblur.resume import state_dir


class Invert(IdentityBackend):
    def run(self, frames):
        return np.iinfo(frames.dtype).max - frames


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


def test_a_comparison_does_not_reuse_plain_progress(tmp_path):
    """Kept segments of a plain run must not end up in a comparison (and the other way round)."""
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=12)

    class StopAtNine(Invert):
        def run(self, frames):
            self.calls += len(frames)
            if self.calls > 9:
                raise KeyboardInterrupt
            return super().run(frames)

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
