"""`deblur --region`: only the rectangle is the model's, every other pixel is the decoder's."""

import itertools

import av
import numpy as np
import pytest

from media import IdentityBackend, make_video
from vdeblur import VdeblurError, deblur_video
from vdeblur.cli import main
from vdeblur.region import CONTEXT, RegionBackend, describe_regions, parse_region, parse_regions, stored_region
from vdeblur.compare import turned_upright as upright


class InvertBackend(IdentityBackend):
    """255 - x, and a record of the shapes it was given: where the model ran is plain to see."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def run(self, frames):
        self.shapes.append(frames.shape)
        return 255 - frames


@pytest.mark.parametrize("steps", list(itertools.product([False, True], repeat=3)))
def test_a_region_as_shown_is_the_same_pixels_of_the_stored_frame(steps):
    stored = np.random.default_rng(1).integers(0, 256, (7, 11, 1), dtype=np.uint8)
    shown = upright(stored, steps)
    for region in [(0, 0, 1, 1), (2, 1, 3, 4), (shown.shape[1] - 2, shown.shape[0] - 3, 2, 3)]:
        x, y, w, h = region
        sx, sy, sw, sh = stored_region(region, (shown.shape[1], shown.shape[0]), steps)
        assert np.array_equal(upright(stored[sy:sy + sh, sx:sx + sw], steps), shown[y:y + h, x:x + w])


def test_the_backend_sees_the_region_with_context_and_only_the_region_changes():
    frames = np.random.default_rng(0).integers(0, 256, (2, 120, 200, 3), dtype=np.uint8)
    inner = InvertBackend()
    out = RegionBackend(inner, (10, 50, 60, 30)).run(frames)
    # 32 pixels of context where the frame has them: none left of x=10, all of them elsewhere.
    assert inner.shapes == [(2, 30 + 2 * CONTEXT, 10 + 60 + CONTEXT, 3)]
    inside = np.zeros(frames.shape, bool)
    inside[:, 50:80, 10:70] = True
    assert np.array_equal(out[inside], 255 - frames[inside])
    assert np.array_equal(out[~inside], frames[~inside])
    assert frames.flags.writeable and not np.shares_memory(out, frames)


def test_several_regions_each_get_their_own_window_and_overlaps_take_the_later():
    frames = np.random.default_rng(2).integers(0, 256, (1, 120, 200, 3), dtype=np.uint8)

    class AddRegionMark(InvertBackend):
        def run(self, frames):
            self.shapes.append(frames.shape)
            return np.full_like(frames, len(self.shapes))   # 1 for the first window, 2 for the second

    inner = AddRegionMark()
    out = RegionBackend(inner, [(100, 40, 20, 20), (110, 50, 50, 10)]).run(frames)
    assert inner.shapes == [(1, 20 + 2 * CONTEXT, 20 + 2 * CONTEXT, 3), (1, 10 + 2 * CONTEXT, 50 + 2 * CONTEXT, 3)]
    expected = frames.copy()
    expected[:, 40:60, 100:120] = 1
    expected[:, 50:60, 110:160] = 2
    assert np.array_equal(out, expected)


def test_regions_parse_one_or_several():
    assert parse_regions(None) is None
    assert parse_regions("1,2,3,4") == parse_regions((1, 2, 3, 4)) == [(1, 2, 3, 4)]
    assert parse_regions(["1,2,3,4", (5, 6, 7, 8)]) == [(1, 2, 3, 4), (5, 6, 7, 8)]
    assert describe_regions([(1, 2, 3, 4)]) == "region 3x4 at 1,2"
    assert describe_regions([(1, 2, 3, 4), (5, 6, 7, 8)]) == "regions 3x4 at 1,2 and 7x8 at 5,6"
    with pytest.raises(VdeblurError, match="no rectangle"):
        parse_regions([])
    with pytest.raises(VdeblurError, match="LEFT,TOP,WIDTH,HEIGHT"):
        parse_regions(["1,2,3,4", "5,6"])


@pytest.mark.parametrize("value, message", [
    ("3,4", "LEFT,TOP,WIDTH,HEIGHT"), ("a,b,c,d", "LEFT,TOP,WIDTH,HEIGHT"), ("-1,0,10,10", "not be negative"),
    ("0,0,0,10", "at least 1x1")])
def test_bad_regions_are_one_line_errors(value, message):
    with pytest.raises(VdeblurError, match=message):
        parse_region(value)


@pytest.mark.parametrize("rotation", [None, 90])
def test_deblur_video_changes_only_the_region_as_shown(tmp_path, rotation):
    src = tmp_path / "in.mkv"
    make_video(src, width=96, height=64, frames=3, rotation=rotation, codec="ffv1", pix_fmt="yuv444p",
               options={})
    region = (8, 40, 24, 16)   # as shown: a 64x96 picture on its side when rotated
    plain, boxed = tmp_path / "plain.mkv", tmp_path / "boxed.mkv"
    deblur_video(src, plain, backend=IdentityBackend(), codec="ffv1", pix_fmt="yuv444p", resume=False)
    report = deblur_video(src, boxed, backend=InvertBackend(), codec="ffv1", pix_fmt="yuv444p", resume=False,
                          region=region)
    assert report.frames == 3 and report.backend["regions"]
    with av.open(str(plain)) as a, av.open(str(boxed)) as b:
        before = [f.to_ndarray(format="rgb24") for f in a.decode(video=0)]
        after = [f.to_ndarray(format="rgb24") for f in b.decode(video=0)]
    x, y, w, h = region
    for shown_before, shown_after in zip(before, after):
        if rotation:   # a display matrix of +90 degrees is shown turned 90 degrees anticlockwise
            shown_before, shown_after = np.rot90(shown_before), np.rot90(shown_after)
        diff = np.abs(shown_after.astype(int) - shown_before).max(axis=2)
        inside = np.zeros(diff.shape, bool)
        inside[y:y + h, x:x + w] = True
        assert diff[~inside].max() <= 1            # the decoder's pixels, through lossless 4:4:4
        assert np.median(diff[inside]) > 20         # inverted by the stand-in model


def test_cli_says_the_region_and_refuses_one_past_the_picture(tmp_path, capsys):
    src = tmp_path / "in.mp4"
    make_video(src, width=64, height=48, frames=2)
    out = tmp_path / "out.mp4"
    assert main(["deblur", str(src), "-o", str(out), "--region", "40,20,30,10", "-q"]) == 1
    assert "--region 40,20,30,10 reaches past the 64x48 picture (it ends at 70,30)" in capsys.readouterr().err
    assert not out.exists()
    assert main(["deblur", str(src), "-o", str(out), "--region", "1,2"]) == 1
    assert "LEFT,TOP,WIDTH,HEIGHT" in capsys.readouterr().err
    assert main(["deblur", str(src), "-o", str(out), "--region", "0,0,8,8", "--region", "40,20,30,10", "-q"]) == 1
    assert "--region 40,20,30,10 reaches past" in capsys.readouterr().err


def test_cli_deblurs_two_regions(tmp_path, capsys, monkeypatch):
    import vdeblur.pipeline as pipeline

    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_video(src, width=64, height=48, frames=2, codec="ffv1", pix_fmt="yuv444p", options={})
    real = pipeline.deblur_video
    monkeypatch.setattr(pipeline, "deblur_video", lambda *a, **kw: real(*a, **{**kw, "backend": InvertBackend()}))
    assert main(["deblur", str(src), "-o", str(out), "--codec", "ffv1", "--pix-fmt", "yuv444p",
                 "--region", "0,0,8,8", "--region", "40,20,16,10"]) == 0
    assert "regions 8x8 at 0,0 and 16x10 at 40,20" in capsys.readouterr().err
    with av.open(str(src)) as a, av.open(str(out)) as b:
        before, after = (next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int) for c in (a, b))
    changed = np.abs(after - before).max(axis=2) > 20
    expected = np.zeros(changed.shape, bool)
    expected[0:8, 0:8] = expected[20:30, 40:56] = True
    assert np.array_equal(changed, expected)


def test_kept_progress_is_reused_only_for_the_same_region(tmp_path):
    from test_compare import Invert, StopAtNine
    from vdeblur.resume import state_dir

    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=12)
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=StopAtNine(), segment_frames=2, segment_seconds=0, region=(0, 0, 16, 16))
    assert state_dir(out).exists()
    notes = []
    deblur_video(src, out, backend=Invert(), notify=notes.append, segment_frames=2, segment_seconds=0,
                 region=(16, 16, 16, 16))
    assert len(notes) == 1 and "starting over" in notes[0], notes


@pytest.mark.parametrize("count", [2, 3])
def test_several_regions_keep_within_the_batches_a_gpu_backend_holds(tmp_path, count):
    """Each region is a batch of its own for the backend: with two regions and two batches in flight
    torch on CUDA was handed four, and refused the third ("two batches are already in flight")."""
    from media import TwoSlotBackend

    src = tmp_path / "in.mkv"
    make_video(src, width=64, height=48, frames=4, codec="ffv1", pix_fmt="yuv444p", options={})
    backend = TwoSlotBackend()
    regions = [(0, 0, 8, 8), (40, 20, 16, 10), (20, 30, 8, 8)][:count]
    report = deblur_video(src, tmp_path / "out.mkv", backend=backend, codec="ffv1", pix_fmt="yuv444p", region=regions)
    assert report.frames == 4 and backend.most == 2 and backend.outstanding == 0
