"""A photo's ICC colour profile reaches the PNG or JPEG made from it."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from media import IdentityBackend
from vdeblur.icc import embed
from vdeblur.pipeline import deblur_video


def _profile(size: int) -> bytes:
    """Stand-in profile bytes: neither FFmpeg nor the embedding reads inside them."""
    return b"Display P3 stand-in " + bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))


@pytest.fixture()
def photo(tmp_path):
    pixels = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, icc_profile=_profile(3000), quality=95)
    return path


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
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
    deblur_video(photo, tmp_path / "out.tif", backend=IdentityBackend(), notify=notes.append)
    assert notes == ["the source's ICC colour profile is not written into .tif output, so colour-managed viewers "
                     "take its colours for sRGB; a single .png or .jpg keeps it"]


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
    embed(path, profile)
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
    embed(path, _profile(100))
    with Image.open(path) as im:
        assert im.info["icc_profile"] == _profile(100) and "srgb" not in im.info
        assert np.asarray(im).max() == 7


def test_a_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "not.png"
    path.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG file"):
        embed(path, b"profile")
