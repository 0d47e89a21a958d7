"""HDR10 mastering display and light levels reach the output through the encoders that can write them."""

import av
import pytest

from media import IdentityBackend, make_video
from vdeblur.hdr import HDR10, encoder_options, read_hdr10, side_data
from vdeblur.pipeline import deblur_video

# A P3-D65 grade on a 1000-nit display, the usual HDR10 case (x265's units: 1/50000, 1/10000 cd/m²).
DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
GRADE = HDR10(primaries=((0.68, 0.32), (0.265, 0.69), (0.15, 0.06)), white=(0.3127, 0.329),
              luminance=(0.005, 1000.0), light=(1000, 400))


@pytest.fixture(scope="module")
def hdr_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("hdr") / "hdr10.mp4"
    make_video(path, width=96, height=64, frames=6, codec="libx265", pix_fmt="yuv420p10le",
               options={"preset": "ultrafast", "crf": "10", "x265-params": f"master-display={DISPLAY}:max-cll=1000,400"})
    return path


def first_frame_hdr(path):
    with av.open(str(path)) as c:
        return read_hdr10(side_data(next(c.decode(video=0))))


def test_the_source_metadata_is_read_from_the_frames(hdr_clip):
    found = first_frame_hdr(hdr_clip)
    assert found == GRADE or found.matches(GRADE)
    assert found.describe() == "mastering display 1000/0.005 cd/m², MaxCLL 1000, MaxFALL 400"


def test_each_writer_gets_it_in_its_own_words():
    assert encoder_options("libx265", GRADE) == {"x265-params": f"master-display={DISPLAY}:max-cll=1000,400"}
    assert encoder_options("libx264", GRADE) == {"x264-params": f"mastering-display={DISPLAY}:cll=1000,400"}
    assert encoder_options("libsvtav1", GRADE) == {"svtav1-params": (
        "mastering-display=G(0.26500,0.69000)B(0.15000,0.06000)R(0.68000,0.32000)WP(0.31270,0.32900)"
        "L(1000.0000,0.00500):content-light=1000,400")}
    assert encoder_options("libx265", HDR10(light=(800, 200))) == {"x265-params": "max-cll=800,200"}
    assert encoder_options("ffv1", GRADE) is None


@pytest.mark.parametrize("codec,suffix", [("libx265", ".mp4"), ("libx264", ".mkv"), ("libsvtav1", ".mp4")])
def test_deblur_keeps_hdr10_and_the_read_back_confirms_it(hdr_clip, tmp_path, codec, suffix):
    out = tmp_path / f"out{suffix}"
    notes = []
    report = deblur_video(hdr_clip, out, backend=IdentityBackend(uint16=True), codec=codec, notify=notes.append)
    assert notes == [] and not report.verify_problems
    assert first_frame_hdr(out).matches(GRADE)
    assert "HDR10 mastering display 1000/0.005 cd/m², MaxCLL 1000, MaxFALL 400" in report.verified


def test_an_encoder_that_cannot_carry_it_is_named_before_and_after(hdr_clip, tmp_path):
    notes = []
    report = deblur_video(hdr_clip, tmp_path / "out.mkv", backend=IdentityBackend(uint16=True), codec="ffv1",
                          notify=notes.append)
    assert notes == ["the source's HDR10 metadata (mastering display 1000/0.005 cd/m², MaxCLL 1000, MaxFALL 400) "
                     "is not written: ffv1 cannot carry it; use --codec libx265, libx264 or libsvtav1"]
    assert report.verify_problems == ["HDR10 metadata: mastering display 1000/0.005 cd/m², MaxCLL 1000, MaxFALL 400 "
                                      "in the input, none in the output (written by libx265, libx264, libsvtav1 only)"]


def test_sdr_sources_have_none(tmp_path):
    path = tmp_path / "sdr.mp4"
    make_video(path, frames=2)
    assert first_frame_hdr(path) is None


def test_dynamic_metadata_is_named():
    from vdeblur.hdr import read_dynamic_hdr

    found = {kind: b"" for kind in ("DOVI_RPU_BUFFER", "DOVI_METADATA", "DYNAMIC_HDR_PLUS")}
    assert read_dynamic_hdr(found) == ("Dolby Vision", "HDR10+")
    assert read_dynamic_hdr({"DISPLAYMATRIX": b""}) == ()


def test_dolby_vision_loss_is_said_before_the_first_frame(hdr_clip, tmp_path, monkeypatch):
    import vdeblur.video as video

    monkeypatch.setattr(video, "read_dynamic_hdr", lambda found: ("Dolby Vision",))   # as an iPhone clip's frames say
    notes = []
    deblur_video(hdr_clip, tmp_path / "out.mp4", backend=IdentityBackend(uint16=True), codec="libx265",
                 notify=notes.append)
    assert notes == ["the source's Dolby Vision metadata is not carried over (no encoder here takes it); "
                     "the output keeps the colour tags and HDR10 metadata"]
