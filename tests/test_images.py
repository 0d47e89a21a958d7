"""Photos in and out, and RGB sources: the colour tags must say what the pixels are."""

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from media import IdentityBackend, make_video
from vdeblur.cli import main
from vdeblur.pipeline import deblur_video
from vdeblur.video import READ_INTERPOLATION, _unsited


def gradient(h=120, w=160):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 / w, y * 255 / h, (x + y) * 255 / (w + h)], -1).astype(np.uint8)


def first_frame(path):
    with av.open(str(path)) as c:
        return next(c.decode(video=0))


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(gradient()).save(path)
    return path


@pytest.mark.parametrize("suffix,kind,tags,worst", [
    (".png", "png", None, 0), (".tif", "tiff", None, 0),
    (".jpg", "mjpeg", (2, 5), 2.0),   # JFIF: BT.601, full range
    (".webp", "webp", (1, 5), 2.0),   # lossy WebP is VP8: BT.601, limited range
    (".mp4", "h264", (1, 1), 3.0),    # an RGB source as YUV video: BT.709, limited
    (".mkv", "ffv1", (2, 0), 0),   # given as --codec: lossless, and RGB as its source (bgr0)
])
def test_a_photo_comes_out_as_the_format_its_name_says_with_true_colours(photo, tmp_path, suffix, kind, tags, worst):
    out = tmp_path / f"out{suffix}"
    report = deblur_video(photo, out, backend=IdentityBackend(), codec="ffv1" if kind == "ffv1" else None)
    assert report.frames == 1 and not report.verify_problems
    frame = first_frame(out)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == kind
    if tags:
        assert (int(frame.color_range), int(frame.colorspace)) == tags
    assert np.abs(frame.to_ndarray(format="rgb24").astype(int) - gradient()).mean() <= worst


def test_rgb_video_written_as_444_yuv_is_not_read_as_gbr(tmp_path):
    """Copying an RGB source's matrix tag (0, GBR) onto YUV output made x264 write planes that
    decoders show as G, B, R: colours wrong by 39 levels on average. Now they are BT.709."""
    src = tmp_path / "rgb.mkv"
    make_video(src, width=96, height=64, frames=3, codec="ffv1", pix_fmt="bgr0", untagged=True,
               options={"threads": "1"})
    out = tmp_path / "out.mp4"
    report = deblur_video(src, out, backend=IdentityBackend(), pix_fmt="yuv444p", crf=0)
    assert not report.verify_problems
    with av.open(str(src)) as a, av.open(str(out)) as b:
        for x, y in zip(a.decode(video=0), b.decode(video=0), strict=True):
            assert int(y.colorspace) == 1
            assert np.abs(x.to_ndarray(format="rgb24").astype(int) - y.to_ndarray(format="rgb24").astype(int)).mean() < 1.0


@pytest.mark.parametrize("suffix", [".tif", ".png", ".dpx"])
def test_a_bmp_becomes_an_rgb_image_file(tmp_path, suffix):
    # BMP decodes as BGR, which the TIFF, PNG and DPX encoders lack: it was written as YCbCr 4:2:0 TIFF.
    src = tmp_path / "scan.bmp"
    Image.fromarray(gradient()).save(src)
    out = tmp_path / f"out{suffix}"
    report = deblur_video(src, out, backend=IdentityBackend())
    assert not report.verify_problems
    frame = first_frame(out)
    assert av.VideoFormat(frame.format.name).is_rgb
    assert np.array_equal(frame.to_ndarray(format="rgb24"), gradient())


def test_16_bit_png_stays_16_bit(tmp_path):
    wide = (np.random.default_rng(0).random((40, 60, 3)) * 65535).astype(np.uint16)
    src = tmp_path / "wide.png"
    with av.open(str(src), "w") as c:
        s = c.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = 60, 40, "rgb48be"
        f = av.VideoFrame.from_ndarray(wide, format="rgb48le").reformat(format="rgb48be")
        f.pts = 0
        c.mux(s.encode(f))
        c.mux(s.encode())
    out = tmp_path / "out.png"
    deblur_video(src, out, backend=IdentityBackend(uint16=True))
    assert np.array_equal(first_frame(out).to_ndarray(format="rgb48le"), wide)


def _grey_png(path, deep: bool) -> np.ndarray:
    rng = np.random.default_rng(1)
    grey = (rng.random((40, 60)) * (65535 if deep else 255)).astype(np.uint16 if deep else np.uint8)
    Image.fromarray(grey).save(path)
    return grey


@pytest.mark.parametrize("deep", [False, True], ids=["8-bit", "16-bit"])
@pytest.mark.parametrize("suffix,codec", [(".png", None), (".tif", None), (".mkv", "ffv1")])
def test_a_grey_picture_stays_grey_and_exact_without_false_warnings(tmp_path, deep, suffix, codec):
    """Grey scans and scientific frames: 16-bit grey went through swscale's RGB48-to-grey (off by up to
    163 of 65535) and into TIFF and FFV1 as RGB or 10-bit 4:2:0 (their grey is little-endian, a PNG's
    big-endian); the read-back called a grey PNG's range and matrix changed."""
    src, out = tmp_path / "grey.png", tmp_path / f"out{suffix}"
    grey = _grey_png(src, deep)
    report = deblur_video(src, out, backend=IdentityBackend(uint16=deep), codec=codec)
    assert report.warnings() == []
    frame = first_frame(out)
    assert frame.format.name in (("gray16le", "gray16be") if deep else ("gray",))
    assert np.array_equal(frame.to_ndarray().astype(np.uint16), grey.astype(np.uint16))


class Tinting(IdentityBackend):
    """A model whose output has a faint colour cast, as a real one's has on grey input."""

    def run(self, frames):
        out = super().run(frames)
        top = np.iinfo(out.dtype).max
        out[..., 0] = np.minimum(out[..., 0].astype(np.int64) + top // 8, top).astype(out.dtype)
        return out


@pytest.mark.parametrize("deep", [False, True], ids=["8-bit", "16-bit"])
@pytest.mark.parametrize("suffix", [".jpg", ".mp4"])
def test_a_grey_picture_stays_grey_in_a_colour_format(tmp_path, deep, suffix):
    """JPEG and H.264 have no grey format here: the model's tints came out as colour in a grey scan."""
    src, out = tmp_path / "grey.png", tmp_path / f"out{suffix}"
    _grey_png(src, deep)
    report = deblur_video(src, out, backend=Tinting(uint16=deep))
    assert report.warnings() == []
    chroma = first_frame(out).to_ndarray(format="yuv444p")[1:].astype(int) - 128
    assert np.abs(chroma).max() <= 1   # lossy coding's rounding; the cast would be 15 in V


def test_a_grey_jpeg_into_png_reads_back_without_false_warnings(tmp_path):
    """A grey JPEG says no range (and BT.601); a grey PNG full range: grey has neither a matrix nor video range."""
    src, out = tmp_path / "grey.jpg", tmp_path / "out.png"
    Image.fromarray(np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))).save(src)
    report = deblur_video(src, out, backend=IdentityBackend())
    assert report.warnings() == [] and report.verified[-1] == "size, rotation, aspect ratio and colour tags"


def test_colour_written_as_grey_is_its_bt601_luma(photo, tmp_path):
    out = tmp_path / "grey.png"
    deblur_video(photo, out, backend=IdentityBackend(), pix_fmt="gray")
    expected = np.asarray(Image.open(photo).convert("L")).astype(int)   # ITU-R 601-2 luma
    assert np.abs(first_frame(out).to_ndarray().astype(int) - expected).max() <= 1


def test_tiff_keeps_no_colour_tags_and_the_read_back_does_not_blame_the_writer(tmp_path):
    src = tmp_path / "bt709.mp4"
    make_video(src, frames=2, bt709=True)
    (tmp_path / "frames").mkdir()
    report = deblur_video(src, tmp_path / "frames" / "%03d.tif", backend=IdentityBackend())
    assert report.warnings() == []   # was "primaries 1 -> 2, transfer 1 -> 2"
    assert "size, rotation and aspect ratio (TIFF keeps no colour tags)" in report.verified
    report = deblur_video(src, tmp_path / "frames" / "%03d.jpg", backend=IdentityBackend())
    assert report.warnings() == []   # JPEG (JFIF) says BT.601 in full range, and nothing of primaries or transfer
    assert "size, rotation, aspect ratio, colour range and matrix (JPEG keeps no primaries or transfer)" in report.verified


def test_a_palette_png_s_transparent_entries_are_kept(tmp_path):
    """A palette PNG's tRNS chunk makes some colours transparent (web graphics, icons): the pixels came
    out opaque, with no warning, as pal8 has no alpha plane of its own."""
    colours = np.random.default_rng(2).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    src = tmp_path / "icon.png"
    Image.fromarray(colours).quantize(16).save(src, transparency=0)
    source = first_frame(src)
    assert source.format.name == "pal8"
    expected = source.to_ndarray(format="rgba")
    assert expected[..., 3].min() == 0 and expected[..., 3].max() == 255
    report = deblur_video(src, tmp_path / "out.png", backend=IdentityBackend())
    assert report.warnings() == []
    assert np.array_equal(first_frame(tmp_path / "out.png").to_ndarray(format="rgba"), expected)
    notes = []
    deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), notify=notes.append)
    assert any("transparency (alpha) is not kept" in line for line in notes)   # said before the first frame


@pytest.mark.parametrize("deep", [False, True], ids=["8-bit", "16-bit"])
def test_grey_with_alpha_keeps_both_exactly(tmp_path, deep):
    """swscale's RGBA-to-ya8 moved alpha by 1; 16-bit grey + alpha went through its imprecise grey path."""
    from vdeblur.video import _packed_frame

    values = np.random.default_rng(3).random((40, 60, 2)) * (65535 if deep else 255)
    packed = values.astype(np.uint16 if deep else np.uint8)
    src = tmp_path / "la.png"
    with av.open(str(src), "w") as c:
        s = c.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = 60, 40, "ya16be" if deep else "ya8"
        f = _packed_frame(packed, "ya16le" if deep else "ya8").reformat(format=s.pix_fmt)
        f.pts = 0
        c.mux(s.encode(f))
        c.mux(s.encode())
    out = tmp_path / "out.png"
    report = deblur_video(src, out, backend=IdentityBackend(uint16=deep))
    assert report.warnings() == []
    rgba = "rgba64le" if deep else "rgba"
    assert first_frame(out).format.name == s.pix_fmt
    assert np.array_equal(first_frame(out).to_ndarray(format=rgba), first_frame(src).to_ndarray(format=rgba))
    assert np.array_equal(first_frame(src).to_ndarray(format=rgba)[..., 3], packed[..., 1])


def test_a_picture_its_decoder_refuses_is_named_as_such_not_as_truncated(tmp_path, capsys):
    src = tmp_path / "float.tif"
    Image.fromarray(np.random.default_rng(4).random((40, 60)).astype(np.float32)).save(src)
    assert main(["deblur", str(src), "-o", str(tmp_path / "out.png")]) == 1
    assert capsys.readouterr().err == (f"vdeblur: error: {src}: FFmpeg's tiff decoder cannot read this picture: a kind "
                                       f"it does not support (such as floating-point samples) or a damaged file; save "
                                       f"it as 8- or 16-bit PNG or TIFF\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.tif"]


#: PIL's reading of each EXIF orientation: how the stored pixels are shown.
EXIF_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


@pytest.mark.parametrize("exif", range(1, 9))
def test_a_phone_photo_comes_out_the_way_its_exif_orientation_shows_it(tmp_path, exif):
    """A portrait phone photo is stored sideways with EXIF orientation 6. PyAV 18 failed to read any of
    the frame's side data beside the EXIF block, so the orientation was lost: the output lay on its
    side. Image files keep no orientation here, so the pixels are turned upright, as PIL shows them."""
    src = tmp_path / "phone.jpg"
    im = Image.fromarray(gradient(40, 60))
    tags = im.getexif()
    tags[0x0112] = exif
    im.save(src, exif=tags.tobytes(), quality=98, subsampling=0)
    stored = first_frame(src).to_ndarray(format="rgb24")
    shown = np.asarray(Image.fromarray(stored).transpose(EXIF_TURNS[exif])) if exif in EXIF_TURNS else stored
    for out, codec in ((tmp_path / "out.png", None), (tmp_path / "out.mkv", "ffv1")):
        report = deblur_video(src, out, backend=IdentityBackend(), codec=codec, pix_fmt="bgr0" if codec else None)
        assert report.warnings() == [], out   # the read-back expects it upright, not turned
        frame = first_frame(out)
        assert frame.rotation == 0 and np.array_equal(frame.to_ndarray(format="rgb24"), shown), out


def test_a_video_keeps_its_rotation_as_a_tag_not_turned_pixels(tmp_path):
    src = tmp_path / "portrait.mp4"
    make_video(src, frames=2, rotation=90, width=64, height=48)
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend())
    assert report.warnings() == []
    frame = first_frame(tmp_path / "out.mp4")
    assert frame.rotation == 90 and (frame.width, frame.height) == (64, 48)


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("name", ["still.png", "frames/%02d.png"])
def test_a_rotated_video_written_as_image_files_is_turned_upright(tmp_path, rotation, name):
    """Image files keep no rotation, so a phone's portrait video comes out as a player shows it (it lay on its side)."""
    src, out = tmp_path / "portrait.mp4", tmp_path / name
    out.parent.mkdir(exist_ok=True)
    make_video(src, frames=1, rotation=rotation, width=64, height=48)
    source = first_frame(src)
    as_read = _unsited(source).to_ndarray(format="rgb24", interpolation=READ_INTERPOLATION)   # vdeblur's reading
    shown = np.rot90(as_read, k=source.rotation // 90)   # rotation: degrees anticlockwise
    report = deblur_video(src, out, backend=IdentityBackend())
    assert report.warnings() == []   # the read-back expects it upright
    frame = first_frame(out if name == "still.png" else tmp_path / "frames" / "01.png")
    assert frame.rotation == 0 and np.array_equal(frame.to_ndarray(format="rgb24"), shown)


def test_a_png_with_an_icc_profile_does_not_crash_the_process(tmp_path):
    """Screenshots and exported photos carry an ICC profile, which FFmpeg's PNG decoder names in
    metadata PyAV 18 frees twice: `vdeblur deblur` died with a segmentation fault. Run in a child
    process, since that would take pytest down too."""
    from PIL import ImageCms

    src = tmp_path / "screenshot.png"
    Image.fromarray(gradient(40, 60)).save(src, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from media import IdentityBackend; "
            "from vdeblur.pipeline import deblur_video; import gc; "
            "[deblur_video(sys.argv[2], f'{sys.argv[3]}.{k}.png', backend=IdentityBackend()) for k in range(3)]; gc.collect()")
    run = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(src), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert np.array_equal(first_frame(tmp_path / "out.2.png").to_ndarray(format="rgb24"), gradient(40, 60))


def test_tiff_input_with_side_data_pyav_does_not_know(photo, tmp_path):
    tif = tmp_path / "in.tif"
    deblur_video(photo, tif, backend=IdentityBackend())
    report = deblur_video(tif, tmp_path / "out.png", backend=IdentityBackend())
    assert report.frames == 1 and not report.verify_problems


def test_a_video_into_one_image_is_one_line_naming_the_output(tmp_path, capsys):
    src = tmp_path / "in.mp4"
    make_video(src, frames=5)
    out = tmp_path / "out.png"
    assert main(["deblur", str(src), "-o", str(out), "-q"]) == 1
    assert capsys.readouterr().err == (f"vdeblur: error: {out}: an image holds one picture, but the input has about 5 "
                                       f"frames; write a video (.mp4, .mkv) or an image sequence "
                                       f"({tmp_path / 'out_%04d.png'}) instead\n")
    ts = tmp_path / "out.ts"   # written in one pass under a temporary name: messages still name OUTPUT
    assert main(["deblur", str(src), "-o", str(ts), "--codec", "libsvtav1", "--preset", "99"]) == 1
    assert capsys.readouterr().err.startswith(f"vdeblur: error: {ts}: cannot start writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def rgba_png(path, h=48, w=64):
    rgba = np.dstack([gradient(h, w), np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))])
    Image.fromarray(rgba, "RGBA").save(path)
    return rgba


class Invert(IdentityBackend):
    def run(self, frames):
        return 255 - frames


def test_transparency_is_kept_where_the_output_can_hold_it(tmp_path):
    src = tmp_path / "logo.png"
    rgba = rgba_png(src)
    out = tmp_path / "out.png"
    notes = []
    deblur_video(src, out, backend=Invert(), notify=notes.append)   # the model changes colour, never alpha
    got = np.asarray(Image.open(out))
    assert notes == [] and got.shape == (48, 64, 4)
    assert np.array_equal(got[..., 3], rgba[..., 3]) and np.array_equal(got[..., :3], 255 - rgba[..., :3])
    mkv = tmp_path / "out.mkv"   # FFV1 in yuva420p, lossless
    deblur_video(src, mkv, backend=IdentityBackend(), codec="ffv1", pix_fmt="yuva420p")
    plane = first_frame(mkv).planes[3]   # swscale's RGBA to YUVA moved half the values by 1: written as read
    alpha = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
    assert np.array_equal(alpha, rgba[..., 3])


def test_rgba_into_ffv1_stays_rgba_not_subsampled_yuv(tmp_path):
    """FFV1 lists yuva420p first among its formats with alpha: 8-bit RGBA went there, chroma halved."""
    src, mkv = tmp_path / "logo.png", tmp_path / "out.mkv"
    rgba = rgba_png(src)
    deblur_video(src, mkv, backend=IdentityBackend(), codec="ffv1")
    frame = first_frame(mkv)
    assert frame.format.name == "bgra"
    assert np.array_equal(frame.to_ndarray(format="rgba"), rgba)   # lossless, colour and alpha


def test_transparency_an_output_cannot_hold_is_said(tmp_path):
    src = tmp_path / "logo.png"
    rgba_png(src)
    notes = []
    deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), notify=notes.append)
    assert notes == ["the source's transparency (alpha) is not kept: yuv420p has none; ProRes 4444 (.mov, "
                     "--codec prores_ks), FFV1 (.mkv) and PNG keep it"]


def test_prores_4444_keeps_transparency_from_a_png(tmp_path):
    src = tmp_path / "logo.png"
    rgba = rgba_png(src)
    out = tmp_path / "out.mov"
    deblur_video(src, out, backend=IdentityBackend(), codec="prores_ks")
    frame = first_frame(out)
    assert frame.format.name.startswith("yuva444p")   # written 10-bit; the decoder gives 12
    assert np.abs(frame.to_ndarray(format="rgba")[..., 3].astype(int) - rgba[..., 3]).max() <= 1   # 8 -> 10 -> 12 -> 8 bits


def write_rgba_video(path, alphas, size=(64, 48)):
    """FFV1 yuva420p frames of a colour ramp under the given alpha planes (one per frame)."""
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuva420p"
        for i, alpha in enumerate(alphas):
            rgba = np.dstack([gradient(height, width), np.full((height, width), alpha, np.uint8)])
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format="yuva420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def test_an_opaque_start_defers_the_transparency_warning_to_the_frames_that_had_it(tmp_path):
    """A GIF's decoder always gives an alpha plane, mostly fully opaque: warning on the format alone
    cried wolf on every GIF. Only frames with a pixel that is not opaque count."""
    opaque, late = tmp_path / "opaque.mkv", tmp_path / "late.mkv"
    write_rgba_video(opaque, [255, 255, 255])
    write_rgba_video(late, [255, 255, 128])
    for src, expected in ((opaque, None), (late, 1)):
        notes = []
        report = deblur_video(src, tmp_path / f"{src.stem}.mp4", backend=IdentityBackend(), notify=notes.append)
        assert notes == []
        lost = [w for w in report.warnings() if "transparency" in w]
        assert lost == ([] if expected is None else [
            "the source's transparency (alpha) of 1 frame is not kept: yuv420p has none; ProRes 4444 (.mov, "
            "--codec prores_ks), FFV1 (.mkv) and PNG keep it"])


def test_an_animated_gif_comes_out_as_video_without_false_warnings(tmp_path):
    src = tmp_path / "anim.gif"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb8"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.roll(gradient(48, 64), 8 * i, axis=1), format="rgb24")
            frame = frame.reformat(format="rgb8")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    notes = []
    report = deblur_video(src, tmp_path / "anim.mp4", backend=IdentityBackend(), notify=notes.append)
    assert report.frames == 3 and notes == [] and report.warnings() == []
    with pytest.raises(Exception, match="does not write GIF"):
        deblur_video(src, tmp_path / "again.gif", backend=IdentityBackend())
    assert not (tmp_path / "again.gif").exists()


@pytest.mark.parametrize("pix_fmt,needs", [("yuv420p", "an even width and height"), ("yuv422p", "an even width")])
def test_an_odd_size_in_subsampled_chroma_is_explained(tmp_path, pix_fmt, needs):
    """x264 refuses 65x49 in 4:2:0 with "Generic error in an external library"; say why and what works."""
    src = tmp_path / "odd.mkv"
    make_video(src, width=65, height=49, frames=2, codec="ffv1", pix_fmt="yuv444p", options={"threads": "1"})
    with pytest.raises(Exception, match=f"libx264 cannot write {pix_fmt} at 65x49 .*needs {needs}\\); use --pix-fmt yuv444p"):
        deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), pix_fmt=pix_fmt)
    report = deblur_video(src, tmp_path / "out444.mp4", backend=IdentityBackend())   # the source's 4:4:4 is fine
    assert report.frames == 2 and not report.verify_problems


def test_a_one_pixel_side_in_subsampled_chroma_is_explained_too(tmp_path):
    """A side of 1 has a chroma side of 1 too, so the check took it for unsubsampled: x264's vague error."""
    src = tmp_path / "thin.mkv"
    make_video(src, width=1, height=8, frames=1, codec="ffv1", pix_fmt="yuv444p", options={"slices": "1", "threads": "1"})
    with pytest.raises(Exception, match=r"libx264 cannot write yuv420p at 1x8 .*needs an even width\)"):
        deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), pix_fmt="yuv420p")


def test_grey_video_becomes_420_that_players_take_with_its_tags(tmp_path):
    """Grey (4:0:0) H.264 plays in few players and x264 drops its colour tags: 4:2:0 instead."""
    src = tmp_path / "grey.mkv"
    make_video(src, frames=2, codec="ffv1", pix_fmt="gray", options={"threads": "1"})
    out = tmp_path / "out.mp4"
    report = deblur_video(src, out, backend=IdentityBackend())
    assert not report.verify_problems
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.pix_fmt, int(cc.color_range), int(cc.colorspace)) == ("yuv420p", 1, 6)
    deblur_video(src, tmp_path / "lossless.mkv", backend=IdentityBackend(), codec="ffv1")   # archival keeps grey
    with av.open(str(tmp_path / "lossless.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "gray"


@pytest.mark.parametrize("suffix,expected", [(".tif", "rgb24"), (".dpx", "rgb24"), (".png", "rgb24")])
def test_a_jpeg_written_as_an_image_file_is_rgb_not_ycbcr(tmp_path, suffix, expected):
    """TIFF takes YCbCr 4:2:0 too, and a JPEG photo came out so: few programs open that TIFF.
    DPX's first listed format is grey."""
    src = tmp_path / "in.jpg"
    Image.fromarray(gradient()).save(src, quality=95)
    out = tmp_path / f"out{suffix}"
    report = deblur_video(src, out, backend=IdentityBackend())
    assert report.verify_problems == []
    assert first_frame(out).format.name == expected


def test_an_animated_webp_is_named_not_called_corrupt(tmp_path):
    from vdeblur import VdeblurError

    src = tmp_path / "anim.webp"
    frames = [Image.fromarray(np.roll(gradient(48, 64), 4 * i, axis=1)) for i in range(3)]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=40)
    with pytest.raises(VdeblurError, match="an animated WebP, which this FFmpeg cannot decode"):
        deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend())
