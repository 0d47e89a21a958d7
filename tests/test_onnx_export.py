"""The exported graph: structure, checker, and ONNX Runtime against torch (with and without plugins)."""

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from vdeblur import ModelConfig, build_model, save_checkpoint  # noqa: E402
from vdeblur.cli import main  # noqa: E402
from vdeblur.onnx_export import DOMAIN, ExportSpec, build_onnx, count_custom_nodes  # noqa: E402

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4)


@pytest.fixture(scope="module")
def tiny_model():
    with torch.random.fork_rng():  # leave the global RNG as other tests expect it
        torch.manual_seed(0)
        model = build_model(TINY).eval()
        for m in model.modules():  # non-zero biases, so a misplaced bias cannot hide
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.normal_(m.bias, 0.0, 0.1)
    return model


def _frames(n=2, h=64, w=96, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n, h, w, 3), dtype=np.uint8)


def _torch_restore(model, frames):
    with torch.no_grad():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        return model.restore(x)


def _float_output(proto):
    """Expose the clamped [0, 1] image (before *255 and rounding) as a second graph output."""
    clip = next(n for n in proto.graph.node if n.op_type == "Clip")
    elem = next(i.data_type for i in proto.graph.initializer if i.name.startswith("module."))
    proto.graph.output.append(onnx.helper.make_tensor_value_info(clip.output[0], elem, ["batch", 3, "h", "w"]))
    return proto


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def test_default_config_custom_nodes_and_checker():
    with torch.device("meta"):
        n_blocks = 6 * ModelConfig().blocks_per_group * ModelConfig().num_scales
    assert n_blocks == 54  # 18 blocks per encoder-decoder, run at 3 scales
    model = build_model(ModelConfig()).eval()
    proto = build_onnx(model, ExportSpec(height=64, width=96))
    assert count_custom_nodes(proto) == {"DeblurSAPool": n_blocks, "DeblurSAApply": n_blocks}
    for node in proto.graph.node:
        if node.domain == DOMAIN:
            assert {a.name: a.s for a in node.attribute} == {"plugin_namespace": DOMAIN.encode()}
            assert len(node.input) == (5 if node.op_type == "DeblurSAPool" else 7)
    assert {f.name for f in proto.functions} == {"DeblurSAPool", "DeblurSAApply"}
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", 18), (DOMAIN, 1)}
    onnx.checker.check_model(proto, full_check=True)
    plain = build_onnx(model, ExportSpec(height=64, width=96, plugin=False))
    assert count_custom_nodes(plain) == {} and not plain.functions
    onnx.checker.check_model(plain, full_check=True)


@pytest.mark.parametrize("plugin", [True, False])
@pytest.mark.parametrize("size", [(64, 96), None])
def test_onnxruntime_matches_torch_fp32(tiny_model, plugin, size):
    frames = _frames(h=70, w=90) if size is None else _frames()
    spec = ExportSpec(plugin=plugin, height=size and size[0], width=size and size[1])
    proto = _float_output(build_onnx(tiny_model, spec))
    onnx.checker.check_model(proto, full_check=True)
    out_u8, nonfinite, out_f = _session(proto).run(None, {"frames": frames})
    assert nonfinite.shape == (len(frames),) and not nonfinite.any()
    ref = _torch_restore(tiny_model, frames)
    assert np.abs(out_f - ref.numpy()).max() < 1e-4
    ref_u8 = (ref * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert out_u8.dtype == np.uint8 and out_u8.shape == frames.shape
    diff = np.abs(out_u8.astype(int) - ref_u8)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # only values on a rounding boundary


def test_fp16_export_runs_close_and_bf16_passes_checker(tiny_model):
    frames = _frames(n=1)
    ref = _torch_restore(tiny_model, frames).numpy()
    proto = _float_output(build_onnx(tiny_model, ExportSpec(precision="fp16", height=64, width=96)))
    onnx.checker.check_model(proto, full_check=True)
    init_types = {i.data_type for i in proto.graph.initializer if i.name.startswith("module.")}
    assert init_types == {onnx.TensorProto.FLOAT16}
    _, _, out_f = _session(proto).run(None, {"frames": frames})
    assert np.abs(out_f.astype(np.float32) - ref).max() < 2e-2
    bf16 = build_onnx(tiny_model, ExportSpec(precision="bf16"))
    onnx.checker.check_model(bf16, full_check=True)
    assert {i.data_type for i in bf16.graph.initializer if i.name.startswith("module.")} == {onnx.TensorProto.BFLOAT16}


def test_nonfinite_output_counts_nan_and_inf(tiny_model):
    """The guard output sees NaN/Inf that the clamp would turn into ordinary pixels."""
    broken = build_model(TINY).eval()
    broken.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        broken.module.dg3.out.bias[0] = float("nan")
        broken.module.dg3.out.bias[1] = float("inf")
    out_u8, nonfinite = _session(build_onnx(broken, ExportSpec(height=32, width=48))).run(None, {"frames": _frames(h=32, w=48)})
    assert out_u8.shape == (2, 32, 48, 3)
    # The coarse scales' broken prediction feeds the finer ones, so every value ends up non-finite.
    assert nonfinite.tolist() == [3 * 32 * 48] * 2


def test_export_cli_writes_and_refuses_overwrite(tiny_model, tmp_path, capsys):
    weights = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model)
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(weights), "-o", str(out), "--height", "64", "--width", "96"]) == 0
    assert "18 DeblurSAApply" in capsys.readouterr().out
    proto = onnx.load(out)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["shape"] == "64x96" and meta["precision"] == "fp32" and len(meta["weights_sha256"]) == 64
    before = out.read_bytes()
    assert main(["export", "--weights", str(weights), "-o", str(out), "--no-plugin"]) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export", "--weights", str(weights), "-o", str(out), "--no-plugin", "--overwrite"]) == 0
    assert count_custom_nodes(onnx.load(out)) == {}
    assert main(["export", "--weights", str(weights), "-o", str(out), "--height", "64"]) == 1
    assert "both --height and --width" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*partial"))


def test_export_never_overwrites_its_weights(tiny_model, tmp_path, capsys):
    weights = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model)
    before = weights.read_bytes()
    (tmp_path / "alias.safetensors").hardlink_to(weights)
    for target in (weights, tmp_path / "alias.safetensors"):
        assert main(["export", "--weights", str(weights), "-o", str(target), "--overwrite"]) == 1
        assert "the output would overwrite the input" in capsys.readouterr().err
    assert weights.read_bytes() == before


def test_export_to_a_dash_is_refused_not_a_file_named_dash(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "-o", "-"]) == 1
    assert capsys.readouterr().err == "vdeblur: error: -o -: this command writes a file, not standard output; give a file name\n"
    assert list(tmp_path.iterdir()) == []


def _as_vs_mlrt_loads(proto, height, width):
    """What vs-mlrt's loader does to a file before its runtime sees it: batch 1 and the tile size
    written into the input, the output's height and width cleared, then ONNX shape inference."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for dim, value in zip(fixed.graph.input[0].type.tensor_type.shape.dim, (1, None, height, width)):
        if value is not None:
            dim.dim_value = value
    for dim in list(fixed.graph.output[0].type.tensor_type.shape.dim)[2:]:
        dim.Clear()
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed, strict_mode=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_planar_layout_for_vs_mlrt_matches_torch(tiny_model, precision):
    """float32 RGB [1, 3, H, W] in and out, one input "input" and one output, plain ops; any size."""
    proto = build_onnx(tiny_model, ExportSpec(precision=precision, plugin=False, io="planar"))
    onnx.checker.check_model(proto, full_check=True)
    assert count_custom_nodes(proto) == {} and not proto.functions
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "output")
    for value in (inp, out):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_value for d in dims[:2]] == [1, 3] and [d.dim_param for d in dims[2:]] == ["height", "width"]
    frames = _frames(n=1, h=70, w=90)   # not a multiple of 16: the graph pads and crops
    loaded = _as_vs_mlrt_loads(proto, 70, 90)
    assert [d.dim_value for d in loaded.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 70, 90]
    planes = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / 255
    (restored,) = _session(loaded).run(None, {"input": planes})
    ref = _torch_restore(tiny_model, frames).numpy()
    assert restored.dtype == np.float32 and restored.shape == planes.shape
    assert restored.min() >= 0 and restored.max() <= 1
    assert np.abs(restored - ref).max() < (1e-4 if precision == "fp32" else 2e-2)


def test_planar_layout_needs_plain_ops_and_is_not_for_vdeblurs_backends(tiny_model, tmp_path, capsys):
    from vdeblur.backends.onnxruntime_backend import OnnxRuntimeBackend
    from vdeblur.errors import VdeblurError

    with pytest.raises(VdeblurError, match="--no-plugin"):
        ExportSpec(io="planar")
    weights = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model)
    out = tmp_path / "planar.onnx"
    assert main(["export", "--weights", str(weights), "-o", str(out), "--io", "planar", "--height", "48", "--width", "64"]) == 0
    assert "no custom nodes; float32 RGB planes, fp32, 48x64" in capsys.readouterr().out
    proto = onnx.load(out)
    assert {p.key: p.value for p in proto.metadata_props}["io"] == "planar"
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 48, 64]
    with pytest.raises(VdeblurError, match="planar export"):
        OnnxRuntimeBackend(onnx=str(out), weights=str(weights))


def test_export_never_renames_over_a_device_or_pipe(tiny_model, tmp_path, capsys):
    """`-o /dev/null --overwrite` as root replaced the system's /dev/null with a regular file."""
    import os
    import stat

    weights = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model)
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    assert main(["export", "--weights", str(weights), "-o", str(fifo), "--overwrite"]) == 1
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(fifo.stat().st_mode)
