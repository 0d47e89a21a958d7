"""Running out of memory costs speed, not the run: batches go one frame at a time, then tiles shrink."""

import numpy as np
import pytest

from media import IdentityBackend, make_video
from vdeblur import VdeblurError
from vdeblur.backends.base import Pending
from vdeblur.pipeline import deblur_video
from vdeblur.tiling import OutOfMemoryFallback, is_out_of_memory, smaller_tile

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity)"


class _Held:
    """Stands for the tensors a forward pass has allocated: alive while its frame is."""

    def __init__(self, owner):
        self.owner = owner
        owner.live += 1

    def __del__(self):
        self.owner.live -= 1


class Budget(IdentityBackend):
    """Identity with a memory budget in pixels (frames x height x width). Memory still held by an
    earlier attempt (a traceback keeping its frame alive) counts against it, as on a real GPU."""

    def __init__(self, pixels):
        super().__init__(uint16=True)
        self.pixels, self.live, self.shapes, self.released = pixels, 0, [], 0

    def run(self, frames):
        held = _Held(self)  # noqa: F841 - lives as long as this call's frame
        n, h, w, _ = frames.shape
        if self.live > 1 or n * h * w > self.pixels:
            raise RuntimeError(OOM)
        self.shapes.append((n, h, w))
        return super().run(frames)

    def release_memory(self):
        self.released += 1


def frames(n=4, h=200, w=300):
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_out_of_memory_is_recognised_by_its_words():
    assert is_out_of_memory(RuntimeError(OOM)) and is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 bytes"))
    assert is_out_of_memory(Exception("BFCArena::AllocateRawInternal Failed to allocate memory for requested buffer"))
    assert not is_out_of_memory(RuntimeError("a bug")) and not is_out_of_memory(KeyboardInterrupt())


@pytest.mark.parametrize("tile,expected", [((3840, 2160), (1936, 2160)), ((1936, 2160), (1936, 1104)),
                                           ((300, 200), (176, 200)), ((176, 200), (176, 128)), ((176, 128), None)])
def test_each_step_about_halves_the_tile_and_stops_at_the_least(tile, expected):
    assert smaller_tile(tile, 32, 128) == expected


def test_a_batch_too_big_goes_one_frame_at_a_time_then_in_smaller_tiles():
    inner, notes = Budget(200 * 160), []
    backend = OutOfMemoryFallback(inner, notify=notes.append)
    x = frames()
    assert np.array_equal(backend.run(x), x)   # tiles blend back to the very same pixels
    assert notes == [
        "out of memory on a batch of 4 frames of 300x200; going on one frame at a time (--batch 1 starts there)",
        "out of memory on 300x200 frames; going on in 176x200 tiles, slower (--tile 176x200 starts there)",
        "out of memory on 176x200 tiles; going on in 176x128 tiles, slower (--tile 176x128 starts there)"]
    assert inner.released == 3 and set(inner.shapes) == {(1, 128, 176)}
    # What fitted is kept: later batches run in those tiles at once, with no new attempt or note.
    inner.shapes.clear()
    assert np.array_equal(backend.run(x[::-1]), x[::-1])
    assert len(notes) == 3 and set(inner.shapes) == {(1, 128, 176)} and len(inner.shapes) == 4 * 4
    facts = backend.describe()
    assert facts["tile"] == [176, 128] and facts["out_of_memory"] == notes


def test_nothing_smaller_left_is_one_line_error():
    backend = OutOfMemoryFallback(Budget(1000))
    with pytest.raises(VdeblurError, match=r"^out of memory running the model on one 300x200 frame even in 176x128 "
                                           r"tiles; free the device's memory \(other programs\?\) or use another --device$"):
        backend.run(frames(1))


def test_a_users_tile_is_the_start_and_other_errors_pass_through():
    inner, notes = Budget(10 ** 9), []
    backend = OutOfMemoryFallback(inner, "160x120", 16, notify=notes.append)
    x = frames(2)
    assert np.array_equal(backend.run(x), x) and set(inner.shapes) == {(2, 120, 160)} and notes == []

    class Broken(Budget):
        def run(self, frames):
            raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        OutOfMemoryFallback(Broken(10 ** 9)).run(x)


class Overlapped(Budget):
    """Submits without waiting, like torch on CUDA: a failure shows at submit or at collection."""

    def __init__(self, pixels, fail_collecting=0):
        super().__init__(pixels)
        self.fail_collecting, self.in_flight = fail_collecting, 0

    def submit(self, frames):
        owner = self
        out = self.run(frames)
        self.in_flight += 1
        assert self.in_flight <= 2

        class Later(Pending):
            def result(self):
                owner.in_flight -= 1
                if owner.fail_collecting:
                    owner.fail_collecting -= 1
                    raise MemoryError()
                return out

        return Later(out)


def test_in_flight_batches_are_redone_in_order_whichever_step_fails():
    inner, notes = Overlapped(2 * 200 * 300, fail_collecting=1), []
    backend = OutOfMemoryFallback(inner, notify=notes.append)
    x = frames(2)
    first = backend.submit(x)              # fits, but fails when collected
    second = backend.submit(x[:, ::-1])    # fits
    assert np.array_equal(first.result(), x)
    assert notes == ["out of memory on a batch of 2 frames of 300x200; going on one frame at a time "
                     "(--batch 1 starts there)"]
    assert np.array_equal(second.result(), x[:, ::-1])
    big = frames(3)                        # fails at submit, redone at once
    assert np.array_equal(backend.submit(big).result(), big) and len(notes) == 1


def test_deblur_runs_through_out_of_memory_and_says_so(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, width=320, height=240, frames=6, codec="ffv1", pix_fmt="yuv444p")
    whole = tmp_path / "whole.mp4"
    deblur_video(src, whole, backend=IdentityBackend(), codec="ffv1", pix_fmt="yuv444p")
    notes, inner = [], Budget(240 * 200)
    report = deblur_video(src, out, backend=inner, batch=2, codec="ffv1", pix_fmt="yuv444p", notify=notes.append)
    assert report.frames == 6 and report.backend["tile"] == [176, 240]
    assert notes == report.warnings() == [
        "out of memory on a batch of 2 frames of 320x240; going on one frame at a time (--batch 1 starts there)",
        "out of memory on 320x240 frames; going on in 176x240 tiles, slower (--tile 176x240 starts there)"]
    from media import yuv_planes
    for a, b in zip(yuv_planes(out), yuv_planes(whole)):
        assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not report.verify_problems


@pytest.mark.gpu
def test_a_4k_frame_in_too_little_cuda_memory_comes_out_in_tiles():
    """The real thing: the shipped network, fp16, a 4K frame and a 2 GiB cap on the allocator.
    Whole frames run out; the fallback must free the failed attempt and finish in tiles."""
    import torch

    from vdeblur import load_model
    from vdeblur.backends.torch_backend import TorchBackend

    backend = TorchBackend(load_model(), device="cuda")
    x = frames(1, 2160, 3840)
    torch.cuda.set_per_process_memory_fraction(2 * 2 ** 30 / torch.cuda.get_device_properties(0).total_memory)
    try:
        notes = []
        fallback = OutOfMemoryFallback(backend, notify=notes.append)
        out = fallback.run(x)
        again = fallback.run(x)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        backend.close()
    assert notes and all(n.startswith("out of memory on ") for n in notes)
    assert out.shape == x.shape and np.array_equal(out, again) and 0 < out.mean() < 255
