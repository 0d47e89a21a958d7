"""Interlaced input: the model gets whole pictures (bwdif, one frame per frame), timing untouched."""

from fractions import Fraction

import av
import numpy as np
import pytest

from media import IdentityBackend, make_video, video_pts
from vdeblur import VdeblurError, deblur_video
from vdeblur.pipeline import DEINTERLACING, INTERLACED
from vdeblur.video import VideoReader

W, H = 128, 96
BAR = 16   # width of the bright bar
STEP = 6   # its move per field (1/50 s)


def moment(t: int) -> np.ndarray:
    """The scene at field time ``t``: a bright bar on a vertical ramp (so no line equals its neighbour)."""
    img = np.full((H, W, 3), 40, np.uint8)
    x0 = 8 + STEP * t
    img[:, x0:x0 + BAR] = 220
    img[..., 1] = np.arange(H, dtype=np.uint8)[:, None] * 2
    return img


def woven(i: int, first_on_top: bool = True) -> np.ndarray:
    """Frame ``i`` of interlaced video: the first field's lines show moment 2i, the other's 2i + 1."""
    first, second = moment(2 * i), moment(2 * i + 1)
    out = first.copy()
    rows = slice(1, None, 2) if first_on_top else slice(0, None, 2)
    out[rows] = second[rows]
    return out


def make_interlaced(path, frames=8, flag="tff", first_on_top=True, intra=False):
    """x264 coded as interlaced with field order ``flag`` ("tff"/"bff", given to each frame by
    FFmpeg's setfield, which libx264 follows), or (flag None) woven fields coded as progressive.
    ``intra``: every frame a keyframe, as in DV, ProRes and broadcast I-frame-only MPEG-2."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"crf": "4", "preset": "ultrafast",
                                                      **({"x264-params": "interlaced=1"} if flag else {}),
                                                      **({"g": "1"} if intra else {})})
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.colorspace = s.codec_context.color_range = 1
        graph = av.filter.Graph()
        source = graph.add_buffer(width=W, height=H, format="yuv420p", time_base=Fraction(1, 25))
        setfield = graph.add("setfield", flag or "prog")
        sink = graph.add("buffersink")
        source.link_to(setfield)
        setfield.link_to(sink)
        graph.configure()
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(woven(i, first_on_top), format="rgb24")
            f = f.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            f.pts = i
            graph.push(f)
            f = graph.pull()
            f.pts, f.time_base = i, Fraction(1, 25)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def comb(img: np.ndarray) -> float:
    """How far each line is from the mean of its neighbours: large where fields disagree."""
    y = img[..., 0].astype(np.float64)
    return float(np.abs(y[1:-1] - (y[:-2] + y[2:]) / 2).mean())


def frames_of(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def shows_moment(img: np.ndarray, t: int) -> bool:
    """Whether the bar sits where it was at field time t, on every line."""
    centres = [np.flatnonzero(row > 130).mean() for row in img[..., 0]]
    return bool(np.all(np.abs(np.array(centres) - (8 + STEP * t + (BAR - 1) / 2)) <= 2))


@pytest.fixture(scope="module")
def tv(tmp_path_factory):
    return make_interlaced(tmp_path_factory.mktemp("tv") / "tv.mp4")


def test_interlaced_frames_reach_the_model_whole_with_their_timestamps(tv, tmp_path):
    notes = []
    report = deblur_video(tv, tmp_path / "auto.mp4", backend=IdentityBackend(), notify=notes.append)
    off = deblur_video(tv, tmp_path / "off.mp4", backend=IdentityBackend(), deinterlace="off")
    assert notes == [DEINTERLACING.format(found=", top field first as FFmpeg's idet finds")]
    assert (report.deinterlaced_frames, off.deinterlaced_frames) == (8, 0)
    assert video_pts(tmp_path / "auto.mp4") == video_pts(tv)
    assert report.verified[0] == "8 frames at the input's timestamps"
    combed = np.mean([comb(f) for f in frames_of(tmp_path / "off.mp4")])
    clean = np.mean([comb(f) for f in frames_of(tmp_path / "auto.mp4")])
    assert clean < combed / 4, (clean, combed)
    # Each frame shows its first field's moment: the bar where it was at time 2i (the first and last
    # frames lack a neighbour to tell still parts from moving ones).
    assert all(shows_moment(img, 2 * i) for i, img in enumerate(frames_of(tmp_path / "auto.mp4")) if 0 < i < 7)


def test_progressive_video_is_left_as_it_is(tmp_path):
    src = tmp_path / "p.mp4"
    make_video(src, width=W, height=H, frames=4)
    notes = []
    report = deblur_video(src, tmp_path / "auto.mp4", backend=IdentityBackend(), notify=notes.append)
    deblur_video(src, tmp_path / "off.mp4", backend=IdentityBackend(), deinterlace="off")
    assert notes == [] and report.deinterlaced_frames == 0
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(tmp_path / "auto.mp4"), frames_of(tmp_path / "off.mp4")))


@pytest.mark.parametrize("first_on_top", [True, False])
def test_woven_fields_flagged_progressive_are_found_or_named(tmp_path, first_on_top):
    src = make_interlaced(tmp_path / "woven.mp4", flag=None, first_on_top=first_on_top)
    right, wrong = ("tff", "bff") if first_on_top else ("bff", "tff")
    notes = []
    auto = deblur_video(src, tmp_path / "auto.mp4", backend=IdentityBackend(), notify=notes.append)
    assert notes == [f"the input is flagged progressive, but its pictures are interlaced, {'top' if first_on_top else 'bottom'} "
                     f"field first (FFmpeg's idet, first 8 frames: 7 interlaced, 0 progressive), so frames are "
                     f"deinterlaced as --deinterlace {right} does; --deinterlace off leaves them whole"]
    report = deblur_video(src, tmp_path / f"{right}.mp4", backend=IdentityBackend(), deinterlace=right)
    deblur_video(src, tmp_path / f"{wrong}.mp4", backend=IdentityBackend(), deinterlace=wrong)
    deblur_video(src, tmp_path / "off.mp4", backend=IdentityBackend(), deinterlace="off")
    assert auto.deinterlaced_frames == report.deinterlaced_frames == 8
    good, bad = frames_of(tmp_path / f"{right}.mp4"), frames_of(tmp_path / f"{wrong}.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(tmp_path / "auto.mp4"), good, strict=True))
    # The right parity shows each frame's first field's moment, the wrong one the second's.
    assert all(shows_moment(img, 2 * i) for i, img in enumerate(good) if 0 < i < 7)
    assert all(shows_moment(img, 2 * i + 1) for i, img in enumerate(bad) if 0 < i < 7)
    assert np.mean([comb(f) for f in good]) < np.mean([comb(f) for f in frames_of(tmp_path / "off.mp4")]) / 4


def test_progressive_pictures_flagged_interlaced_are_left_whole(tmp_path):
    src = tmp_path / "psf.mp4"   # 25PsF: both fields of a frame from one moment, coded as interlaced
    make_video(src, width=W, height=H, frames=8, options={"preset": "ultrafast", "x264-params": "interlaced=1"})
    notes = []
    report = deblur_video(src, tmp_path / "auto.mp4", backend=IdentityBackend(), notify=notes.append)
    assert notes == ["the input is flagged interlaced, but its pictures are progressive (FFmpeg's idet, first 8 frames: "
                     "7 progressive, 0 interlaced), so frames are left whole; --deinterlace tff or bff deinterlaces them anyway"]
    deblur_video(src, tmp_path / "off.mp4", backend=IdentityBackend(), deinterlace="off")
    assert report.deinterlaced_frames == 0
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(tmp_path / "auto.mp4"), frames_of(tmp_path / "off.mp4"), strict=True))
    forced = deblur_video(src, tmp_path / "tff.mp4", backend=IdentityBackend(), deinterlace="tff")
    assert forced.deinterlaced_frames == 8
    doubled = deblur_video(src, tmp_path / "double.mp4", backend=IdentityBackend(), double_rate=True)   # nothing to double
    assert (doubled.frames, doubled.deinterlaced_frames) == (8, 0)


def test_a_part_and_a_bottom_field_first_source(tmp_path):
    src = make_interlaced(tmp_path / "bff.mkv", flag="bff", first_on_top=False)
    report = deblur_video(src, tmp_path / "part.mkv", backend=IdentityBackend(), start=0.12, duration=0.16)
    out = frames_of(tmp_path / "part.mkv")
    assert report.deinterlaced_frames == len(out) == 4
    assert all(shows_moment(img, 2 * (k + 3)) for k, img in enumerate(out))   # frames 3..6 of the source


def test_an_elementary_stream_that_changes_size_gets_a_new_filter(tmp_path):
    a, b, joined = tmp_path / "a.h264", tmp_path / "b.h264", tmp_path / "ab.h264"
    make_video(a, width=64, height=48, frames=3, options={"preset": "ultrafast", "x264-params": "interlaced=1"})
    make_video(b, width=96, height=64, frames=3, options={"preset": "ultrafast", "x264-params": "interlaced=1"})
    joined.write_bytes(a.read_bytes() + b.read_bytes())   # no timestamps, and a new SPS mid-stream
    report = deblur_video(joined, tmp_path / "out.mp4", backend=IdentityBackend(), deinterlace="bff")
    assert report.deinterlaced_frames == 6 and report.frames == 6


def test_reader_counts_only_the_frames_it_delivers(tv):
    reader = VideoReader(tv)
    try:
        reader.skip_to(5, video_pts(tv)[5])   # a resumed run: frames 0-4 are decoded again but not delivered
        delivered = [item for item in reader.items() if not isinstance(item, av.Packet)]
    finally:
        reader.close()
    assert len(delivered) == 3 and reader.deinterlaced_frames == 3
    assert [d.pts for d in delivered] == video_pts(tv)[5:]


def test_bad_mode_is_one_line(tv, tmp_path):   # the CLI's choices are argparse's
    with pytest.raises(VdeblurError, match="--deinterlace must be one of auto, tff, bff, off"):
        deblur_video(tv, tmp_path / "x.mp4", backend=IdentityBackend(), deinterlace="yadif")


def test_off_says_what_it_costs(tv, tmp_path):
    notes = []
    deblur_video(tv, tmp_path / "off.mp4", backend=IdentityBackend(), deinterlace="off", notify=notes.append)
    assert notes == [INTERLACED]


def test_a_resumed_run_deinterlaces_its_first_frame_with_its_neighbour(tmp_path):
    from test_resume import interrupted_then_resumed

    src = make_interlaced(tmp_path / "intra.mkv", frames=10, intra=True)   # a seek lands on any frame
    out, whole = tmp_path / "out.mkv", tmp_path / "whole.mkv"
    first, second, kept, notes, report = interrupted_then_resumed(src, out, 8, codec="ffv1")
    assert kept in (3, 6) and second.frames == report.deinterlaced_frames == 10 - kept
    deblur_video(src, whole, backend=IdentityBackend(), codec="ffv1", resume=False)
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), frames_of(whole), strict=True))


def test_a_part_deinterlaces_its_first_frame_with_the_frame_before(tmp_path):
    src = make_interlaced(tmp_path / "intra.mkv", frames=8, intra=True)
    deblur_video(src, tmp_path / "part.mkv", backend=IdentityBackend(), codec="ffv1", start=0.12)
    deblur_video(src, tmp_path / "whole.mkv", backend=IdentityBackend(), codec="ffv1")
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(tmp_path / "part.mkv"), frames_of(tmp_path / "whole.mkv")[3:],
                                                    strict=True))


@pytest.mark.parametrize("suffix", [".mkv", ".avi"])   # AVI counts frames at a fixed rate: 50 now
def test_double_rate_makes_each_field_a_frame_at_its_own_moment(tv, tmp_path, suffix):
    from vdeblur.pipeline import DOUBLING

    out = tmp_path / f"fields{suffix}"
    notes = []
    report = deblur_video(tv, out, backend=IdentityBackend(), double_rate=True, notify=notes.append)
    assert notes == [DOUBLING.format(found=", top field first as FFmpeg's idet finds")]
    assert report.frames == report.deinterlaced_frames == report.expected_frames == 16
    assert report.verified[0] == "16 frames at the input's timestamps" and report.warnings() == []
    frames = frames_of(out)
    assert all(shows_moment(img, k) for k, img in enumerate(frames) if 0 < k < 15)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.average_rate == 50
        times = [float(f.time) for f in c.decode(v)]
    if suffix == ".mkv":   # AVI has no presentation times: FFmpeg guesses them, wrongly with B-frames
        assert times == pytest.approx([k / 50 for k in range(16)], abs=1e-3)


@pytest.mark.parametrize("start,duration,fields", [(None, 0.1, 5), (0.04, 0.06, 3)])
def test_double_rate_expects_the_fields_of_a_part(tv, tmp_path, start, duration, fields):
    """A part holds whole fields: 0.1 s of 25i is 5 of them (the estimate said 4, and the bar went past it)."""
    report = deblur_video(tv, tmp_path / "part.mkv", backend=IdentityBackend(), codec="ffv1", double_rate=True,
                          start=start, duration=duration)
    assert report.frames == report.expected_frames == fields


def test_double_rate_resumes_between_the_fields_of_a_frame(tmp_path):
    from test_resume import interrupted_then_resumed

    src = make_interlaced(tmp_path / "intra.mkv", frames=6, intra=True)
    out, whole = tmp_path / "out.mkv", tmp_path / "whole.mkv"
    first, second, kept, notes, report = interrupted_then_resumed(src, out, 8, codec="ffv1", double_rate=True)
    assert kept in (3, 6) and second.frames == 12 - kept and report.frames == 12   # 3: after frame 1's first field
    deblur_video(src, whole, backend=IdentityBackend(), codec="ffv1", resume=False, double_rate=True)
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), frames_of(whole), strict=True))
    assert report.verified[0] == "12 frames at the input's timestamps"


def test_double_rate_of_progressive_video_or_with_deinterlacing_off(tmp_path):
    from vdeblur.pipeline import PROGRESSIVE

    src = tmp_path / "p.mp4"
    make_video(src, width=W, height=H, frames=4)
    notes = []
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), double_rate=True, notify=notes.append)
    assert notes == [PROGRESSIVE.format(option="--double-rate")] and report.frames == 4 and report.deinterlaced_frames == 0
    with pytest.raises(VdeblurError, match="--double-rate makes one frame per field: it needs --deinterlace auto, tff or bff"):
        deblur_video(src, tmp_path / "off.mp4", backend=IdentityBackend(), double_rate=True, deinterlace="off")
    woven = make_interlaced(tmp_path / "woven.mp4", flag=None)   # flagged progressive, found out by idet
    report = deblur_video(woven, tmp_path / "tff.mp4", backend=IdentityBackend(), double_rate=True)
    assert report.frames == 16 and all(shows_moment(img, k) for k, img in enumerate(frames_of(tmp_path / "tff.mp4")) if 0 < k < 15)


def test_the_field_order_the_pictures_show_beats_the_flags(tmp_path):
    # Top field first pictures flagged bottom first (a capture tagged wrong): played by the flags,
    # double rate would show each pair of fields backwards.
    src = make_interlaced(tmp_path / "wrong.mkv", flag="bff", first_on_top=True)
    notes = []
    report = deblur_video(src, tmp_path / "out.mkv", backend=IdentityBackend(), double_rate=True, notify=notes.append)
    assert notes[0].startswith("the input is interlaced, top field first as FFmpeg's idet finds:")
    assert report.frames == 16 and all(shows_moment(img, k) for k, img in enumerate(frames_of(tmp_path / "out.mkv")) if 0 < k < 15)


class FieldMarks(IdentityBackend):
    """Every frame a flat grey that says which it was: 60 for the first of each pair (a frame's first
    field), 180 for the second."""

    def __init__(self):
        super().__init__()
        self.frames = 0

    def run(self, frames):
        marks = [60 if (self.frames + k) % 2 == 0 else 180 for k in range(len(frames))]
        self.frames += len(frames)
        return np.stack([np.full(f.shape, m, np.uint8) for f, m in zip(frames, marks)])


@pytest.mark.parametrize("order", ["tff", "bff"])
def test_reinterlace_weaves_each_field_from_its_own_frame(tmp_path, order):
    src = make_interlaced(tmp_path / f"{order}.mkv", flag=order, first_on_top=order == "tff", intra=True)
    out = tmp_path / "woven.mkv"
    notes = []
    backend = FieldMarks()
    report = deblur_video(src, out, backend=backend, reinterlace=True, codec="ffv1", pix_fmt="yuv444p",
                          notify=notes.append)
    first = "top" if order == "tff" else "bottom"
    assert notes == [f"the input is interlaced, {first} field first as FFmpeg's idet finds: each field is made a frame "
                     f"(FFmpeg's bwdif) for the model, and the results are woven back into interlaced frames, "
                     f"{first} field first, at the input's frame rate"]
    assert backend.frames == 16 and report.frames == report.expected_frames == 8
    assert report.verified[0] == "8 frames at the input's timestamps"
    assert f"interlaced, {first} field first" in report.verified and report.warnings() == []
    assert video_pts(out) == video_pts(src)
    for frame in frames_of(out):
        rows = frame[..., 1].astype(int).mean(axis=1)
        own = slice(0, None, 2) if order == "tff" else slice(1, None, 2)   # the first field's lines
        other = slice(1, None, 2) if order == "tff" else slice(0, None, 2)
        assert np.all(np.abs(rows[own] - 60) <= 2) and np.all(np.abs(rows[other] - 180) <= 2)


def test_reinterlace_gives_back_the_input_through_an_identity_model(tv, tmp_path):
    out = tmp_path / "tv.mp4"
    report = deblur_video(tv, out, backend=IdentityBackend(), reinterlace=True, crf=4)
    assert report.frames == 8 and "interlaced, top field first" in report.verified and report.warnings() == []
    source, written = frames_of(tv), frames_of(out)
    assert len(written) == 8
    for i, (a, b) in enumerate(zip(source, written)):
        # Each field's lines are its own moment's, as in the source: combed where the bar moves, not deinterlaced.
        assert comb(b) > 0.5 * comb(a) > 1
        assert np.abs(a.astype(int) - b).mean() < 2
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == 25


def test_reinterlace_refusals_and_progressive_input(tv, tmp_path):
    from vdeblur.pipeline import PROGRESSIVE

    with pytest.raises(VdeblurError, match="--reinterlace: libx265 cannot code interlaced video; use --codec libx264, "
                                           "mpeg2video, prores_ks or ffv1"):
        deblur_video(tv, tmp_path / "a.mkv", backend=IdentityBackend(), reinterlace=True, codec="libx265")
    with pytest.raises(VdeblurError, match="--reinterlace writes interlaced video; pictures are progressive"):
        deblur_video(tv, tmp_path / "f%03d.png", backend=IdentityBackend(), reinterlace=True)
    with pytest.raises(VdeblurError, match="--reinterlace makes one frame per field: it needs --deinterlace auto"):
        deblur_video(tv, tmp_path / "b.mkv", backend=IdentityBackend(), reinterlace=True, deinterlace="off")
    with pytest.raises(VdeblurError, match="--reinterlace and --double-rate: give one"):
        deblur_video(tv, tmp_path / "c.mkv", backend=IdentityBackend(), reinterlace=True, double_rate=True)
    assert not list(tmp_path.iterdir())
    src = tmp_path / "p.mp4"
    make_video(src, width=W, height=H, frames=4)
    notes = []
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), reinterlace=True, notify=notes.append)
    assert notes == [PROGRESSIVE.format(option="--reinterlace")] and report.frames == 4
    assert not any("interlaced" in line for line in report.verified)


def test_cli_reinterlace_is_one_pass(tv, tmp_path, capsys, monkeypatch):
    import vdeblur.pipeline as pipeline
    from vdeblur.cli import main
    from vdeblur.resume import state_dir

    real = pipeline.deblur_video
    monkeypatch.setattr(pipeline, "deblur_video", lambda *a, **kw: real(*a, **{**kw, "backend": IdentityBackend()}))
    out = tmp_path / "out.mkv"
    assert main(["deblur", str(tv), "-o", str(out), "--reinterlace", "--codec", "mpeg2video"]) == 0
    err = capsys.readouterr().err
    assert "8 frames in" in err and "interlaced, top field first" in err
    assert not state_dir(out).exists()


def test_reinterlace_says_which_heights_x264_cannot_split_into_fields(tmp_path):
    src = tmp_path / "odd.mkv"
    make_video(src, width=64, height=50, frames=2)
    with pytest.raises(VdeblurError, match=r"libx264 cannot code yuv420p interlaced at 50 lines \(whole chroma lines "
                                           r"in each field of subsampled chroma need a multiple of 4\); use --codec ffv1"):
        deblur_video(src, tmp_path / "o.mkv", backend=IdentityBackend(), reinterlace=True, deinterlace="tff")
    report = deblur_video(src, tmp_path / "o.mkv", backend=IdentityBackend(), reinterlace=True, deinterlace="tff",
                          codec="ffv1")
    assert report.frames == 2 and "interlaced, top field first" in report.verified


def bar_rows(path) -> list[tuple[int, int]]:
    """Where the bar sits on an even and on an odd line of each frame: (first field, second field) for tff."""
    out = []
    for img in frames_of(path):
        red = img[..., 0]
        out.append(tuple(int(np.flatnonzero(red[row] > 130).mean()) for row in (10, 11)))
    return out


def test_reinterlace_keeps_each_fields_lines_where_the_flags_and_the_stream_disagree(tmp_path):
    # Four bottom-first frames: too few for idet to decide, and the stream's field order says top first.
    src = make_interlaced(tmp_path / "bff4.mkv", frames=4, flag="bff", first_on_top=False)
    out = tmp_path / "out.mkv"
    report = deblur_video(src, out, backend=IdentityBackend(), reinterlace=True, codec="ffv1", pix_fmt="yuv444p")
    assert report.frames == 4 and report.warnings() == []
    assert bar_rows(out) == bar_rows(src)   # every line where it was, not moved to the other field's


def test_reinterlace_of_a_part_takes_whole_frames(tv, tmp_path):
    out = tmp_path / "part.mkv"
    # 0.05 s falls inside frame 1 (0.04-0.08) and 0.17 inside frame 4: frames 2 to 4, each with both fields.
    report = deblur_video(tv, out, backend=IdentityBackend(), reinterlace=True, codec="ffv1", pix_fmt="yuv444p",
                          start=0.05, duration=0.12)
    assert report.frames == 3 and report.verified[0] == "3 frames at the input's timestamps"
    assert bar_rows(out) == bar_rows(tv)[2:5]


def test_reinterlace_of_an_input_that_starts_progressive_says_what_it_wrote(tmp_path):
    progressive, interlaced, src = tmp_path / "p.h264", tmp_path / "i.h264", tmp_path / "pi.h264"
    make_video(progressive, width=W, height=H, frames=3, options={"preset": "ultrafast"})
    make_interlaced(interlaced, frames=4)
    src.write_bytes(progressive.read_bytes() + interlaced.read_bytes())   # a progressive head, then interlaced
    report = deblur_video(src, tmp_path / "out.mkv", backend=IdentityBackend(), reinterlace=True)
    assert report.deinterlaced_frames == 4
    assert report.warnings() == ["--reinterlace: the input starts progressive, so it was written progressive; its 4 "
                                 "interlaced frame(s) after that were deinterlaced at the frame rate (--deinterlace "
                                 "tff or bff treats every frame as interlaced)"]


def test_reinterlace_progress_counts_the_frames_written(tv, tmp_path):
    seen = []
    deblur_video(tv, tmp_path / "o.mkv", backend=IdentityBackend(), reinterlace=True, codec="ffv1",
                 progress=lambda *a: seen.append(a))
    assert seen == [(n, 8) for n in range(1, 9)]   # 8 interlaced frames, not 16 field frames


def test_reinterlace_counts_a_size_change_in_the_inputs_frames(tmp_path):
    a, b, joined = tmp_path / "a.h264", tmp_path / "b.h264", tmp_path / "ab.h264"
    make_video(a, width=64, height=48, frames=3, options={"preset": "ultrafast", "x264-params": "interlaced=1"})
    make_video(b, width=96, height=64, frames=2, options={"preset": "ultrafast", "x264-params": "interlaced=1"})
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    report = deblur_video(joined, tmp_path / "out.mkv", backend=IdentityBackend(), deinterlace="tff", reinterlace=True,
                          codec="ffv1")
    assert report.frames == 5
    assert report.resized.startswith("the input changes size mid-stream (96x64 from frame 3): 2 frame(s) were scaled")
