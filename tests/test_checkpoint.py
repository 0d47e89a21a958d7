import json
import struct

import pytest
import torch

import vdeblur
from vdeblur import VdeblurError
from vdeblur.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from vdeblur.network import ModelConfig, build_model

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True)


@pytest.fixture
def ckpt(tmp_path):
    model = build_model(TINY)
    path = save_checkpoint(tmp_path / "m.safetensors", model, extra={"note": "test"})
    return model, path


def test_round_trip_is_bit_exact(ckpt):
    model, path = ckpt
    loaded = vdeblur.load_model(path)
    assert loaded.config == TINY
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert read_checkpoint(path).extra == {"note": "test"}
    assert not loaded.training


def test_bf16_tensors_round_trip(tmp_path):
    model = build_model(TINY).to(torch.bfloat16)
    path = save_checkpoint(tmp_path / "b.safetensors", model)
    state = read_checkpoint(path).state
    for k, v in model.state_dict().items():
        assert state[k].dtype == torch.bfloat16 and torch.equal(state[k], v)


def test_truncated_file(ckpt, tmp_path):
    _, path = ckpt
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(VdeblurError, match="truncated|not a vdeblur checkpoint"):
            read_checkpoint(bad)


def test_corrupt_weights(ckpt, tmp_path):
    _, path = ckpt
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "flip.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(VdeblurError, match="corrupt"):
        read_checkpoint(bad)


def test_foreign_files(tmp_path):
    pickle_like = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, pickle_like)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a checkpoint at all\n" * 10)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    foreign_json = tmp_path / "other.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    foreign_json.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")
    for path in (pickle_like, text, empty, foreign_json):
        with pytest.raises(VdeblurError, match="not a vdeblur checkpoint"):
            read_checkpoint(path)
    with pytest.raises(VdeblurError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(VdeblurError, match="directory"):
        read_checkpoint(tmp_path)


def test_shapes_checked_against_config(ckpt, tmp_path):
    model, _ = ckpt
    other = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=2, attention_reduction=4))
    # weights of a 2-block model, stored under the 1-block config
    from vdeblur.checkpoint import save_state

    path = save_state(tmp_path / "mix.safetensors", TINY, other.state_dict())
    with pytest.raises(VdeblurError, match="do not match the model config"):
        read_checkpoint(path)
    state = model.state_dict()
    state["module.eg1.conv.weight"] = torch.zeros(4, 6, 3, 3)
    path = save_state(tmp_path / "shape.safetensors", TINY, state)
    with pytest.raises(VdeblurError, match="has shape"):
        read_checkpoint(path)


def test_save_is_atomic_and_leaves_no_temp(ckpt, tmp_path):
    _, path = ckpt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_load_model_without_default_weights_says_so(monkeypatch, tmp_path):
    from vdeblur import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(VdeblurError, match="no default weights"):
        vdeblur.load_model()


def _edit_header(path, out, edit):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    out.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    return out


def _first_tensor(header):
    return header[next(k for k in header if k != "__metadata__")]


def _config_edit(**changes):
    def edit(header):
        meta = header["__metadata__"]
        meta["config"] = json.dumps({**json.loads(meta["config"]), **changes})
    return edit


@pytest.mark.parametrize("edit,message", [
    (lambda h: _first_tensor(h).pop("data_offsets"), "damaged header"),
    (lambda h: _first_tensor(h).update(shape=["a"]), "damaged header"),
    (lambda h: _first_tensor(h).update(data_offsets=[10, 2]), "damaged header"),
    (lambda h: _first_tensor(h).update(shape=[-1, 4]), "damaged header"),
    (_config_edit(blocks_per_group=1.5), "invalid model config"),
    (_config_edit(widths=[4, "8", 16]), "invalid model config"),
    (_config_edit(channel_attention="yes"), "invalid model config"),
    (_config_edit(widths=[10**12, 2, 3]), "invalid model config"),   # overflowed torch
    (_config_edit(blocks_per_group=10**7), "invalid model config"),   # hung building the network
    (_config_edit(num_scales=10**6), "invalid model config"),
])
def test_a_damaged_header_is_one_line_not_a_traceback(ckpt, tmp_path, edit, message):
    """Headers edited with the data left alone: a KeyError, int('a') or a float block count escaped
    as tracebacks from eval, export, train --init-weights and load_model."""
    _, path = ckpt
    bad = _edit_header(path, tmp_path / "bad.safetensors", edit)
    with pytest.raises(VdeblurError, match=message):
        read_checkpoint(bad)


def test_a_compiled_model_saves_as_its_own_weights(tmp_path):
    """torch.compile's wrapper prefixed every key with _orig_mod.: the file saved but never loaded."""
    model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4))
    path = save_checkpoint(tmp_path / "c.safetensors", torch.compile(model))
    loaded = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(TypeError, match="takes a DeblurNet"):
        save_checkpoint(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))


def test_a_damaged_manifest_is_one_line(monkeypatch, tmp_path):
    from vdeblur import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    for text in ("{not json", '[{"name": "default"}]', '[{"name": "default", "filename": "a", "sha256": "b", "x": 1}]'):
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(VdeblurError, match=r"manifest.json: damaged \(") as e:
            vdeblur.load_model()
        assert "\n" not in str(e.value)


def test_kernel_size_one_is_refused():
    """A 1x1 stride-2 conv has no SAME padding: torch got negative padding, ONNX Runtime refused the file."""
    with pytest.raises(ValueError, match="odd, from 3 to 15"):
        ModelConfig(kernel_size=1)


def test_weights_that_are_not_a_file_or_hold_nan_are_refused_without_reading_them_whole(ckpt, tmp_path):
    """/dev/zero was read into memory until it ran out, a FIFO blocked the open, and NaN weights
    loaded (to write NaN frames, or to blame --lr when training started from them)."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, message in (("/dev/zero", "not a regular file"), (fifo, "not a regular file")):
        with pytest.raises(VdeblurError, match=message):
            read_checkpoint(path)
    model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4))
    torch.nn.init.constant_(model.module.dg3.out.bias, float("nan"))
    with pytest.raises(VdeblurError, match=r"dg3\.out\.bias holds NaN or infinity"):
        read_checkpoint(save_checkpoint(tmp_path / "nan.safetensors", model))
