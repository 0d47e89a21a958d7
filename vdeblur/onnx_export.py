"""`vdeblur export`: the network as one ONNX file for ONNX Runtime and TensorRT.

The graph is emitted directly from the module tree rather than traced: the network is a dozen op
kinds, the TF1 resize has an exact ONNX spelling (Resize linear/asymmetric) that tracing the
torch gather-based resize would not produce, and the frame handling that should run on the
device can be written around it. The file takes and returns what the video pipeline has:

    frames uint8 [N, H, W, 3] -> Cast, NHWC->NCHW, /255, edge-pad to a multiple of 16
    -> network -> crop, clamp to [0, 1], *255, round half to even -> restored uint8 [N, H, W, 3]

so only 3 bytes per pixel cross the bus each way (the torch backend's rounding, bit for bit in
fp32). Precision lives in the graph (initializers and activations in fp32/fp16/bf16), which is
what TensorRT 11's strong typing wants.

With plugins (the default) the attention of every residual block becomes two custom nodes in the
dot-free domain ``deblur`` (the contract is in ``vdeblur.kernels``): ``DeblurSAPool`` and
``DeblurSAApply``. Each is also a model-local ONNX function holding the reference body, so ONNX
Runtime runs the same file, and TensorRT uses the fused plugin when it is registered (the parser
prefers a registered plugin over a same-named local function) and the body otherwise.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import VdeblurError
from .fileio import atomic_write, check_output
from .kernels import POOL_PROGRAMS, spatial_weights
from .network import (DecoderGroup, DeblurNet, EncoderDecoder, EncoderGroup, ResidualAttentionBlock,
                      StridedConv)

DOMAIN = "deblur"
DOMAIN_VERSION = 1
#: Opset 18 for fp32/fp16; bf16 Conv/ConvTranspose/Round need opset 22.
OPSET = 18
OPSET_BF16 = 22
POOL_OP = "DeblurSAPool"
APPLY_OP = "DeblurSAApply"
INPUT = "frames"
OUTPUT = "restored"
#: float32 [N]: NaN/Inf values in each restored frame before clamping (the runtime's guard reads it).
NONFINITE = "nonfinite"
PRECISIONS = ("fp32", "fp16", "bf16")
#: "frames": what vdeblur's backends run (uint8 NHWC, plus the NaN guard). "planar": float32 RGB
#: [1, 3, H, W] in [0, 1], one input named "input" and one output, the convention of vs-mlrt
#: (VapourSynth) and avs-mlrt (AviSynth), whose filters feed RGBS clips to any such file.
IO_LAYOUTS = ("frames", "planar")
PLANAR_INPUT, PLANAR_OUTPUT = "input", "output"

_NP_DTYPES = {"fp32": np.float32, "fp16": np.float16}


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise VdeblurError("ONNX export needs the onnx package: pip install 'vdeblur[onnx]'") from None
    return onnx


@dataclass(frozen=True)
class ExportSpec:
    """What shapes and numerics the file has. ``height``/``width`` None = dynamic."""

    precision: str = "fp32"
    plugin: bool = True
    height: int | None = None
    width: int | None = None
    io: str = "frames"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise VdeblurError(f"unknown export precision {self.precision!r}; use {', '.join(PRECISIONS)}")
        if self.io not in IO_LAYOUTS:
            raise VdeblurError(f"unknown export layout {self.io!r}; use {' or '.join(IO_LAYOUTS)}")
        if self.io == "planar" and self.plugin:
            raise VdeblurError("the planar layout is for runtimes without vdeblur's plugins: export it with plain ops (--no-plugin)")
        if (self.height is None) != (self.width is None):
            raise VdeblurError("give both --height and --width, or neither for a dynamic-size model")
        for v in (self.height, self.width):
            if v is not None and v < 1:
                raise VdeblurError(f"frame size must be positive, got {self.height}x{self.width}")

    @property
    def dynamic(self) -> bool:
        return self.height is None


class _GraphBuilder:
    """Accumulates nodes and initializers with unique names; each method emits one small piece."""

    def __init__(self, onnx, precision: str):
        self.onnx = onnx
        self.helper = onnx.helper
        self.precision = precision
        self.elem = {"fp32": onnx.TensorProto.FLOAT, "fp16": onnx.TensorProto.FLOAT16,
                     "bf16": onnx.TensorProto.BFLOAT16}[precision]
        self.nodes: list = []
        self.initializers: dict[str, object] = {}
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, domain: str = "", out: str | None = None,
           **attrs) -> str:
        """Append one node; its output is named ``out`` (a graph output) or a fresh name."""
        out = out or self.fresh(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer (int64/float32 arrays stay as given)."""
        if name not in self.initializers:
            self.initializers[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name)
        return name

    def weight(self, name: str, tensor: torch.Tensor) -> str:
        """A model parameter, stored in the export precision."""
        if name not in self.initializers:
            t = tensor.detach().float().cpu().contiguous()
            if self.precision == "bf16":
                raw = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
                proto = self.helper.make_tensor(name, self.elem, list(t.shape), raw.tobytes(), raw=True)
            else:
                proto = self.onnx.numpy_helper.from_array(t.numpy().astype(_NP_DTYPES[self.precision]), name)
            self.initializers[name] = proto
        return name

    def ints(self, values) -> str:
        key = "i64_" + "_".join(str(int(v)).replace("-", "m") for v in values)
        return self.const(key, np.asarray(values, dtype=np.int64))

    def scalar(self, value: float) -> str:
        """A float scalar in the model precision (so elementwise ops see one dtype)."""
        name = f"{self.precision}_{value!r}".replace(".", "p").replace("-", "m")
        return self.weight(name, torch.tensor(value, dtype=torch.float32))

    # --- layers ---------------------------------------------------------------------------------

    def conv(self, x: str, conv: torch.nn.Module, prefix: str, relu: bool, pads=None) -> str:
        """Conv2d or ConvTranspose2d with the module's stride; ``pads`` (top, left, bottom, right)
        overrides the 'same' padding of a stride-1 conv."""
        k = conv.weight.shape[-1]
        p = k // 2
        attrs = {"kernel_shape": [k, k], "strides": list(conv.stride), "pads": list(pads or (p, p, p, p))}
        if isinstance(conv, torch.nn.ConvTranspose2d):
            attrs["pads"] = [conv.padding[0], conv.padding[1]] * 2
            y = self.op("ConvTranspose", [x, self.weight(f"{prefix}.weight", conv.weight),
                                          self.weight(f"{prefix}.bias", conv.bias)], **attrs)
        else:
            y = self.op("Conv", [x, self.weight(f"{prefix}.weight", conv.weight),
                                 self.weight(f"{prefix}.bias", conv.bias)], **attrs)
        return self.op("Relu", [y]) if relu else y

    def mlp_gate(self, x: str, fc1, fc2, prefix: str) -> str:
        """sigmoid(fc2(relu(fc1(x)))) with 1x1 convs (both attentions' shape)."""
        h = self.conv(x, fc1, f"{prefix}.fc1", relu=True)
        return self.op("Sigmoid", [self.conv(h, fc2, f"{prefix}.fc2", relu=False)])

    def resize(self, x: str, scale: float) -> str:
        """TF1 bilinear: source = dest / scale, no half-pixel offset, no antialias."""
        scales = self.const(f"scales_{scale!r}".replace(".", "p"), np.asarray([1, 1, scale, scale], dtype=np.float32))
        return self.op("Resize", [x, "", scales], mode="linear", coordinate_transformation_mode="asymmetric")

    def pixel_count(self, x: str) -> str:
        """H*W of an NCHW tensor as a float32 scalar (dynamic shapes; constant-folded when static)."""
        hw = self.op("Slice", [self.op("Shape", [x]), self.ints([2]), self.ints([4])])
        prod = self.op("ReduceProd", [hw], keepdims=0)
        return self.op("Cast", [prod], to=self.onnx.TensorProto.FLOAT)

    def attention(self, t: str, skip: str, block: ResidualAttentionBlock, prefix: str, plugin: bool) -> str:
        """The block's serial attention plus the residual add."""
        att = block.attention
        if plugin and att.spatial is not None and att.channel is not None:
            return self.fused_attention(t, skip, att, prefix)
        if att.spatial is not None:
            t = self.op("Mul", [t, self.mlp_gate(t, att.spatial.fc1, att.spatial.fc2, f"{prefix}.spatial")])
        if att.channel is not None:
            pooled = self.op("ReduceMean", [t, self.ints([2, 3])], keepdims=1)
            t = self.op("Mul", [t, self.mlp_gate(pooled, att.channel.fc1, att.channel.fc2, f"{prefix}.channel")])
        return self.op("Add", [skip, t])

    def fused_attention(self, t: str, skip: str, att, prefix: str) -> str:
        """Pool node -> channel MLP on the means (ordinary ops) -> apply node (adds the residual)."""
        sw = [self.weight(f"{prefix}.spatial.{n}", p) for n, p in zip(("w1", "b1", "w2", "b2"), spatial_weights(att.spatial))]
        part = self.op(POOL_OP, [t, *sw], hint="sa_pool", domain=DOMAIN, plugin_namespace=DOMAIN)
        sums = self.op("ReduceSum", [part, self.ints([1])], keepdims=0)
        means = self.op("Div", [sums, self.pixel_count(t)])
        means = self.op("Unsqueeze", [means, self.ints([2, 3])])
        if self.precision != "fp32":
            means = self.op("Cast", [means], to=self.elem)
        ca = self.mlp_gate(means, att.channel.fc1, att.channel.fc2, f"{prefix}.channel")
        return self.op(APPLY_OP, [t, skip, ca, *sw], hint="sa_apply", domain=DOMAIN, plugin_namespace=DOMAIN)

    def block(self, x: str, block: ResidualAttentionBlock, prefix: str, plugin: bool) -> str:
        t = self.conv(x, block.conv1, f"{prefix}.conv1", relu=True)
        t = self.conv(t, block.conv2, f"{prefix}.conv2", relu=False)
        return self.attention(t, x, block, f"{prefix}.attention", plugin)

    def blocks(self, x: str, blocks, prefix: str, plugin: bool) -> str:
        for i, b in enumerate(blocks):
            x = self.block(x, b, f"{prefix}.{i}", plugin)
        return x

    def encoder(self, x: str, g: EncoderGroup, prefix: str, plugin: bool) -> str:
        if isinstance(g.conv, StridedConv):
            top, bottom, left, right = g.conv.pad[2], g.conv.pad[3], g.conv.pad[0], g.conv.pad[1]
            x = self.conv(x, g.conv.conv, f"{prefix}.conv.conv", relu=True, pads=(top, left, bottom, right))
        else:
            x = self.conv(x, g.conv, f"{prefix}.conv", relu=True)
        return self.blocks(x, g.blocks, f"{prefix}.blocks", plugin)

    def decoder(self, x: str, g: DecoderGroup, prefix: str, plugin: bool) -> str:
        x = self.blocks(x, g.blocks, f"{prefix}.blocks", plugin)
        return self.conv(x, g.out, f"{prefix}.out", relu=g.upsample)

    def encoder_decoder(self, x: str, m: EncoderDecoder, plugin: bool) -> str:
        e1 = self.encoder(x, m.eg1, "module.eg1", plugin)
        e2 = self.encoder(e1, m.eg2, "module.eg2", plugin)
        e3 = self.encoder(e2, m.eg3, "module.eg3", plugin)
        d = self.decoder(e3, m.dg1, "module.dg1", plugin)
        d = self.decoder(self.op("Add", [d, e2]), m.dg2, "module.dg2", plugin)
        return self.decoder(self.op("Add", [d, e1]), m.dg3, "module.dg3", plugin)

    def network(self, blurry: str, model: DeblurNet, plugin: bool) -> str:
        """forward(): coarse to fine, each scale sees [blurry at that scale, upsampled prediction]."""
        pred = None
        for level in reversed(range(model.config.num_scales)):
            blur_t = self.resize(blurry, 0.5 ** level) if level else blurry
            prev = blur_t if pred is None else self.resize(pred, 2.0)
            pred = self.encoder_decoder(self.op("Concat", [blur_t, prev], axis=1), model.module, plugin)
            if model.config.global_residual:
                pred = self.op("Add", [pred, blur_t])
        return pred

    # --- frame handling around the network --------------------------------------------------------

    def frames_in(self, frames: str, multiple: int, spec: ExportSpec) -> tuple[str, str]:
        """uint8 NHWC -> padded NCHW in [0, 1]; returns (padded, crop_ends). The uint8 input goes
        straight into a Cast: TensorRT allows UINT8 only at the network boundary."""
        x = self.op("Cast", [frames], to=self.elem)
        x = self.op("Transpose", [x], perm=[0, 3, 1, 2])
        return self.pad(self.op("Div", [x, self.scalar(255.0)]), multiple, spec)

    def planar_in(self, planes: str, multiple: int, spec: ExportSpec) -> tuple[str, str]:
        """float32 NCHW in [0, 1] -> padded, in the model precision; returns (padded, crop_ends)."""
        x = planes if self.precision == "fp32" else self.op("Cast", [planes], to=self.elem)
        return self.pad(x, multiple, spec)

    def pad(self, x: str, multiple: int, spec: ExportSpec) -> tuple[str, str]:
        """Edge-pad NCHW ``x`` to a multiple of ``multiple``; returns (padded, crop_ends)."""
        if not spec.dynamic:
            ph, pw = -spec.height % multiple, -spec.width % multiple
            ends = self.ints([spec.height, spec.width])
            if ph or pw:
                x = self.op("Pad", [x, self.ints([0, 0, 0, 0, 0, 0, ph, pw])], mode="edge")
            return x, ends
        ends = self.op("Slice", [self.op("Shape", [x]), self.ints([2]), self.ints([4])])
        m = self.ints([multiple])
        pad_hw = self.op("Mod", [self.op("Sub", [m, self.op("Mod", [ends, m])]), m])
        pads = self.op("Concat", [self.ints([0, 0, 0, 0, 0, 0]), pad_hw], axis=0)
        return self.op("Pad", [x, pads], mode="edge"), ends

    def frames_out(self, y: str, ends: str) -> tuple[str, str]:
        """Crop, clamp to [0, 1], *255 in float32, round half to even, uint8 NHWC; plus the count
        of non-finite values per frame (clamping would hide them)."""
        y = self.op("Slice", [y, self.ints([0, 0]), ends, self.ints([2, 3])])
        yf = self.op("Cast", [y], to=self.onnx.TensorProto.FLOAT)  # IsInf takes float32 in every opset
        bad = self.op("Or", [self.op("IsNaN", [yf]), self.op("IsInf", [yf])])
        nonfinite = self.op("ReduceSum", [self.op("Cast", [bad], to=self.onnx.TensorProto.FLOAT), self.ints([1, 2, 3])],
                            keepdims=0, out=NONFINITE)
        y = self.op("Clip", [y, self.scalar(0.0), self.scalar(1.0)])
        if self.precision != "fp32":
            y = self.op("Cast", [y], to=self.onnx.TensorProto.FLOAT)
        y = self.op("Round", [self.op("Mul", [y, self.const("f32_255", np.asarray(255.0, dtype=np.float32))])])
        y = self.op("Transpose", [y], perm=[0, 2, 3, 1])
        # The uint8 tensor must be the graph output itself: TensorRT allows UINT8 only at the boundary.
        return self.op("Cast", [y], to=self.onnx.TensorProto.UINT8, out=OUTPUT), nonfinite

    def planar_out(self, y: str, ends: str, planes: str) -> str:
        """Crop and clamp to [0, 1], float32 NCHW. The result is added to ``planes`` * 0, which
        changes no value but ties the output's shape to the input's: vs-mlrt fixes the input's size
        and reads the output's from ONNX shape inference, which cannot follow the dynamic pad and crop."""
        y = self.op("Slice", [y, self.ints([0, 0]), ends, self.ints([2, 3])])
        y = self.op("Clip", [y, self.scalar(0.0), self.scalar(1.0)])
        if self.precision != "fp32":
            y = self.op("Cast", [y], to=self.onnx.TensorProto.FLOAT)
        zeros = self.op("Mul", [planes, self.const("f32_0", np.asarray(0.0, dtype=np.float32))])
        return self.op("Add", [y, zeros], out=PLANAR_OUTPUT)


def _gate_body(helper, TP, x: str, prefix: str = "") -> list:
    """Function-body nodes computing the float32 spatial gate ``g`` of ``x`` from w1, b1, w2, b2."""
    n = helper.make_node
    return [
        n("Cast", [x], ["xf"], to=TP.FLOAT),
        n("Cast", ["w1"], ["w1f"], to=TP.FLOAT),
        n("Cast", ["b1"], ["b1f"], to=TP.FLOAT),
        n("Cast", ["w2"], ["w2f"], to=TP.FLOAT),
        n("Cast", ["b2"], ["b2f"], to=TP.FLOAT),
        n("Constant", [], ["axes23"], value=helper.make_tensor("axes23", TP.INT64, [2], [2, 3])),
        n("Constant", [], ["w2shape"], value=helper.make_tensor("w2shape", TP.INT64, [4], [1, -1, 1, 1])),
        n("Unsqueeze", ["w1f", "axes23"], ["w1k"]),
        n("Reshape", ["w2f", "w2shape"], ["w2k"]),
        n("Conv", ["xf", "w1k", "b1f"], ["h"]),
        n("Relu", ["h"], ["hr"]),
        n("Conv", ["hr", "w2k", "b2f"], ["logit"]),
        n("Sigmoid", ["logit"], ["g"]),
        n("Mul", ["xf", "g"], ["xg"]),
    ]


def attention_functions(onnx, opset: int) -> list:
    """The model-local reference bodies of the two custom ops (float32 math, as the kernels do)."""
    helper, TP = onnx.helper, onnx.TensorProto
    n = helper.make_node
    opsets = [helper.make_opsetid("", opset)]  # must equal the model's, or the checker fails
    pool_body = _gate_body(helper, TP, "x") + [
        n("ReduceSum", ["xg", "axes23"], ["sums"], keepdims=0),
        n("Constant", [], ["axis1"], value=helper.make_tensor("axis1", TP.INT64, [1], [1])),
        n("Unsqueeze", ["sums", "axis1"], ["sums1"]),
        n("Constant", [], ["pads"], value=helper.make_tensor("pads", TP.INT64, [6], [0, 0, 0, 0, POOL_PROGRAMS - 1, 0])),
        n("Pad", ["sums1", "pads"], ["part"]),
    ]
    apply_body = _gate_body(helper, TP, "x") + [
        n("Cast", ["ca"], ["caf"], to=TP.FLOAT),
        n("Cast", ["res"], ["resf"], to=TP.FLOAT),
        n("Mul", ["xg", "caf"], ["scaled"]),
        n("Add", ["resf", "scaled"], ["yf"]),
        n("CastLike", ["yf", "x"], ["y"]),
    ]
    return [
        helper.make_function(DOMAIN, POOL_OP, ["x", "w1", "b1", "w2", "b2"], ["part"], pool_body, opsets,
                             attributes=["plugin_namespace"], doc_string=
                             "float32 [B, %d, C] partial channel sums of x*SA(x); only their sum over axis 1 "
                             "is defined (this body puts it all in part 0)." % POOL_PROGRAMS),
        helper.make_function(DOMAIN, APPLY_OP, ["x", "res", "ca", "w1", "b1", "w2", "b2"], ["y"], apply_body, opsets,
                             attributes=["plugin_namespace"], doc_string="res + x * SA(x) * ca, in x's dtype."),
    ]


def build_onnx(model: DeblurNet, spec: ExportSpec, metadata: dict | None = None):
    """The ModelProto for ``model`` (eval-mode weights are read, never changed)."""
    onnx = require_onnx()
    helper = onnx.helper
    g = _GraphBuilder(onnx, spec.precision)
    h = spec.height if not spec.dynamic else "height"
    w = spec.width if not spec.dynamic else "width"
    float32 = onnx.TensorProto.FLOAT
    with torch.no_grad():
        if spec.io == "planar":
            x, ends = g.planar_in(PLANAR_INPUT, model.config.size_multiple, spec)
            g.planar_out(g.network(x, model, spec.plugin), ends, PLANAR_INPUT)
            inputs = [helper.make_tensor_value_info(PLANAR_INPUT, float32, [1, 3, h, w])]
            outputs = [helper.make_tensor_value_info(PLANAR_OUTPUT, float32, [1, 3, h, w])]
        else:
            x, ends = g.frames_in(INPUT, model.config.size_multiple, spec)
            g.frames_out(g.network(x, model, spec.plugin), ends)
            inputs = [helper.make_tensor_value_info(INPUT, onnx.TensorProto.UINT8, ["batch", h, w, 3])]
            outputs = [helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.UINT8, ["batch", h, w, 3]),
                       helper.make_tensor_value_info(NONFINITE, float32, ["batch"])]
    graph = helper.make_graph(g.nodes, "vdeblur", inputs, outputs, initializer=list(g.initializers.values()))
    opset = OPSET_BF16 if spec.precision == "bf16" else OPSET
    opsets = [helper.make_opsetid("", opset)]
    functions = []
    if spec.plugin:
        opsets.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        functions = attention_functions(onnx, opset)
    proto = helper.make_model(graph, opset_imports=opsets, functions=functions, producer_name="vdeblur")
    # The oldest IR that carries this opset, so older readers (TensorRT's parser) accept the file.
    proto.ir_version = helper.find_min_ir_version_for(opsets[:1])
    meta = {"precision": spec.precision, "plugin": str(spec.plugin).lower(), "io": spec.io,
            "shape": "dynamic" if spec.dynamic else f"{spec.height}x{spec.width}",
            "size_multiple": str(model.config.size_multiple), **(metadata or {})}
    helper.set_model_props(proto, {k: str(v) for k, v in meta.items()})
    return proto


def count_custom_nodes(proto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        if node.domain == DOMAIN:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def write_model(proto, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Atomic write: a partial file never takes the final name."""
    return atomic_write(check_output(path, overwrite), proto.SerializeToString())


def export(weights: str | None, output: str | os.PathLike, spec: ExportSpec, overwrite: bool = False) -> dict:
    """Load weights, build, check and write the file; returns facts for the CLI and the TRT builder."""
    from . import load_model
    from .checkpoint import file_sha256
    from .weights import default_weights_path

    weights_path = Path(weights) if weights else default_weights_path()
    check_output(output, overwrite, inputs=[weights_path])  # fail before the work, not after
    model = load_model(weights_path)
    sha = file_sha256(weights_path)
    t0 = time.perf_counter()
    proto = build_onnx(model, spec, {"weights_sha256": sha, "weights": weights_path.name})
    require_onnx().checker.check_model(proto)
    path = write_model(proto, output, overwrite)
    return {"path": str(path), "seconds": time.perf_counter() - t0, "bytes": path.stat().st_size,
            "weights_sha256": sha, "custom_nodes": count_custom_nodes(proto), "nodes": len(proto.graph.node)}


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write the network as ONNX, for ONNX Runtime, TensorRT or VapourSynth (vs-mlrt)")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--height", type=int, help="fixed frame height (with --width); default: dynamic")
    p.add_argument("--width", type=int, help="fixed frame width (with --height)")
    p.add_argument("--dynamic", action="store_true", help="any frame size (the default when no size is given)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="numeric type inside the graph (default fp32)")
    p.add_argument("--no-plugin", action="store_true", help="plain ONNX ops instead of the fused-attention custom nodes")
    p.add_argument("--io", choices=IO_LAYOUTS, default="frames",
                   help="frames: uint8 [N, H, W, 3] in and out, what vdeblur's onnxruntime and tensorrt backends run "
                        "(default); planar: float32 RGB [1, 3, H, W] in [0, 1] in and out, plain ops, for vs-mlrt's "
                        "VapourSynth filters (vsmlrt.inference) and avs-mlrt")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.dynamic and (args.height or args.width):
        raise VdeblurError("--dynamic conflicts with --height/--width")
    spec = ExportSpec(precision=args.precision, plugin=not args.no_plugin and args.io == "frames",
                      height=args.height, width=args.width, io=args.io)
    info = export(args.weights, args.output, spec, overwrite=args.overwrite)
    nodes = ", ".join(f"{v} {k}" for k, v in sorted(info["custom_nodes"].items())) or "no custom nodes"
    layout = "uint8 frames" if spec.io == "frames" else "float32 RGB planes"
    print(f"wrote {info['path']} ({info['bytes'] / 2**20:.1f} MiB, {info['nodes']} nodes: {nodes}; {layout}, "
          f"{spec.precision}, {'dynamic size' if spec.dynamic else f'{spec.height}x{spec.width}'}) in {info['seconds']:.2f} s")
    return 0
