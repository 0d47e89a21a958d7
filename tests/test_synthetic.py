import numpy as np
import pytest
import torch

from vdeblur.synthetic import (BUILTIN_PHOTOS, BlurParams, PhotoBank, SyntheticBlur, dead_leaves,
                               gradient_energy, is_holdout, make_generator)

# Dead leaves only (no photo decoding): fast and independent of any data.
PROCEDURAL = SyntheticBlur(None, 64, BlurParams(max_camera_blur=16.0))


def test_deterministic_by_seed():
    a = PROCEDURAL.sample(np.random.default_rng([5, 1]))
    b = PROCEDURAL.sample(np.random.default_rng([5, 1]))
    c = PROCEDURAL.sample(np.random.default_rng([5, 2]))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_pairs_are_images_in_range():
    blur, sharp = PROCEDURAL.sample(np.random.default_rng(0))
    assert blur.shape == sharp.shape == (3, 64, 64)
    assert blur.dtype == torch.float32
    assert 0.0 <= float(blur.min()) and float(blur.max()) <= 1.0
    assert torch.equal(torch.round(blur * 255), blur * 255)  # 8-bit levels, like a saved frame


def test_blur_really_blurs():
    strong = SyntheticBlur(None, 64, BlurParams(max_camera_blur=24.0, object_prob=0.0, max_read_noise=0.0, max_shot_noise=0.0))
    ratios = []
    for i in range(6):
        blur, sharp = strong.sample(np.random.default_rng([7, i]))
        ratios.append(gradient_energy(blur) / gradient_energy(sharp))
    assert max(ratios) < 1.0
    assert float(np.median(ratios)) < 0.7


def test_moving_object_changes_the_pair():
    with_obj = SyntheticBlur(None, 64, BlurParams(object_prob=1.0))
    without = SyntheticBlur(None, 64, BlurParams(object_prob=0.0))
    a = with_obj.sample(np.random.default_rng(3))[1]
    b = without.sample(np.random.default_rng(3))[1]
    assert not torch.equal(a, b)


def test_dead_leaves_is_deterministic_and_textured():
    a = dead_leaves(np.random.default_rng(1), 48, 40)
    assert a.shape == (48, 40, 3) and a.dtype == np.uint8
    assert np.array_equal(a, dead_leaves(np.random.default_rng(1), 48, 40))
    assert a.std() > 10


def test_holdout_split_is_disjoint():
    train = set(PhotoBank(builtin=True, split="train").names())
    val = set(PhotoBank(builtin=True, split="val").names())
    assert train and val and not train & val
    assert len(train) + len(val) == len(BUILTIN_PHOTOS)
    assert [i for i in range(12) if is_holdout(i)] == [5, 11]


def test_photo_folder_source(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    gen = make_generator([tmp_path], builtin=False, split="train", size=32)
    assert len(gen.bank) == 5
    blur, sharp = gen.sample(np.random.default_rng(1))
    assert blur.shape == (3, 32, 32)
    assert len(make_generator([tmp_path], builtin=False, split="val", size=32).bank) == 1


def test_missing_photo_folder_is_one_line_error(tmp_path):
    from vdeblur.errors import VdeblurError

    with pytest.raises(VdeblurError, match="no such photo folder"):
        make_generator([tmp_path / "nope"])
