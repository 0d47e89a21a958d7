"""Image sequences (frames/%04d.png) in and out: numbering, timing, depth, no partial sequence, resume."""

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from media import IdentityBackend, make_video, pattern, psnr
from test_resume import Counting, SMALL
from vdeblur.cli import main
from vdeblur.errors import VdeblurError
from vdeblur.pipeline import deblur_video
from vdeblur.resume import kept_frames
from vdeblur.sequence import is_sequence, numbers, parse_rate


def write_pngs(folder, first, count, name="f_%04d.png", high=False):
    folder.mkdir(exist_ok=True)
    frames = [pattern(i, 48, 64, high=high) for i in range(count)]
    for i, image in enumerate(frames):
        path = folder / (name % (first + i))
        if high:   # 16-bit RGB PNG through PyAV (Pillow writes 16-bit only for grey)
            with av.open(str(path), "w", format="image2") as c:
                s = c.add_stream("png")
                s.width, s.height, s.pix_fmt = 64, 48, "rgb48be"
                c.mux(s.encode(av.VideoFrame.from_ndarray(image, format="rgb48le")))
                c.mux(s.encode(None))
        else:
            Image.fromarray(image).save(path)
    return folder / name, frames


def read_pngs(pattern_path):
    return {n: np.asarray(Image.open(pattern_path.parent / (pattern_path.name % n)).convert("RGB"))
            for n in numbers(pattern_path)}


def test_names_numbers_and_rates():
    assert is_sequence("a/f_%04d.png") and is_sequence("%d.tif") and not is_sequence("a/f.png")
    assert not is_sequence("f_%04d_%d.png") and not is_sequence("50%.png") and not is_sequence("http://x/%04d.png")
    assert parse_rate("24000/1001") == Fraction(24000, 1001) and parse_rate("23.976") == Fraction(24000, 1001)
    assert parse_rate("29.97") == Fraction(30000, 1001) and parse_rate("59.94") == Fraction(60000, 1001)
    assert parse_rate("25") == 25 and parse_rate("12.5") == Fraction(25, 2) and parse_rate(None) is None
    for bad in ("abc", "0", "-3", "1/0"):
        with pytest.raises(VdeblurError, match="--fps"):
            parse_rate(bad)


def test_a_file_named_like_a_pattern_is_that_file(tmp_path):
    literal = tmp_path / "100%d.mp4"
    make_video(literal, frames=2)
    assert not is_sequence(literal) and is_sequence(tmp_path / "200%d.mp4")
    assert deblur_video(literal, tmp_path / "out.mp4", backend=IdentityBackend()).frames == 2


def test_numbers_are_what_the_pattern_prints(tmp_path):
    for name in ("f_0007.png", "f_0008.png", "f_12345.png", "f_7.png", "f_0009.jpg", "g_0010.png"):
        (tmp_path / name).write_bytes(b"")
    assert numbers(tmp_path / "f_%04d.png") == [7, 8, 12345]
    assert numbers(tmp_path / "f_%d.png") == [7, 12345]


def test_a_sequence_from_1001_into_mp4_at_the_given_rate(tmp_path):
    """VFX numbering (from 1001) is found without a --start-number, and --fps times the frames."""
    src, frames = write_pngs(tmp_path / "plate", 1001, 6)
    out = tmp_path / "plate.mp4"
    report = deblur_video(src, out, backend=IdentityBackend(), fps=Fraction(24000, 1001), crf=0, pix_fmt="yuv444p",
                          resume=False)
    assert report.frames == 6 and report.warnings() == []
    assert report.verified[0] == "6 frames at the input's timestamps"
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        got = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
        assert v.average_rate == Fraction(24000, 1001)
    assert [t for t, _ in got] == pytest.approx([i * 1001 / 24000 for i in range(6)])
    assert min(psnr(a, b) for a, (_, b) in zip(frames, got)) > 40   # RGB -> YUV 4:4:4 -> RGB, lossless coding


@pytest.mark.parametrize("resume", [True, False])
def test_a_slow_time_lapse_keeps_its_b_frames_in_order(tmp_path, resume):
    """One frame per 100 s: x264 decodes a B-frame's neighbour minutes before showing it, which is no garbage."""
    src, _ = write_pngs(tmp_path / "lapse", 1, 6)
    out = tmp_path / "lapse.mkv"
    report = deblur_video(src, out, backend=IdentityBackend(), fps=Fraction(1, 100), resume=resume)
    assert report.frames == 6 and report.warnings() == []
    with av.open(str(out)) as c:
        assert [round(f.time) for f in c.decode(video=0)] == [0, 100, 200, 300, 400, 500]


def test_a_video_into_a_png_sequence_numbered_from_1_at_16_bits_for_10_bit(tmp_path):
    src = tmp_path / "in.mp4"
    make_video(src, frames=5, pix_fmt="yuv420p10le", audio=True)
    out = tmp_path / "out" / "f_%04d.png"
    out.parent.mkdir()
    report = deblur_video(src, out, backend=IdentityBackend(uint16=True))
    assert numbers(out) == [1, 2, 3, 4, 5] and report.frames == 5
    assert report.warnings() == ["stream #1 audio aac (an image sequence holds pictures only) not copied"]
    assert report.verified[0] == "5 numbered images (a sequence keeps no timestamps)"
    with av.open(str(out.parent / "f_0001.png")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "rgb48be"
    assert sorted(p.name for p in out.parent.iterdir()) == [f"f_{n:04d}.png" for n in range(1, 6)]


def test_sequence_to_sequence_keeps_frame_numbers_and_pixels(tmp_path):
    src, frames = write_pngs(tmp_path / "in", 1001, 5)
    out = tmp_path / "out" / "d_%04d.png"
    out.parent.mkdir()
    deblur_video(src, out, backend=IdentityBackend(), start=0.08)   # 25 fps: from the third frame
    got = read_pngs(out)
    assert sorted(got) == [1003, 1004, 1005]
    assert all(np.array_equal(got[1001 + i], frames[i]) for i in range(2, 5))   # PNG to PNG: exact


def test_an_existing_sequence_needs_overwrite_which_replaces_all_of_it(tmp_path):
    src, _ = write_pngs(tmp_path / "in", 1, 3)
    out = tmp_path / "o_%03d.png"
    for n in range(1, 9):   # an older, longer sequence under the same name
        (tmp_path / f"o_{n:03d}.png").write_bytes(b"old")
    with pytest.raises(VdeblurError, match=r"8 file\(s\) of this sequence exist \(o_001.png, ...\); pass --overwrite"):
        deblur_video(src, out, backend=IdentityBackend())
    deblur_video(src, out, backend=IdentityBackend(), overwrite=True)
    assert numbers(out) == [1, 2, 3] and (tmp_path / "o_001.png").read_bytes() != b"old"


def test_a_failed_run_leaves_no_file_of_the_sequence(tmp_path):
    src, _ = write_pngs(tmp_path / "in", 0, 6)
    out = tmp_path / "out" / "f_%04d.tif"
    out.parent.mkdir()
    for exc in (KeyboardInterrupt, RuntimeError):
        with pytest.raises(exc):
            deblur_video(src, out, backend=Counting(fail_at=4, exc=exc))
        assert list(out.parent.iterdir()) == []   # neither frames nor the hidden folder they were written in


def test_an_output_sequence_resumes_and_ends_as_one_run_would(tmp_path):
    src = tmp_path / "in.mp4"
    make_video(src, frames=10)
    out = tmp_path / "out" / "f_%04d.png"
    out.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=Counting(fail_at=8), **SMALL)
    assert kept_frames(out) == 6 and numbers(out) == []   # kept aside, none under the final names
    second = Counting()
    report = deblur_video(src, out, backend=second, **SMALL)
    assert second.frames == 4 and report.frames == 10 and report.resumed_frames == 6
    assert report.verified[0] == "10 numbered images (a sequence keeps no timestamps)"
    whole = tmp_path / "whole" / "f_%04d.png"
    whole.parent.mkdir()
    deblur_video(src, whole, backend=IdentityBackend(), resume=False)
    assert sorted(p.name for p in out.parent.iterdir()) == [f"f_{n:04d}.png" for n in range(1, 11)]
    assert all((out.parent / name).read_bytes() == (whole.parent / name).read_bytes()
               for name in (f"f_{n:04d}.png" for n in range(1, 11)))


def test_a_sequence_input_resumes_into_a_video(tmp_path):
    src, _ = write_pngs(tmp_path / "in", 1, 10)
    out = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=Counting(fail_at=8), codec="ffv1", fps=Fraction(30), **SMALL)
    assert kept_frames(out) == 6
    second = Counting()
    report = deblur_video(src, out, backend=second, codec="ffv1", fps=Fraction(30), **SMALL)
    assert second.frames == 4 and report.frames == 10 and report.resumed_frames == 6
    deblur_video(src, tmp_path / "whole.mkv", backend=IdentityBackend(), codec="ffv1", fps=Fraction(30), resume=False)
    with av.open(str(out)) as a, av.open(str(tmp_path / "whole.mkv")) as b:
        fa, fb = list(a.decode(video=0)), list(b.decode(video=0))
        assert [f.pts for f in fa] == [f.pts for f in fb] and len(fa) == 10
        assert all(np.array_equal(x.to_ndarray(format="rgb24"), y.to_ndarray(format="rgb24")) for x, y in zip(fa, fb))


def test_a_changed_file_in_the_sequence_starts_the_run_over(tmp_path):
    src, _ = write_pngs(tmp_path / "in", 1, 10)
    out = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=Counting(fail_at=7), codec="ffv1", **SMALL)
    Image.fromarray(pattern(99, 48, 64)).save(tmp_path / "in" / "f_0003.png")   # a frame re-rendered
    notes = []
    second = Counting()
    deblur_video(src, out, backend=second, codec="ffv1", notify=notes.append, **SMALL)
    assert second.frames == 10 and any("starting over" in n or "dropped" in n for n in notes), notes


@pytest.mark.parametrize("args,message", [
    (["{d}/gap_%04d.png", "-o", "{d}/o.mp4"], "frame gap_0003.png is missing (1 to 2 exist, then 5 on)"),
    (["{d}/none_%04d.png", "-o", "{d}/o.mp4"], "none_%04d.png: no files of this sequence"),
    (["{d}/clip.mp4", "-o", "{d}/o.mp4", "--fps", "30"], "--fps is for an image sequence"),
    (["{d}/clip.mp4", "-o", "{d}/o_%04d.mkv"], "an image sequence is written as .dpx, .jpeg, .jpg, .png, .tif, .tiff"),
    # A file that happens to match the pattern (o50.mp4 for o%d.mp4) is not "a file of this sequence".
    (["{d}/clip.mp4", "-o", "{d}/gap_%04d.mp4"], "gap_%04d.mp4: an image sequence is written as"),
    (["{d}/clip.mp4", "-o", "{d}/o.png"], "or an image sequence ({d}/o_%04d.png) instead"),
])
def test_sequence_mistakes_are_one_line(tmp_path, capsys, args, message):
    for n in (1, 2, 5):
        Image.fromarray(pattern(n, 48, 64)).save(tmp_path / f"gap_{n:04d}.png")
    make_video(tmp_path / "clip.mp4", frames=3)
    (tmp_path / "gap_0050.mp4").write_bytes(b"")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["deblur", *[a.format(d=tmp_path) for a in args], "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vdeblur: error: ") and err.count("\n") == 1 and message.format(d=tmp_path) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_numbering_from_0_is_kept(tmp_path):
    src, _ = write_pngs(tmp_path / "in", 0, 3)
    out = tmp_path / "o_%02d.png"
    deblur_video(src, out, backend=IdentityBackend())
    assert numbers(out) == [0, 1, 2]


def test_openexr_linear_light_is_read_through_the_srgb_curve_and_said(tmp_path):
    """The model works on gamma-coded pictures: a linear ramp read raw would be far too dark."""
    if "exr" not in av.codecs_available:
        pytest.skip("this FFmpeg has no OpenEXR encoder")
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], (48, 1, 3))
    (tmp_path / "in").mkdir()
    for n in range(2):
        with av.open(str(tmp_path / "in" / f"e_{n:04d}.exr"), "w", format="image2") as c:
            s = c.add_stream("exr")
            s.width, s.height, s.pix_fmt = 64, 48, "gbrpf32le"
            c.mux(s.encode(av.VideoFrame.from_ndarray(ramp.copy(), format="rgbf32le").reformat(format="gbrpf32le")))
            c.mux(s.encode(None))
    notes = []
    out = tmp_path / "p_%04d.png"
    report = deblur_video(tmp_path / "in" / "e_%04d.exr", out, backend=IdentityBackend(uint16=True), notify=notes.append)
    assert any("OpenEXR, in linear light" in n for n in notes) and report.verify_problems == []
    with av.open(str(tmp_path / "p_0000.png")) as c:
        frame = next(c.decode(video=0))
        assert (frame.format.name, frame.color_trc) == ("rgb48be", 13)   # 16 bits, tagged sRGB (PNG's sRGB chunk)
        mid = frame.to_ndarray()[0, 32, 0] / 65535
    assert mid == pytest.approx(((32 / 63) ** (1 / 2.4)) * 1.055 - 0.055, abs=0.01)   # sRGB-coded, not linear 0.51


def test_skip_existing_knows_a_written_sequence(tmp_path, capsys):
    src, _ = write_pngs(tmp_path / "in", 1, 2)
    out = tmp_path / "o_%04d.png"
    (tmp_path / "o_0001.png").write_bytes(b"done earlier")
    assert main(["deblur", str(src), "-o", str(out), "--skip-existing", "-q"]) == 0
    assert f"{out} exists, skipped" in capsys.readouterr().err
    assert (tmp_path / "o_0001.png").read_bytes() == b"done earlier"


@pytest.mark.parametrize("names,expected", [
    ([f"f_{n:04d}.png" for n in range(1, 6)], "f_%04d.png"),
    ([f"f_{n}.png" for n in range(1, 120)], "f_%d.png"),
    ([f"sh010_{n}.dpx" for n in range(1001, 1004)] + ["notes.txt", "thumb_1.jpg"], "sh010_%04d.dpx"),
])
def test_a_folder_of_frames_is_answered_with_its_pattern(tmp_path, capsys, names, expected):
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert main(["deblur", str(tmp_path), "-o", str(tmp_path / "o.mp4")]) == 1
    assert f"numbered images; to read them as one video, give the sequence: {tmp_path / expected}" in capsys.readouterr().err


def test_a_space_padded_number_is_refused_not_written_nowhere(tmp_path, capsys):
    """-o 's/f_%4d.png' said "6 frames" and exit 0 with the folder empty: printf's %4d pads with
    spaces, the file finder wanted digits, so the written frames were dropped as strays."""
    src = tmp_path / "a.mp4"
    make_video(src, frames=3)
    (tmp_path / "s").mkdir()
    assert main(["deblur", str(src), "-o", str(tmp_path / "s" / "f_%4d.png"), "--no-verify", "-q"]) == 1
    assert capsys.readouterr().err == (f"vdeblur: error: {tmp_path / 's' / 'f_%4d.png'}: %4d is ambiguous (printf "
                                       "pads it with spaces, FFmpeg with zeros); write %04d for f_0007 or %d for f_7\n")
    for n in (1, 2):
        Image.fromarray(pattern(n, 48, 64)).save(tmp_path / "s" / f"f_000{n}.png")
    assert main(["deblur", str(tmp_path / "s" / "f_%4d.png"), "-o", str(tmp_path / "o.mp4"), "-q"]) == 1
    assert "%4d is ambiguous" in capsys.readouterr().err


def test_an_output_pattern_never_names_a_file_the_run_reads(tmp_path, capsys):
    """Only the pattern strings were compared: "f_%d" read and "f_%02d" written share f_10.png, and
    --overwrite, which the refusal itself suggested, replaced the input files."""
    for n in range(8, 12):
        Image.new("RGB", (32, 24), (n * 10, 0, 0)).save(tmp_path / f"f_{n}.png")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for src, dst in ((f"{tmp_path}/f_%d.png", f"{tmp_path}/f_%02d.png"),     # another pattern
                     (f"{tmp_path}/f_9.png", f"{tmp_path}/f_%d.png"),       # a photo into a pattern
                     (f"{tmp_path}/f_%d.png", f"{tmp_path}/f_10.png")):     # a sequence into one of its files
        assert main(["deblur", src, "-o", dst, "--overwrite", "--threads", "1", "-q"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the output would overwrite the input" in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("damaged", [2, 4])
def test_a_picture_of_a_sequence_that_does_not_decode_is_named(tmp_path, damaged):
    """Damaged in the middle, every later frame came out one number early (o_0002 held frame 3);
    damaged last, it was dropped without a word (the decoder's threads swallowed its error)."""
    rng = np.random.default_rng(0)
    for n in range(1, 5):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / f"f_{n:04d}.png")
    whole = (tmp_path / f"f_{damaged:04d}.png").read_bytes()
    (tmp_path / f"f_{damaged:04d}.png").write_bytes(whole[:100])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VdeblurError, match=f"f_{damaged:04d}.png: this picture of the sequence cannot be decoded"):
        deblur_video(f"{tmp_path}/f_%04d.png", out / "o_%04d.png", backend=IdentityBackend())
    assert list(out.iterdir()) == []


def test_a_sequence_whose_pictures_turn_differently_is_refused(tmp_path):
    """Every picture was turned as the first one: phone shots upright already came out sideways."""
    pixels = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for n, turn in ((1, 6), (2, 6), (3, 1)):
        im = Image.fromarray(pixels)
        tags = im.getexif()
        tags[0x0112] = turn
        im.save(tmp_path / f"p_{n:04d}.jpg", exif=tags.tobytes(), quality=95)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VdeblurError, match=r"p_0003.jpg: its EXIF orientation \(1\) differs from the first picture's "
                                           r"\(6, p_0001.jpg\)"):
        deblur_video(f"{tmp_path}/p_%04d.jpg", out / "o_%04d.png", backend=IdentityBackend())
    (tmp_path / "p_0003.jpg").unlink()
    report = deblur_video(f"{tmp_path}/p_%04d.jpg", out / "o_%04d.png", backend=IdentityBackend())
    assert report.frames == 2
    with Image.open(out / "o_0001.png") as im:
        assert im.size == (24, 32)   # turned upright, both alike


def test_transparency_that_starts_after_an_opaque_first_picture_is_said(tmp_path):
    """The output is set up from the first picture: alpha in a later one was dropped without a word."""
    Image.new("RGB", (32, 24), (10, 20, 30)).save(tmp_path / "f_0001.png")
    Image.new("RGBA", (32, 24), (10, 20, 30, 100)).save(tmp_path / "f_0002.png")
    out = tmp_path / "out"
    out.mkdir()
    report = deblur_video(f"{tmp_path}/f_%04d.png", out / "o_%04d.png", backend=IdentityBackend())
    assert report.frames == 2 and any("transparency (alpha) of 1 frame(s) is not kept: the first frame has none"
                                      in w for w in report.warnings())


def test_a_sequence_of_pictures_in_other_sizes_says_how_to_keep_each_size(tmp_path):
    Image.new("RGB", (32, 24), (10, 20, 30)).save(tmp_path / "f_0001.png")
    Image.new("RGB", (24, 32), (10, 20, 30)).save(tmp_path / "f_0002.png")
    out = tmp_path / "out"
    out.mkdir()
    report = deblur_video(f"{tmp_path}/f_%04d.png", out / "o_%04d.png", backend=IdentityBackend())
    assert any(w.endswith("give the pictures as separate INPUTs to keep each one's size") for w in report.warnings())
