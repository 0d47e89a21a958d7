import numpy as np
import pytest
import torch

from media import IdentityBackend, pattern
from vdeblur import VdeblurError
from vdeblur.backends.torch_backend import TorchBackend
from vdeblur.network import ModelConfig, build_model
from vdeblur.cli import main
from vdeblur.tiling import TiledBackend, check_tiling, tile_starts

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True)


def noisy_frames(n=2, h=96, w=160):
    rng = np.random.default_rng(0)
    x = np.stack([pattern(i, h, w) for i in range(n)]).astype(int) + rng.integers(-20, 20, (n, h, w, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("length,tile,overlap", [(160, 64, 16), (64, 64, 8), (50, 64, 8), (130, 48, 0), (1000, 256, 32)])
def test_tiles_cover_every_pixel_and_end_flush(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + size] = True
    assert covered.all() and starts[0] == 0 and starts[-1] + size == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


class ShapeRecorder(IdentityBackend):
    def __init__(self):
        super().__init__(uint16=True)
        self.shapes = []

    def run(self, frames):
        self.shapes.append(frames.shape[1:3])
        return super().run(frames)


@pytest.mark.parametrize("tile,overlap,crop,grid", [
    (32, 8, (32, 32), (3, 6)),            # square tiles
    ("48x24", 8, (24, 48), (5, 4)),       # wide tiles: (rows, columns) of 74 x 130
    ("24x48", 8, (48, 24), (2, 8)),       # tall tiles
    ("130x24", 4, (24, 130), (4, 1)),     # full-width strips (1 column)
    ("40x200", 4, (74, 40), (1, 4)),      # taller than the frame: full-height columns
])
def test_identity_backend_is_reproduced_exactly_in_both_dtypes(tile, overlap, crop, grid):
    """Every pixel is covered and the blend weights sum to one, whatever the tile's shape: a
    74 x 130 frame is a multiple of none of these tiles."""
    x = noisy_frames(h=74, w=130)
    inner = ShapeRecorder()
    tiled = TiledBackend(inner, tile, overlap)
    assert np.array_equal(tiled.run(x), x)
    assert set(inner.shapes) == {crop} and len(inner.shapes) == grid[0] * grid[1]
    x16 = x.astype(np.uint16) * 257 + 3
    out = tiled.run(x16)
    assert out.dtype == np.uint16 and np.array_equal(out, x16)
    assert tiled.accepts_uint16


def test_tiled_model_matches_whole_frame_without_seams(one_thread):
    torch.manual_seed(0)
    backend = TorchBackend(build_model(TINY), device="cpu", precision="fp32")
    x = noisy_frames()
    whole = backend.run(x).astype(int)
    blended = np.abs(TiledBackend(backend, 96, 32).run(x).astype(int) - whole)
    hard = np.abs(TiledBackend(backend, 96, 0).run(x).astype(int) - whole)
    # A random multi-scale network sees the whole frame (its output differs from its input by ~50
    # levels here), so tiles cannot match exactly; blended overlaps keep them close and seam-free.
    assert blended.mean() < 1.5 and np.percentile(blended, 99) < 16
    assert blended.max() < hard.max() and blended.mean() < hard.mean()


@pytest.mark.parametrize("tile,h,w", [("160x48", 96, 160), ("64x96", 96, 160), ("80x64", 90, 150), ("64x48", 90, 150)])
def test_rectangular_tiles_match_whole_frame_too(one_thread, tile, h, w):
    """Strips of rows, of columns, and a 2-D grid on a frame that is a multiple of no tile side."""
    torch.manual_seed(0)
    backend = TorchBackend(build_model(TINY), device="cpu", precision="fp32")
    x = noisy_frames(h=h, w=w)
    whole = backend.run(x).astype(int)
    blended = np.abs(TiledBackend(backend, tile, 16).run(x).astype(int) - whole)
    hard = np.abs(TiledBackend(backend, tile, 0).run(x).astype(int) - whole)
    # Smaller tiles give the random network less context than the 96-px squares above, hence
    # looser bounds; the blend must still beat hard seams.
    assert blended.mean() < 5 and blended.mean() < 0.8 * hard.mean() and blended.max() <= hard.max()


def test_small_frames_skip_tiling_and_options_are_checked():
    inner = IdentityBackend()
    tiled = TiledBackend(inner, 64, 16)
    tiled.run(noisy_frames(1, 48, 64))
    assert inner.calls == 1
    assert tiled.describe()["tile"] == [64, 64]
    with pytest.raises(VdeblurError, match="--tile-overlap"):
        TiledBackend(inner, 64, 32)
    with pytest.raises(VdeblurError, match="--tile must"):
        TiledBackend(inner, 8, 0)


@pytest.mark.parametrize("value,expected", [(None, None), (0, None), ("0", None), (512, (512, 512)), ("512", (512, 512)),
                                            ("672x400", (672, 400)), ("672X400", (672, 400)), ((64, 32), (64, 32))])
def test_tile_values(value, expected):
    assert check_tiling(value, 8) == expected


def test_the_default_overlap_fits_small_tiles():
    from vdeblur.tiling import fitted_overlap

    assert [fitted_overlap(parse, None) for parse in (None, (512, 512), (66, 100), (64, 200), (32, 32), (16, 40))] \
        == [32, 32, 32, 31, 15, 7]
    assert fitted_overlap((32, 32), 4) == 4   # as given
    assert check_tiling("32", None) == (32, 32)
    assert TiledBackend(IdentityBackend(), 32).overlap == 15
    with pytest.raises(VdeblurError, match=r"half the tile's shorter side \(15\), got 32"):
        check_tiling("32", 32)   # asked for: not changed


@pytest.mark.parametrize("tile,overlap,message", [
    ("abc", "32", "--tile 'abc': expected N or WIDTHxHEIGHT"),
    ("64x", "8", "--tile '64x': expected N or WIDTHxHEIGHT"),
    ("1x2x3", "8", "expected N or WIDTHxHEIGHT"),
    ("-64", "8", "at least 16 pixels on each side, got -64"),
    ("672x8", "2", "at least 16 pixels on each side, got 672x8"),
    ("672x0", "2", "at least 16 pixels on each side, got 672x0"),
    ("1x1", "0", "at least 16 pixels on each side, got 1x1"),
    ("672x400", "200", "--tile-overlap must be between 0 and half the tile's shorter side (199), got 200"),
    ("64", "-1", "--tile-overlap must be between 0"),
])
def test_bad_tiles_get_one_line_before_any_work(tmp_path, capsys, tile, overlap, message):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"not read: the options are checked first")
    for command in (["deblur", str(src), "-o", str(tmp_path / "o.mp4")], ["bench"]):
        assert main([*command, "--tile", tile, "--tile-overlap", overlap]) == 1
        err = capsys.readouterr().err
        assert err.startswith("vdeblur: error: ") and err.count("\n") == 1 and message in err, (command, err)
    assert list(tmp_path.iterdir()) == [src]
