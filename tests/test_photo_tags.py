"""A photo's ICC colour profile and EXIF tags reach the PNG or JPEG made from it."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from media import IdentityBackend
from vdeblur.photo_tags import embed
from vdeblur.pipeline import deblur_video


def _profile(size: int) -> bytes:
    """Stand-in profile bytes: an RGB profile's header field at 16 (what vdeblur reads), random after it."""
    return b"stand-in profile" + b"RGB " + bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))


@pytest.fixture()
def photo(tmp_path):
    pixels = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, icc_profile=_profile(3000), quality=95)
    return path


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_the_profile_is_written_into_a_single_picture_and_read_back(photo, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    report = deblur_video(photo, out, backend=IdentityBackend())
    assert report.warnings() == []
    assert "ICC colour profile (3020 bytes)" in report.verified
    with Image.open(out) as im:
        assert im.info["icc_profile"] == _profile(3000)
        im.load()   # the file is still a valid picture


def test_outputs_that_cannot_keep_a_profile_say_so_before_the_first_frame(photo, tmp_path):
    notes = []
    deblur_video(photo, tmp_path / "out.avi", backend=IdentityBackend(), notify=notes.append)
    assert notes == ["the source's ICC colour profile is not written into .avi output, so colour-managed viewers "
                     "take its colours for sRGB; a single .png, .jpg, .webp or .tif keeps it"]


def test_an_srgb_profile_is_dropped_without_a_word(tmp_path):
    src = tmp_path / "srgb.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src, icc_profile=b"stand-in sRGB IEC61966-2.1 profile")
    notes = []
    deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), notify=notes.append)
    assert notes == []


def test_a_profile_larger_than_one_jpeg_segment_is_split(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path, quality=90)
    profile = _profile(150_000)   # three APP2 segments of at most 65,519 bytes
    embed(path, icc=profile)
    with Image.open(path) as im:
        assert im.info["icc_profile"] == profile
        im.load()


def test_png_keeps_its_chunks_and_loses_a_contradicting_srgb_chunk(tmp_path):
    path = tmp_path / "tagged.png"
    Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(path)
    data = path.read_bytes()
    srgb = struct.pack(">I", 1) + b"sRGB\x00" + struct.pack(">I", zlib.crc32(b"sRGB\x00"))   # rendering intent 0
    path.write_bytes(data[:33] + srgb + data[33:])   # after IHDR (8 + 25 bytes)
    with Image.open(path) as im:
        assert "srgb" in im.info
    embed(path, icc=_profile(100))
    with Image.open(path) as im:
        assert im.info["icc_profile"] == _profile(100) and "srgb" not in im.info
        assert np.asarray(im).max() == 7


def test_a_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "not.png"
    path.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG file"):
        embed(path, icc=b"profile")


def _phone_shot(path, orientation=6):
    pixels = (np.random.default_rng(1).random((40, 60, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(pixels)
    tags = im.getexif()
    tags[0x0112], tags[0x010F], tags[0x0110], tags[0x0132] = orientation, "Apple", "iPhone 15", "2026:12:03 08:00:00"
    im.save(path, exif=tags.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_exif_tags_reach_the_picture_without_turning_it_again(tmp_path, suffix):
    """Camera, model and time taken are kept; the orientation is not, since the pixels were turned upright."""
    src = _phone_shot(tmp_path / "phone.jpg")
    out = tmp_path / f"out{suffix}"
    report = deblur_video(src, out, backend=IdentityBackend())
    assert report.warnings() == []
    with Image.open(out) as im:
        tags = im.getexif()
        assert (tags.get(0x010F), tags.get(0x0110), tags.get(0x0132)) == ("Apple", "iPhone 15", "2026:12:03 08:00:00")
        assert tags.get(0x0112) in (None, 1) and im.size == (40, 60)   # upright: portrait, and nothing turns it back


def test_a_tiff_s_own_structure_is_not_taken_for_exif(tmp_path):
    src = tmp_path / "scan.tif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    out = tmp_path / "out.jpg"
    deblur_video(src, out, backend=IdentityBackend())
    with Image.open(out) as im:
        assert dict(im.getexif()) == {}


def test_exif_and_profile_together_in_both_formats(tmp_path):
    for suffix in (".jpg", ".png", ".webp"):
        path = tmp_path / f"both{suffix}"
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
        tags = Image.Exif()
        tags[0x010F] = "Canon"
        embed(path, icc=_profile(500), exif=tags.tobytes().removeprefix(b"Exif\x00\x00"))   # as FFmpeg gives it
        with Image.open(path) as im:
            assert im.info["icc_profile"] == _profile(500) and im.getexif().get(0x010F) == "Canon"
            im.load()


def test_a_palette_png_s_profile_and_orientation_are_read_too(tmp_path):
    """swscale writes no palette, so the 2x2 copy side data is read from failed for pal8: a palette PNG's
    profile and orientation were lost."""
    src = tmp_path / "icon.png"
    im = Image.fromarray((np.random.default_rng(2).random((40, 60, 3)) * 255).astype(np.uint8)).quantize(16)
    tags = im.getexif()
    tags[0x0112] = 6
    im.save(src, icc_profile=_profile(200), exif=tags.tobytes())
    out = tmp_path / "out.png"
    report = deblur_video(src, out, backend=IdentityBackend())
    assert report.warnings() == []
    with Image.open(out) as shown:
        assert shown.info["icc_profile"] == _profile(200) and shown.size == (40, 60)


@pytest.mark.parametrize("lossless, alpha", [(False, False), (True, False), (True, True), (False, True)])
def test_webp_gets_an_extended_header_and_keeps_its_picture(tmp_path, lossless, alpha):
    """A simple WebP (one VP8 or VP8L chunk) gets the VP8X header that flags the profile and the tags;
    one with alpha has that header already. The picture itself is untouched."""
    pixels = (np.random.default_rng(3).random((30, 50, 4 if alpha else 3)) * 255).astype(np.uint8)
    path = tmp_path / "pic.webp"
    Image.fromarray(pixels).save(path, lossless=lossless, quality=90)
    with Image.open(path) as im:
        before = np.asarray(im.convert("RGBA"))
    tags = Image.Exif()
    tags[0x010F] = "Pixel"
    embed(path, icc=_profile(333), exif=tags.tobytes().removeprefix(b"Exif\x00\x00"))   # an odd size: padded
    data = path.read_bytes()
    assert data[12:16] == b"VP8X" and data[20] & 0x28 == 0x28 and bool(data[20] & 0x10) == alpha
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    with Image.open(path) as im:
        assert im.info["icc_profile"] == _profile(333) and im.getexif().get(0x010F) == "Pixel"
        assert im.size == (50, 30) and np.array_equal(np.asarray(im.convert("RGBA")), before)


def test_tiff_gets_the_profile_tag_and_keeps_its_other_tags_and_picture(tmp_path):
    pixels = (np.random.default_rng(4).random((20, 30)) * 65535).astype(np.uint16)
    path = tmp_path / "scan.tif"
    Image.fromarray(pixels).save(path, tiffinfo={270: "a scanned print"})   # 16-bit grey, a description
    with Image.open(path) as im:
        before = np.asarray(im)
    embed(path, icc=_profile(301))   # odd: padded
    with Image.open(path) as im:
        assert im.info["icc_profile"] == _profile(301)
        assert im.tag_v2[270] == "a scanned print" and np.array_equal(np.asarray(im), before)


def test_a_profile_for_other_colours_than_the_picture_is_left_out_and_said(tmp_path):
    """A CMYK JPEG's profile went into the RGB picture made from it (and a grey one into RGB JPEG):
    a colour-managed viewer then reads the RGB values through a CMYK or grey profile."""
    cmyk = b"stand-in profile" + b"CMYK" + bytes(200)
    src = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 12), (0, 80, 160, 10)).save(src, icc_profile=cmyk, quality=95)
    notes = []
    deblur_video(src, tmp_path / "out.png", backend=IdentityBackend(), notify=notes.append)
    assert notes == ["the source's ICC colour profile is for CMYK colour, not the RGB picture written: left out "
                     "(viewers take the colours for sRGB)"]
    with Image.open(tmp_path / "out.png") as im:
        assert "icc_profile" not in im.info
    gray = b"stand-in profile" + b"GRAY" + bytes(200)
    grey_src = tmp_path / "scan.png"
    Image.new("L", (16, 12), 90).save(grey_src, icc_profile=gray)
    deblur_video(grey_src, tmp_path / "grey.png", backend=IdentityBackend())   # grey stays grey: kept
    with Image.open(tmp_path / "grey.png") as im:
        assert im.mode == "L" and im.info["icc_profile"] == gray


def test_what_a_jpeg_cannot_hold_is_left_out_with_a_line_not_a_traceback(tmp_path):
    from vdeblur.photo_tags import what_fits

    huge = _profile(17 * 2**20)
    icc, exif, notes = what_fits(".jpg", False, huge, b"II*\x00" + bytes(70_000))
    assert icc is None and exif is None and len(notes) == 2
    assert "larger than a JPEG holds" in notes[0] and "larger than a JPEG's 64 KiB segment" in notes[1]
    assert what_fits(".png", False, huge, b"II*\x00")[:2] == (huge, b"II*\x00")
    assert what_fits(".tif", False, huge, b"II*\x00")[1] is None   # TIFF: the profile only, and said


def test_png_drops_ffmpeg_s_colour_chunks_beside_a_profile(tmp_path):
    """cICP overrides iCCP in readers of PNG's third edition: the profile was written and then ignored."""
    src = tmp_path / "wide.png"
    Image.fromarray((np.random.default_rng(2).random((12, 16, 3)) * 255).astype(np.uint8)).save(
        src, icc_profile=_profile(500))
    data = src.read_bytes()
    body = b"gAMA" + struct.pack(">I", 45455)   # 1/2.2, as a photo editor writes beside its profile
    gama = struct.pack(">I", 4) + body + struct.pack(">I", zlib.crc32(body))
    src.write_bytes(data[:33] + gama + data[33:])   # after IHDR: FFmpeg turns it into colour tags
    deblur_video(src, tmp_path / "out.png", backend=IdentityBackend())
    data, at, kinds = (tmp_path / "out.png").read_bytes(), 8, []
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        kinds.append(kind)
        at += 12 + length
    assert b"iCCP" in kinds and not {b"cICP", b"gAMA", b"cHRM", b"sRGB"} & set(kinds)


def test_exif_an_output_cannot_hold_is_said(tmp_path):
    notes = []
    deblur_video(_phone_shot(tmp_path / "shot.jpg"), tmp_path / "out.tif", backend=IdentityBackend(), notify=notes.append)
    assert notes == ["the source's EXIF tags (camera, time taken) are not written into .tif output; a single .jpg, "
                     ".png or .webp keeps them"]


def test_an_srgb_profile_in_a_grey_picture_goes_without_a_word(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "grey.png"
    Image.new("L", (16, 12), 90).save(src, icc_profile=srgb)
    notes = []
    deblur_video(src, tmp_path / "out.png", backend=IdentityBackend(), notify=notes.append)
    assert notes == []
    with Image.open(tmp_path / "out.png") as im:
        assert "icc_profile" not in im.info   # an RGB profile in a grey PNG is against the PNG specification
