import json

import numpy as np
import pytest
import torch
from PIL import Image

from vdeblur.checkpoint import save_checkpoint
from vdeblur.cli import main
from vdeblur.network import ModelConfig, build_model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def identity_weights(tmp_path):
    """A residual model whose correction is zero: its output is exactly its input."""
    model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True))
    torch.nn.init.zeros_(model.module.dg3.out.weight)
    torch.nn.init.zeros_(model.module.dg3.out.bias)
    return save_checkpoint(tmp_path / "identity.safetensors", model)


@pytest.fixture()
def pair_set(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "pairs"
    d.mkdir()
    for i in range(2):
        sharp = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        noisy = np.clip(sharp.astype(int) + rng.integers(-20, 21, sharp.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(d / f"f{i}_blur.png")
        Image.fromarray(sharp).save(d / f"f{i}_sharp.png")
    return d


def test_eval_json_on_a_pair_set(identity_weights, pair_set, capsys):
    assert main(["eval", "--data", str(pair_set), "--weights", str(identity_weights), "--json", "--precision", "fp32",
                 "--synthetic", "2", "--size", "48"]) == 0
    report = json.loads(capsys.readouterr().out)
    real, synth = report["sets"]
    assert real["images"] == 2 and synth["images"] == 2
    assert [r["image"] for r in real["per_image"]] == ["f0.png", "f1.png"]
    # Identity model: its numbers are the input's own.
    assert real["model"]["psnr"] == pytest.approx(real["input"]["psnr"], abs=1e-3)
    assert real["model"]["ssim"] == pytest.approx(real["input"]["ssim"], abs=1e-4)
    assert real["gain_db"] == pytest.approx(0.0, abs=1e-3)
    assert 20 < real["input"]["psnr"] < 30  # uniform noise of +-20 levels: about 24.8 dB


def test_eval_scores_each_strength_from_one_run_of_the_model(identity_weights, pair_set, capsys, monkeypatch):
    """A stand-in model that answers mid-grey: at strength S the written frame is the input moved S of
    the way to grey, rounded to 8 bits, and each image goes through the model once for all strengths."""
    import vdeblur.evaluate as evaluate
    from vdeblur.metrics import psnr

    calls = []

    def grey(model, blur, device, precision, what=None, copies=1):
        calls.append(blur.shape)
        return torch.full_like(blur, 128 / 255)

    monkeypatch.setattr(evaluate, "restore_image", grey)
    assert main(["eval", "--data", str(pair_set), "--weights", str(identity_weights), "--json", "--precision", "fp32",
                 "--strength", "1", "0.25", "1.5"]) == 0
    sets = json.loads(capsys.readouterr().out)["sets"]
    assert len(calls) == 2 and [s.get("strength") for s in sets] == [1.0, 0.25, 1.5]
    for strength, scored in zip((1, 0.25, 1.5), sets):
        for i, row in enumerate(scored["per_image"]):
            blur = np.asarray(Image.open(pair_set / f"f{i}_blur.png")).astype(float)
            sharp = torch.from_numpy(np.asarray(Image.open(pair_set / f"f{i}_sharp.png")) / 255.0)
            shown = torch.from_numpy(np.clip(np.round(blur + strength * (128 - blur)), 0, 255) / 255.0)
            assert row["psnr"] == pytest.approx(float(psnr(shown, sharp)), abs=2e-3)
    assert main(["eval", "--data", str(pair_set), "--strength", "0"]) == 1
    assert "--strength 0: give a value above 0" in capsys.readouterr().err


def test_eval_table(identity_weights, pair_set, capsys):
    assert main(["eval", "--data", str(pair_set), "--weights", str(identity_weights), "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "input PSNR" in out and "pairs" in out


@pytest.mark.parametrize("args, message", [
    ([], "nothing to evaluate"),
    (["--data", "/nonexistent"], "no such folder"),
    (["--synthetic", "1", "--weights", "/nonexistent.safetensors"], "no such checkpoint file"),
    (["--synthetic", "1", "--threads", "-1"], "--threads must be between 0 (one per core) and this machine's"),
    (["--synthetic", "1", "--seed", "-1"], "--seed must be 0 or more, got -1"),   # numpy's traceback before
])
def test_eval_errors(args, message, capsys):
    assert main(["eval", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_eval_refuses_pairs_smaller_than_the_ssim_window(identity_weights, tmp_path, capsys):
    for kind in ("blur", "sharp"):
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / f"x_{kind}.png")
    assert main(["eval", "--data", str(tmp_path), "--weights", str(identity_weights)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"vdeblur: error: {tmp_path / 'x_blur.png'}: 5x5 is smaller than SSIM's 11x11 window"


def test_the_table_says_which_way_an_infinite_psnr_goes():
    from vdeblur.evaluate import _gain_text

    def summary(given, got):
        gain = None if given is None or got is None else round(got - given, 4)
        return {"input": {"psnr": given}, "model": {"psnr": got}, "gain_db": gain}

    assert _gain_text(summary(30.0, 31.25)) == "+1.25"
    assert _gain_text(summary(None, 40.0)) == "-inf"   # the input was already the sharp image
    assert _gain_text(summary(30.0, None)) == "+inf"
    assert _gain_text(summary(None, None)) == "n/a"


def test_a_file_given_as_a_folder_is_named_so(tmp_path, capsys):
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert main(["eval", "--data", str(tmp_path / "clip.mp4")]) == 1
    assert capsys.readouterr().err == f"vdeblur: error: {tmp_path / 'clip.mp4'}: not a folder\n"


def test_a_photo_folder_too_small_for_the_held_out_split_is_said(identity_weights, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(photos / f"p{i}.png")
    assert main(["eval", "--synthetic", "1", "--size", "32", "--photos", str(photos),
                 "--weights", str(identity_weights), "--json"]) == 0
    assert (f"vdeblur eval: {photos} adds no photo to the held-out synthetic set: it takes every 6th photo "
            f"(sorted), and the folder has 3") in capsys.readouterr().err


def test_eval_of_a_model_that_gives_nan_is_an_error_not_a_perfect_score(pair_set):
    """NaN output was reported as PSNR "inf", gain "+inf": a diverged model looked like the best one.
    (A weights file holding NaN is refused as it loads; this is a model gone wrong in memory.)"""
    from vdeblur.errors import VdeblurError
    from vdeblur.evaluate import evaluate_set, pairs_from_folder

    model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True))
    torch.nn.init.constant_(model.module.dg3.out.bias, float("nan"))
    with pytest.raises(VdeblurError, match="set: f0.png: the model's output is not finite") as e:
        evaluate_set(model, pairs_from_folder(pair_set), torch.device("cpu"), "fp32", "set")
    assert "\n" not in str(e.value)


def test_eval_without_pillow_is_one_line(pair_set, identity_weights, capsys, monkeypatch):
    """A 15-line ModuleNotFoundError traceback after an install without Pillow (now a dependency)."""
    import sys

    monkeypatch.setitem(sys.modules, "PIL", None)
    assert main(["eval", "--data", str(pair_set), "--weights", str(identity_weights)]) == 1
    assert capsys.readouterr().err == "vdeblur: error: reading images needs Pillow: pip install pillow\n"


def test_every_input_is_checked_before_the_first_is_scored(identity_weights, pair_set, tmp_path, capsys):
    """A typo in --photos (or a second --data) was found after the first set's whole run, thrown away."""
    for later in (["--synthetic", "1", "--photos", str(tmp_path / "typo")], ["--data", str(tmp_path / "typo")]):
        assert main(["eval", "--data", str(pair_set), *later, "--weights", str(identity_weights), "--verbose"]) == 1
        err = capsys.readouterr().err
        assert err == f"vdeblur: error: {tmp_path / 'typo'}: no such folder\n"   # no image was scored first


def test_pairs_match_in_any_case_and_a_lone_sharp_image_is_named(tmp_path):
    from vdeblur.datasets import find_pairs

    image = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    for name in ("a_BLUR.png", "a_SHARP.png", "my_blurry_blur.png", "my_blurry_sharp.png"):
        image.save(tmp_path / name)
    assert sorted(p.name for p in find_pairs(tmp_path)) == ["a.png", "my_blurry.png"]   # a_BLUR was passed over
    image.save(tmp_path / "b_sharp.png")
    with pytest.raises(Exception, match="b_sharp.png: sharp image has no blurry partner"):
        find_pairs(tmp_path)


def test_held_out_photos_other_than_training_s_are_said(tmp_path, pair_set, capsys):
    """The held-out split is every 6th photo of the folders given: other folders than the training's
    hold out photos it trained on. A run's checkpoint records its folders; the report names them."""
    from vdeblur.training import Recipe, train

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(photos / f"p{i}.png")
    run = tmp_path / "run"
    tiny = {"widths": [4, 8, 16], "blocks_per_group": 1, "attention_reduction": 4}
    train(Recipe(steps=1, batch=1, crop=32, model=tiny, photos=[str(photos)], builtin_photos=False), run, progress=False)
    weights = str(run / "step-0000001.safetensors")
    capsys.readouterr()
    assert main(["eval", "--synthetic", "1", "--size", "32", "--weights", weights, "--json", "--threads", "1"]) == 0
    said = capsys.readouterr()
    assert f"these weights were trained with --photos {photos}" in said.err
    assert json.loads(said.out)["photos"] == []
    assert main(["eval", "--synthetic", "1", "--size", "32", "--weights", weights, "--json", "--photos", str(photos),
                 "--threads", "1"]) == 0
    said = capsys.readouterr()
    assert "trained with" not in said.err and json.loads(said.out)["photos"] == [str(photos.resolve())]


def test_flat_pairs_inside_a_folder_named_sharp_still_pair(tmp_path):
    from vdeblur.datasets import find_pairs

    folder = tmp_path / "sharp"
    folder.mkdir()
    for name in ("a_blur.png", "a_sharp.png"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / name)
    assert [p.name for p in find_pairs(tmp_path)] == ["a.png"]
