"""deblur --ensemble: the model's results on a frame and its mirror images, mirrored back and averaged."""

import numpy as np
import pytest
import torch

from media import IdentityBackend, TwoSlotBackend, make_video
from vdeblur.backends.torch_backend import TorchBackend
from vdeblur.cli import main
from vdeblur.ensemble import FlipEnsemble
from vdeblur.errors import VdeblurError
from vdeblur.evaluate import restore_image
from vdeblur.network import ModelConfig, build_model
from vdeblur.pipeline import deblur_video

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True)


class ShiftLeft(IdentityBackend):
    """A stand-in model that is not mirror-symmetric: every pixel takes its right neighbour's value."""

    def run(self, frames):
        return np.concatenate([frames[:, :, 1:], frames[:, :, -1:]], axis=2)


def test_each_copy_is_mirrored_back_before_the_average():
    frames = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    left = ShiftLeft().run(frames).astype(np.float32)
    right = np.concatenate([frames[:, :, :1], frames[:, :, :-1]], axis=2).astype(np.float32)   # mirrored back
    got = FlipEnsemble(ShiftLeft(), 2).run(frames)
    assert got.dtype == np.uint8 and np.array_equal(got, np.rint((left + right) / 2).astype(np.uint8))
    # upside down, the shift is still along the width: copies 3 and 4 repeat copies 1 and 2
    assert np.array_equal(FlipEnsemble(ShiftLeft(), 4).run(frames), got)
    assert FlipEnsemble(ShiftLeft(), 4).describe()["ensemble"] == 4


def test_the_ensemble_deblur_writes_is_the_one_eval_scores():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    frame = np.random.default_rng(1).integers(0, 256, (1, 24, 40, 3), dtype=np.uint8)
    written = FlipEnsemble(TorchBackend(model, device="cpu", precision="fp32"), 4).run(frame)[0]
    scored = restore_image(model, torch.from_numpy(frame[0]).permute(2, 0, 1).float() / 255, torch.device("cpu"),
                           "fp32", copies=4)
    assert np.abs((scored.permute(1, 2, 0).numpy() * 255).round() - written).max() <= 1
    plain = TorchBackend(model, device="cpu", precision="fp32").run(frame)[0]
    assert np.abs(plain.astype(int) - written).max() > 0   # the copies differ: the network is not symmetric


def test_four_copies_keep_within_a_gpu_backends_two_batches(tmp_path):
    src = tmp_path / "in.mkv"
    make_video(src, width=32, height=32, frames=3, codec="ffv1", pix_fmt="yuv444p", options={})
    backend = TwoSlotBackend()
    report = deblur_video(src, tmp_path / "out.mkv", backend=backend, codec="ffv1", pix_fmt="yuv444p", ensemble=4)
    assert report.frames == 3 and backend.most == 2 and report.backend["ensemble"] == 4


def test_kept_progress_is_reused_only_for_the_same_ensemble(tmp_path):
    from test_compare import Invert, StopAtNine
    from vdeblur.resume import state_dir

    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=12)
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, out, backend=StopAtNine(), segment_frames=2, segment_seconds=0, ensemble=2)
    assert state_dir(out).exists()
    notes = []
    deblur_video(src, out, backend=Invert(), notify=notes.append, segment_frames=2, segment_seconds=0)
    assert len(notes) == 1 and "starting over" in notes[0], notes


@pytest.mark.parametrize("command", [["deblur", "in.mp4", "-o", "out.mp4"], ["eval", "--synthetic", "1"]])
def test_an_ensemble_of_three_is_a_one_line_error(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "in.mp4", frames=1)
    assert main([*command, "--ensemble", "3"]) == 1
    err = capsys.readouterr().err
    assert "--ensemble must be one of 1, 2, 4, got 3" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()
    with pytest.raises(VdeblurError, match="--ensemble"):
        deblur_video(tmp_path / "in.mp4", tmp_path / "out.mp4", backend=IdentityBackend(), ensemble=0)
