import numpy as np
import pytest
import torch
from PIL import Image

from vdeblur.datasets import PairedCrops, StepBatches, TrainingSamples, find_pairs, load_pair, read_image
from vdeblur.errors import VdeblurError
from vdeblur.synthetic import BlurParams, SyntheticBlur


def _png(path, h=40, w=48, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _gopro_tree(root):
    for seq in ("GOPR0001_11_00", "GOPR0002_11_01"):
        for i in range(2):
            _png(root / "train" / seq / "blur" / f"{i:06d}.png", seed=i)
            _png(root / "train" / seq / "sharp" / f"{i:06d}.png", seed=10 + i)
            _png(root / "train" / seq / "blur_gamma" / f"{i:06d}.png", seed=20 + i)
    return root / "train"


def test_gopro_layout(tmp_path):
    pairs = find_pairs(_gopro_tree(tmp_path / "GOPRO_Large"))
    assert len(pairs) == 4
    assert all(p.blur.parent.name == "blur" and p.sharp.parent.name == "sharp" for p in pairs)
    assert pairs[0].name == "GOPR0001_11_00/000000.png"
    blur, sharp = load_pair(pairs[0])
    assert blur.shape == sharp.shape == (40, 48, 3)


def test_flat_layout_and_crops(tmp_path):
    for i in range(3):
        _png(tmp_path / f"s{i}_blur.png", seed=i)
        _png(tmp_path / f"s{i}_sharp.png", seed=i)
    crops = PairedCrops([tmp_path], crop=32)
    assert len(crops) == 3
    blur, sharp = crops.sample(np.random.default_rng(0))
    assert blur.shape == (3, 32, 32) and torch.equal(blur, sharp)  # same pixels, same crop


def test_empty_folder(tmp_path):
    with pytest.raises(VdeblurError, match="no images found"):
        find_pairs(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(VdeblurError, match="no such folder"):
        find_pairs(tmp_path / "missing")


def test_wrong_folder(tmp_path):
    _png(tmp_path / "holiday.png")
    with pytest.raises(VdeblurError, match="no blur/sharp pairs"):
        find_pairs(tmp_path)


def test_blur_without_partner(tmp_path):
    _png(tmp_path / "a_blur.png")
    with pytest.raises(VdeblurError, match="a_blur.png: blurry image has no sharp partner"):
        find_pairs(tmp_path)


def test_mismatched_sizes(tmp_path):
    _png(tmp_path / "a_blur.png", 40, 48)
    _png(tmp_path / "a_sharp.png", 40, 40)
    with pytest.raises(VdeblurError, match="a_blur.png: size 48x40 differs"):
        load_pair(find_pairs(tmp_path)[0])


def test_unreadable_image(tmp_path):
    (tmp_path / "a_blur.png").write_bytes(b"not a png")
    _png(tmp_path / "a_sharp.png")
    with pytest.raises(VdeblurError, match="a_blur.png: unreadable image"):
        load_pair(find_pairs(tmp_path)[0])
    with pytest.raises(VdeblurError, match="no such image file"):
        read_image(tmp_path / "gone.png")


def test_crop_larger_than_images(tmp_path):
    _png(tmp_path / "a_blur.png")
    _png(tmp_path / "a_sharp.png")
    with pytest.raises(VdeblurError, match="smaller than --crop 64"):
        PairedCrops([tmp_path], crop=64)


def test_every_pair_is_checked_before_training_starts(tmp_path):
    for name in ("a", "b", "c"):
        _png(tmp_path / f"{name}_blur.png", 40, 48)
        _png(tmp_path / f"{name}_sharp.png", 40, 48 if name != "c" else 50)
    with pytest.raises(VdeblurError, match="c_blur.png: size 48x40 differs from its sharp partner's 50x40"):
        PairedCrops([tmp_path], crop=16)   # not only when a sample happens to draw the bad pair


def test_samples_are_a_function_of_seed_and_index(tmp_path):
    _png(tmp_path / "a_blur.png", 64, 64)
    _png(tmp_path / "a_sharp.png", 64, 64, seed=1)
    synth = SyntheticBlur(None, 32, BlurParams())
    ds = TrainingSamples(3, PairedCrops([tmp_path], 32), synth, 0.5)
    for i in (0, 7):
        a, b = ds[i], ds[i]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(ds[1][0], ds[2][0])


def test_step_batches_partition_samples_over_ranks():
    r0 = iter(StepBatches(2, start_step=3, rank=0, world=2))
    r1 = iter(StepBatches(2, start_step=3, rank=1, world=2))
    assert next(r0) == [12, 13] and next(r1) == [14, 15]
    assert next(r0) == [16, 17]
    assert list(StepBatches(1, start_step=2, total_steps=4)) == [[2], [3]]


@pytest.mark.parametrize("name,dtype", [("g.png", np.uint16), ("g.tif", np.int32)])
def test_16_bit_grey_images_are_scaled_not_clipped(tmp_path, name, dtype):
    """A 16-bit grey PNG (Pillow mode I;16, or I) went through convert("RGB"), which clips at 255:
    nearly all white, so eval scored two identical pictures 4.9 dB apart."""
    from PIL import Image

    from vdeblur.datasets import read_image

    grey = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    wide = grey.astype(np.uint16) * 257
    Image.fromarray(wide.astype(dtype)).save(tmp_path / name)   # Pillow modes I;16 and I
    with Image.open(tmp_path / name) as im:
        assert im.mode == ("I;16" if dtype == np.uint16 else "I")
    got = read_image(tmp_path / name)
    assert got.shape == (32, 64, 3) and got.dtype == np.uint8
    assert np.array_equal(got[..., 0], grey) and np.array_equal(got[..., 2], grey)


def test_a_float_tiff_is_refused_by_name_not_read_black(tmp_path):
    """Pillow's mode F (32-bit float TIFF) became all zeros through convert("RGB")."""
    from vdeblur.datasets import image_size

    path = tmp_path / "f.tif"
    Image.fromarray(np.full((16, 16), 0.5, np.float32), mode="F").save(path)
    for read in (read_image, image_size):
        with pytest.raises(VdeblurError, match="f.tif: floating-point samples"):
            read(path)


def test_exif_orientation_is_applied_so_a_sideways_phone_photo_pairs_with_an_upright_one(tmp_path):
    upright = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(upright).save(tmp_path / "up.png")
    exif = Image.Exif()
    exif[0x0112] = 6   # stored turned; shown rotated 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(tmp_path / "side.png", exif=exif)
    from vdeblur.datasets import image_size

    assert image_size(tmp_path / "side.png") == image_size(tmp_path / "up.png") == (48, 40)
    assert np.array_equal(read_image(tmp_path / "side.png"), upright)
