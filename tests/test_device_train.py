"""scripts/device_train.py, the GPU-lease training helper, run for real on the CPU with a tiny network:
packing (exact lossless WebP, the same held-out split, the carry budget), a detached run followed by
`start`, export in parts under the size limit, and `join` back to the very same checkpoint."""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdeblur.errors import VdeblurError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dt():
    spec = importlib.util.spec_from_file_location("device_train", ROOT / "scripts" / "device_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(path: Path, rng, size=(40, 48)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    photos = {}
    for i in range(7):   # 7 photos: the 6th is held out
        sub = "a" if i < 4 else "b"
        photos[f"{sub}/p{i}"] = _png(root / "sharp" / sub / f"p{i}.png", rng)
    _png(root / "gopro-resynth" / "train" / "s_blur.png", rng)
    _png(root / "gopro-resynth" / "train" / "s_sharp.png", rng)
    return root, photos


def test_pack_is_exact_keeps_the_split_and_checks_the_budget(dt, data, tmp_path, monkeypatch, capsys):
    root, photos = data
    out = tmp_path / "packed"
    dt.pack(root, out, jobs=1)
    for stem, pixels in photos.items():
        assert np.array_equal(np.asarray(Image.open(out / "sharp" / f"{stem}.webp")), pixels)
    assert sorted(p.name for p in (out / "gopro-train").iterdir()) == ["s_blur.webp", "s_sharp.webp"]
    assert "packed 9 new image(s)" in capsys.readouterr().out
    dt.pack(root, out, jobs=1)   # up to date: nothing converted again
    assert "packed 0 new image(s)" in capsys.readouterr().out

    (out / "sharp" / "a" / "p0.webp").rename(out / "sharp" / "a" / "zz.webp")   # shifts the held-out photo
    with pytest.raises(VdeblurError, match="split into train/held-out differently"):
        dt.pack(root, out, jobs=1)
    (out / "sharp" / "a" / "zz.webp").unlink()

    monkeypatch.setattr(dt, "CARRY_LIMIT", dt.CARRY_MARGIN + 1000)
    with pytest.raises(VdeblurError, match="over the"):
        dt.pack(root, out, jobs=1)
    with pytest.raises(VdeblurError, match="no such folder"):
        dt.pack(tmp_path / "nowhere", out, jobs=1)


@pytest.mark.slow
def test_start_exports_parts_that_join_to_the_checkpoint(dt, data, tmp_path, capsys):
    root, _ = data
    packed, run, got = tmp_path / "packed", tmp_path / "run", tmp_path / "got"
    dt.pack(root, packed, jobs=1)
    tiny = ["--eager", "--", "--widths", "4", "8", "16", "--blocks", "1", "--crop", "32", "--batch", "1", "--workers", "0",
            "--no-builtin-photos", "--threads", "1"]
    common = ["--run", str(run), "--poll", "0.2", "--export", str(got), "--part-mib", "0.01"]
    assert dt.main(["start", "--data", str(packed), "--device", "cpu", "--steps", "3", "--wait", "180", *common, *tiny]) == 0
    out = capsys.readouterr().out
    assert "the run ended" in out and "the run is over" in out, out

    assert f"--data {run / 'data' / 'gopro-train'}" in (run / "command.txt").read_text()   # its own copy
    manifest = json.loads((got / "weights.json").read_text())
    assert manifest["step"] == 3 and not manifest["running"] and len(manifest["parts"]) > 1
    assert all((got / p).stat().st_size <= 0.01 * 2**20 for p in manifest["parts"])
    trained = run / manifest["file"]
    joined = dt.join(got, tmp_path / "joined")
    assert joined.read_bytes() == trained.read_bytes()
    assert hashlib.sha256(joined.read_bytes()).hexdigest() == manifest["sha256"]
    assert "--steps 3" in (tmp_path / "joined" / "command.txt").read_text()

    # A second start into the same run directory is refused; wait on it exports again.
    assert dt.main(["start", "--data", str(packed), "--device", "cpu", *common, *tiny]) == 1
    assert "holds an earlier run" in capsys.readouterr().err
    assert dt.main(["wait", *common]) == 0

    part = got / manifest["parts"][0]
    part.write_bytes(b"x" + part.read_bytes()[1:])
    with pytest.raises(VdeblurError, match="do not match"):
        dt.join(got, tmp_path / "joined2")
    assert not (tmp_path / "joined2" / manifest["file"]).exists()


def test_wait_without_a_run_and_missing_data_are_one_line_errors(dt, tmp_path, capsys):
    assert dt.main(["wait", "--run", str(tmp_path / "none")]) == 1
    assert "no run here" in capsys.readouterr().err
    assert dt.main(["start", "--run", str(tmp_path / "r"), "--data", str(tmp_path / "nothing")]) == 1
    assert "no packed data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dt.main(["wait", "--", "--steps", "2"])


def test_schedule_is_sized_to_the_minutes(dt, tmp_path):
    args = type("A", (), dict(steps=None, rate=7.5, minutes=20, data=tmp_path, run=tmp_path / "r", seed=1,
                              device="cuda", checkpoint_minutes=2.0, workers=12, eager=False))()
    cmd = dt.train_command(args, ["--lr", "1e-4"])
    steps = int(cmd[cmd.index("--steps") + 1])
    assert steps == int(7.5 * (20 * 60 - dt.STARTUP_S)) and "--compile" in cmd
    assert cmd[cmd.index("--time-limit") + 1] == "21.5"
    assert cmd[-2:] == ["--lr", "1e-4"]   # given last: vdeblur train's parser lets it win
