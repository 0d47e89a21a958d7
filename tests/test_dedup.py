"""Repeated frames: a frame identical to the one before it gets that frame's result without the model."""

import av
import numpy as np
import pytest

from media import IdentityBackend, pattern
from vdeblur import deblur_video
from vdeblur.cli import main
from vdeblur.pipeline import _same_picture

#: Source picture of each frame: 0 0 1 2 2 2 3 4 4 5 (repeats inside batches, across them, and whole batches).
SHOWN = [0, 0, 1, 2, 2, 2, 3, 4, 4, 5]


class Inverting(IdentityBackend):
    """A deterministic stand-in model that changes every pixel, counting the frames it is given."""

    def __init__(self):
        super().__init__()
        self.frames = 0

    def run(self, frames):
        self.calls += 1
        self.frames += len(frames)
        return 255 - frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Lossless (FFV1), so repeated frames decode identical, as x264's usually do too."""
    path = tmp_path_factory.mktemp("src") / "repeats.mkv"
    with av.open(str(path), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv444p"
        for k in SHOWN:
            image = (pattern(k, 48, 64) * 255).round().astype(np.uint8)
            for packet in v.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
    return path


def decoded(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_repeats_skip_the_model_and_change_nothing(clip, tmp_path, batch):
    reused, every = Inverting(), Inverting()
    a = deblur_video(clip, tmp_path / "a.mkv", backend=reused, batch=batch, codec="ffv1", pix_fmt="yuv444p")
    b = deblur_video(clip, tmp_path / "b.mkv", backend=every, batch=batch, codec="ffv1", pix_fmt="yuv444p",
                     dedup=False)
    assert a.frames == b.frames == 10
    assert a.repeated_frames == 4 and b.repeated_frames == 0
    assert reused.frames == 6 and every.frames == 10
    for x, y in zip(decoded(tmp_path / "a.mkv"), decoded(tmp_path / "b.mkv"), strict=True):
        assert np.array_equal(x, y)


def test_an_all_repeats_batch_calls_no_model(clip, tmp_path):
    backend = Inverting()
    deblur_video(clip, tmp_path / "o.mkv", backend=backend, batch=2, codec="ffv1")
    # batches of two: (0 0) (1 2) (2 2) (3 4) (4 5): the third is all repeats
    assert backend.calls == 4 and backend.frames == 6


def test_strength_and_comparison_as_without_reuse(clip, tmp_path):
    for name, dedup in (("a.mkv", True), ("b.mkv", False)):
        deblur_video(clip, tmp_path / name, backend=Inverting(), codec="ffv1", pix_fmt="yuv444p",
                     strength=0.25, compare="side", dedup=dedup)
    for x, y in zip(decoded(tmp_path / "a.mkv"), decoded(tmp_path / "b.mkv"), strict=True):
        assert x.shape == (48, 128, 3) and np.array_equal(x, y)


def test_same_picture_looks_at_every_pixel():
    a = np.zeros((8, 6, 3), np.uint8)
    b = a.copy()
    assert _same_picture(a, b)
    b[0, 0, 0] = 1   # the middle row agrees, a corner does not
    assert not _same_picture(a, b)
    assert not _same_picture(a, np.zeros((6, 8, 3), np.uint8))
    assert not _same_picture(a, a.astype(np.uint16))


def test_cli_says_how_many_were_reused(clip, tmp_path, capsys, monkeypatch):
    import vdeblur.pipeline as pipeline

    real = pipeline.deblur_video
    monkeypatch.setattr(pipeline, "deblur_video", lambda *a, **kw: real(*a, **{**kw, "backend": Inverting()}))
    assert main(["deblur", str(clip), "-o", str(tmp_path / "a.mkv")]) == 0
    assert ", 4 repeated frames reused" in capsys.readouterr().err
    assert main(["deblur", str(clip), "-o", str(tmp_path / "b.mkv"), "--no-dedup"]) == 0
    assert "repeated" not in capsys.readouterr().err
