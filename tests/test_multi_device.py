"""One video on several devices: batches in turn, results in order, each device fitting its own memory."""

import threading

import numpy as np
import pytest
import torch

from media import IdentityBackend, make_video, yuv_planes
from test_memory_fallback import Budget
from vdeblur.backends import BackendOptions, open_backend
from vdeblur.backends.multi_device import MultiDevice
from vdeblur.checkpoint import save_checkpoint
from vdeblur.cli import main
from vdeblur.network import ModelConfig, build_model
from vdeblur.pipeline import deblur_video

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True)


class Marking(IdentityBackend):
    """Identity that adds its own mark, so the output shows which device did each batch."""

    def __init__(self, mark, barrier=None):
        super().__init__()
        self.mark, self.barrier, self.batches = mark, barrier, []

    def run(self, frames):
        if self.barrier is not None:
            self.barrier.wait(timeout=5)   # both devices must be inside run at once to get past this
        self.batches.append(int(frames[0, 0, 0, 0]))
        return frames + self.mark

    def describe(self):
        return {"backend": "identity", "device": f"dev{self.mark}", "precision": "n/a", "bad_frames": self.mark}


def numbered(k, n=2):
    return np.full((n, 8, 8, 3), k, np.uint8)


def test_batches_go_in_turn_run_at_once_and_come_back_in_order():
    barrier = threading.Barrier(2)
    a, b = Marking(1, barrier), Marking(2, barrier)
    devices = MultiDevice([a, b], ["dev1", "dev2"])
    assert devices.batches_in_flight == 4
    pending = [devices.submit(numbered(k)) for k in range(4)]
    out = [p.result()[0, 0, 0, 0] for p in pending]
    assert out == [0 + 1, 1 + 2, 2 + 1, 3 + 2]
    assert a.batches == [0, 2] and b.batches == [1, 3]
    facts = devices.describe()
    assert facts["device"] == "dev1, dev2" and facts["devices"] == 2 and facts["bad_frames"] == 3


def test_a_failure_on_one_device_is_raised_where_its_batch_is_collected():
    class Broken(IdentityBackend):
        def run(self, frames):
            raise ValueError("device 2 broke")

    devices = MultiDevice([IdentityBackend(), Broken()], ["dev1", "dev2"])
    first, second = devices.submit(numbered(0)), devices.submit(numbered(1))
    assert np.array_equal(first.result(), numbered(0))
    with pytest.raises(ValueError, match="device 2 broke"):
        second.result()


def test_each_device_fits_its_own_memory(tmp_path):
    src = tmp_path / "in.mkv"
    make_video(src, width=320, height=240, frames=8, codec="ffv1", pix_fmt="yuv444p")
    small, large = Budget(240 * 200), Budget(10 ** 9)
    notes = []
    report = deblur_video(src, tmp_path / "out.mkv", backend=MultiDevice([small, large], ["cuda:0", "cuda:1"]),
                          codec="ffv1", pix_fmt="yuv444p", notify=notes.append)
    assert notes == ["cuda:0: out of memory on 320x240 frames; going on in 176x240 tiles, slower "
                     "(--tile 176x240 starts there)"]
    assert report.backend["out_of_memory"] == notes and report.backend["tile"] == [[176, 240], None]
    assert {s[1:] for s in small.shapes} == {(240, 176)} and {s[1:] for s in large.shapes} == {(240, 320)}
    whole = tmp_path / "whole.mkv"
    deblur_video(src, whole, backend=IdentityBackend(), codec="ffv1", pix_fmt="yuv444p")
    for a, b in zip(yuv_planes(tmp_path / "out.mkv"), yuv_planes(whole), strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b))


def test_open_backend_loads_the_model_once_per_device_and_matches_one_device(tmp_path, monkeypatch, one_thread):
    import vdeblur.hardware as hardware

    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "tiny.safetensors", build_model(TINY))
    monkeypatch.setattr(hardware, "split_devices", lambda requested: ["cpu", "cpu"])   # stands in for two GPUs
    devices = open_backend("auto", BackendOptions(weights=str(weights), device="cuda:0,cuda:1", precision="fp32"))
    assert isinstance(devices, MultiDevice) and devices.backends[0].model is not devices.backends[1].model
    src = tmp_path / "in.mkv"
    make_video(src, width=64, height=48, frames=6, codec="ffv1", pix_fmt="yuv444p")
    one = open_backend("torch", BackendOptions(weights=str(weights), device="cpu", precision="fp32"))
    deblur_video(src, tmp_path / "one.mkv", backend=one, codec="ffv1", pix_fmt="yuv444p")
    deblur_video(src, tmp_path / "two.mkv", backend=devices, codec="ffv1", pix_fmt="yuv444p", batch=2)
    for a, b in zip(yuv_planes(tmp_path / "one.mkv"), yuv_planes(tmp_path / "two.mkv"), strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("argv,message", [
    (["--device", "cpu,cuda:0"], "several devices are GPUs, named cuda:N (e.g. cuda:0,cuda:1) or cuda:all"),
    (["--device", "cuda:0,cuda:1", "--backend", "onnxruntime"], "several GPUs work with the torch backend"),
    (["--device", "cuda:0,cuda:1"] if not torch.cuda.is_available() else ["--device", "cuda:0,cuda:0"],
     "no CUDA GPU is usable here" if not torch.cuda.is_available() else "a GPU is named twice"),
])
def test_bad_device_lists_get_one_line(tmp_path, capsys, argv, message):
    src = tmp_path / "in.mp4"
    make_video(src, frames=2)
    assert main(["deblur", str(src), "-o", str(tmp_path / "out.mp4"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vdeblur: error: ") and err.count("\n") == 1 and message in err, err
    assert main(["bench", "--device", "cuda:0,cuda:1"]) == 1
    assert "this command runs on one device; `vdeblur deblur` takes several" in capsys.readouterr().err


@pytest.mark.gpu
def test_two_gpus_give_what_one_gives():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    x = np.random.default_rng(0).integers(0, 256, (2, 96, 160, 3), dtype=np.uint8)
    one = open_backend("torch", BackendOptions(device="cuda:0"))
    devices = open_backend("torch", BackendOptions(device="cuda:all"))
    expected = one.run(x)
    pending = [devices.submit(x) for _ in range(4)]
    assert all(np.array_equal(p.result(), expected) for p in pending)
    devices.close()
    one.close()
