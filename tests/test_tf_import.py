"""`vdeblur import-tf` and the TF checkpoint reader, without TensorFlow.

Inputs were written by TensorFlow, not by us: the committed tiny fixture (tests/data/tf_tiny,
see its README) and, when present beside the checkout, the authors' real index file.
"""

from __future__ import annotations

import ast
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vdeblur import crc32c as crc
from vdeblur.checkpoint import file_sha256, load_checkpoint, read_checkpoint
from vdeblur.cli import main
from vdeblur.errors import VdeblurError
from vdeblur.network import ModelConfig
from vdeblur.tf_checkpoint import TFCheckpoint, _varint, resolve_prefix
from vdeblur.tf_import import check_architecture, infer_config, is_model_variable, variable_map

FIXTURE = Path(__file__).parent / "data" / "tf_tiny"
FIXTURE_PREFIX = "model.ckpt-42"
OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "official-checkpoint"
needs_official = pytest.mark.skipif(not (OFFICIAL / "deblur.model-675000.index").is_file(),
                                    reason="../shared/data/official-checkpoint is not here")


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A writable copy of the fixture checkpoint; returns its prefix."""
    for f in FIXTURE.glob(FIXTURE_PREFIX + ".*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / FIXTURE_PREFIX


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main(["import-tf", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


# -- CRC-32C ---------------------------------------------------------------------------------

def test_crc32c_known_values():
    # RFC 3720 (iSCSI) B.4 test vectors and the usual check value.
    assert crc.crc32c_pure(b"123456789") == 0xE3069283
    assert crc.crc32c_pure(bytes(32)) == 0x8A9136AA
    assert crc.crc32c_pure(b"\xff" * 32) == 0x62A8AB43
    assert crc.crc32c_pure(bytes(range(32))) == 0x46DD794E
    assert crc.crc32c_pure(b"") == 0


@pytest.mark.parametrize("n", [1, 255, 256, 511, 4099, 100_003, 1 << 20])
def test_crc32c_lanes_equal_bytewise(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert crc.crc32c_pure(data) == crc._update_bytes(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    assert crc.crc32c(data) == crc.crc32c_pure(data)


# -- the reader on files TensorFlow wrote ------------------------------------------------------

@needs_official
def test_reads_the_official_index():
    ckpt = TFCheckpoint(OFFICIAL / "deblur.model-675000")
    listed = {}
    for line in (OFFICIAL / "variables.txt").read_text().splitlines():
        if line.startswith("model variables"):
            continue
        head, rest = line.split(" dtype ")
        name, shape = head.split(" ", 1)
        dtype, _, offset, _, size = rest.split()
        listed[name] = (tuple(ast.literal_eval(shape)), int(dtype), int(offset), int(size))
    assert len(listed) == 229
    model = {n for n in ckpt.entries if is_model_variable(n)} | {"Variable"}
    assert model == set(listed)
    for name, (shape, dtype, offset, size) in listed.items():
        e = ckpt.entries[name]
        assert (e.shape, e.dtype, e.offset, e.size) == (shape, dtype, offset, size), name
    shapes = {n: e.shape for n, e in ckpt.entries.items() if is_model_variable(n)}
    config = infer_config(shapes)
    assert config == ModelConfig()  # the paper default, global_residual=False
    assert set(check_architecture(config, shapes).values()) == set(variable_map(ModelConfig()).values())


@needs_official
def test_official_index_without_data_file_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "official.safetensors"
    rc, text = run_cli(capsys, OFFICIAL / "deblur.model-675000.index", "-o", out)
    assert rc == 1
    assert "deblur.model-675000.data-00000-of-00001: missing data file" in text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1
    assert not out.exists()


def test_fixture_converts_and_matches_tensorflow(tiny, tmp_path, capsys):
    out = tmp_path / "tiny.safetensors"
    rc, text = run_cli(capsys, tiny, "-o", out)
    assert rc == 0, text
    assert "step 42" in text
    ckpt = read_checkpoint(out)
    assert ckpt.config == ModelConfig(widths=(2, 4, 8), blocks_per_group=1, kernel_size=3, attention_reduction=2)
    prov = ckpt.extra["provenance"]
    assert prov["step"] == 42
    assert prov["files"] == {p.name: file_sha256(p) for p in sorted(tiny.parent.glob(FIXTURE_PREFIX + ".*"))}
    assert prov["ignored_entries"] > 0  # Adam slots and beta powers are in the file
    model = load_checkpoint(out)
    x = torch.from_numpy(np.load(FIXTURE / "input.npy")).permute(0, 3, 1, 2)
    with torch.no_grad():
        y = model(x).permute(0, 2, 3, 1).numpy()
    assert np.abs(y - np.load(FIXTURE / "tf_output.npy")).max() <= 1e-5


@pytest.mark.parametrize("suffix", [".index", ".data-00000-of-00001"])
def test_import_never_overwrites_the_checkpoint_it_reads(tiny, capsys, suffix):
    target = Path(f"{tiny}{suffix}")
    before = target.read_bytes()
    rc, text = run_cli(capsys, tiny, "-o", target, "--overwrite")
    assert rc == 1 and "the output would overwrite the input" in text
    assert target.read_bytes() == before


def test_prefix_forms(tiny):
    assert resolve_prefix("a/deblur.model-675000.index") == Path("a/deblur.model-675000")
    assert resolve_prefix("a/deblur.model-675000.data-00000-of-00001") == Path("a/deblur.model-675000")
    assert resolve_prefix("a/deblur.model-675000") == Path("a/deblur.model-675000")
    assert resolve_prefix(tiny.parent) == tiny  # a folder with one checkpoint
    shutil.copy(f"{tiny}.index", tiny.parent / "other.index")
    with pytest.raises(VdeblurError, match="give the checkpoint prefix"):
        resolve_prefix(tiny.parent)


def test_every_tensor_checksum_verifies(tiny):
    ckpt = TFCheckpoint(tiny)
    assert ckpt.header.num_shards == 1
    total = sum(ckpt.read(name).nbytes for name in ckpt.entries)
    assert total == os.path.getsize(f"{tiny}.data-00000-of-00001")


# -- bad inputs --------------------------------------------------------------------------------

def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _expect_error(capsys, prefix, out, *needles):
    rc, text = run_cli(capsys, prefix, "-o", out)
    assert rc == 1
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text
    assert not out.exists()
    assert not list(out.parent.glob("*.partial"))


def test_corrupt_tensor_is_a_checksum_error(tiny, tmp_path, capsys):
    entry = TFCheckpoint(tiny).entries["g_net/enc2_1/weights"]
    _flip(Path(f"{tiny}.data-00000-of-00001"), entry.offset + entry.size // 2)
    _expect_error(capsys, tiny, tmp_path / "o.safetensors", "checksum mismatch in tensor g_net/enc2_1/weights")


def test_corrupt_index_is_a_checksum_error(tiny, tmp_path, capsys):
    _flip(Path(f"{tiny}.index"), 40)
    _expect_error(capsys, tiny, tmp_path / "o.safetensors", "checksum mismatch in the index")


@pytest.mark.parametrize("kind, needle", [(1, "snappy-compressed, which this reader does not support"),
                                          (7, "unknown block compression type 7")])
def test_compressed_blocks_are_rejected(tiny, tmp_path, capsys, kind, needle):
    """Bundles are written uncompressed; a table with another block type gets a clear refusal."""
    index = Path(f"{tiny}.index")
    data = bytearray(index.read_bytes())
    footer = data[-48:]
    _, pos = _varint(footer, 0)
    _, pos = _varint(footer, pos)
    offset, pos = _varint(footer, pos)
    size, _ = _varint(footer, pos)
    data[offset + size] = kind  # the index block's compression byte, checksum recomputed to match
    struct.pack_into("<I", data, offset + size + 1, crc.mask(crc.crc32c(bytes(data[offset:offset + size + 1]))))
    index.write_bytes(bytes(data))
    _expect_error(capsys, tiny, tmp_path / "o.safetensors", needle)


def test_truncated_data_file(tiny, tmp_path, capsys):
    data = Path(f"{tiny}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    _expect_error(capsys, tiny, tmp_path / "o.safetensors", "truncated")


def test_truncated_index_file(tiny, tmp_path, capsys):
    index = Path(f"{tiny}.index")
    index.write_bytes(index.read_bytes()[:-20])
    _expect_error(capsys, tiny, tmp_path / "o.safetensors", "not a TensorFlow checkpoint index")


def test_missing_data_file(tiny, tmp_path, capsys):
    Path(f"{tiny}.data-00000-of-00001").unlink()
    _expect_error(capsys, tiny, tmp_path / "o.safetensors", "missing data file")


def test_not_an_index(tmp_path, capsys):
    (tmp_path / "x.index").write_bytes(b"this is a text file, not a table" * 10)
    _expect_error(capsys, tmp_path / "x", tmp_path / "o.safetensors", "not a TensorFlow checkpoint index")
    _expect_error(capsys, tmp_path / "absent", tmp_path / "o.safetensors", "absent.index: no such file")


def test_existing_output_needs_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"keep me")
    rc, text = run_cli(capsys, tiny, "-o", out)
    assert rc == 1 and "already exists" in text and "--overwrite" in text
    assert out.read_bytes() == b"keep me"
    rc, text = run_cli(capsys, tiny, "-o", out, "--overwrite")
    assert rc == 0, text
    assert read_checkpoint(out).extra["provenance"]["step"] == 42


def test_inputs_are_not_modified(tiny, tmp_path, capsys):
    before = {p.name: file_sha256(p) for p in tiny.parent.iterdir()}
    rc, text = run_cli(capsys, tiny, "-o", tmp_path / "sub" / "o.safetensors")
    assert rc == 1 and f"{tmp_path / 'sub'}: output directory does not exist" in text   # a typo makes no folders
    (tmp_path / "sub").mkdir()
    rc, _ = run_cli(capsys, tiny, "-o", tmp_path / "sub" / "o.safetensors")
    assert rc == 0
    after = {p.name: file_sha256(p) for p in tiny.parent.iterdir() if p.is_file()}
    assert after == before


# -- another architecture ------------------------------------------------------------------------

def _shapes(tiny) -> dict[str, tuple[int, ...]]:
    return {n: e.shape for n, e in TFCheckpoint(tiny).entries.items() if is_model_variable(n)}


def test_missing_variable_is_rejected(tiny):
    shapes = _shapes(tiny)
    del shapes["g_net/dec2_1/channel_attention/conv2d-2/biases"]
    with pytest.raises(VdeblurError, match="1 variables missing, e.g. g_net/dec2_1/channel_attention/conv2d-2/biases"):
        check_architecture(infer_config(shapes), shapes)


def test_unexpected_variable_is_rejected(tiny):
    shapes = _shapes(tiny)
    shapes["g_net/convLSTM/weights"] = (3, 3, 8, 32)  # SRN-DeblurNet has one; this network does not
    with pytest.raises(VdeblurError, match="unexpected variables, e.g. g_net/convLSTM/weights"):
        check_architecture(infer_config(shapes), shapes)


def test_misshaped_variable_is_rejected(tiny):
    shapes = _shapes(tiny)
    shapes["g_net/dec1_2/weights"] = (4, 4, 3, 4)
    with pytest.raises(VdeblurError, match=r"g_net/dec1_2/weights has shape \[4, 4, 3, 4\]"):
        check_architecture(infer_config(shapes), shapes)


def test_ablation_without_decoder_spatial_attention_maps(tiny):
    shapes = {n: s for n, s in _shapes(tiny).items() if not (n.startswith("g_net/dec") and "blur_attention" in n)}
    config = infer_config(shapes)
    assert config.spatial_attention_encoder and not config.spatial_attention_decoder and config.channel_attention
    mapping = check_architecture(config, shapes)
    assert not any("spatial" in key for name, key in mapping.items() if name.startswith("g_net/dec"))


def test_foreign_network_is_rejected():
    with pytest.raises(VdeblurError, match="no 4-D variable g_net/enc1_1/weights"):
        infer_config({"generator/conv1/kernel": (3, 3, 3, 64)})
