"""The fused-attention TensorRT plugins: ``tensorrt.plugin`` (QDP) registrations with ahead-of-time
implementations, so the engine carries the Triton kernels' PTX and runs without Python, torch or
Triton (TensorRT >= 10.9).

Design (``shared/notes/tensorrt.md`` section 2.1): only tensor inputs, no attributes (AOT passes
attributes positionally and serialises none; scalar extras can only be int32), namespace = ONNX
domain = ``deblur`` (dot-free, as QDP requires), op names that no ONNX op has. TensorRT launches
the kernel with the ABI "input pointers, int32 extras, output pointers"; the kernels' parameter
lists follow it (tests check the PTX entry). Only ``aot_impl`` is defined, so plugin creation
needs no PREFER_AOT flag and no ``aot`` node attribute.

Not ``from __future__ import annotations``: the QDP validator inspects real annotation objects.
"""

from typing import Tuple, Union

from ..kernels import POOL_PROGRAMS
from ..onnx_export import APPLY_OP, DOMAIN, POOL_OP
from . import import_tensorrt

_state = {"registered": False, "capability": None}


def launch_geometry(kernel: str, batch, hw, block_pixels: int, cdiv):
    """(grid_x, grid_y) of a kernel; ``cdiv`` is ``trtp.cdiv`` for symbolic shapes or an int version."""
    if kernel == "sa_pool":
        return POOL_PROGRAMS, batch
    return cdiv(hw, block_pixels), batch


def storage_type(trt, dtype) -> str:
    names = {trt.DataType.FLOAT: "fp32", trt.DataType.HALF: "fp16", trt.DataType.BF16: "bf16"}
    if dtype not in names:
        raise ValueError(f"fused attention supports float32/float16/bfloat16 tensors, got {dtype}")
    return names[dtype]


def ensure_registered(capability: int | None = None) -> None:
    """Register both plugins once per process, before the ONNX parser runs. ``capability`` (e.g. 86)
    pins the PTX target; None lets Triton ask the driver for this machine's GPU."""
    if _state["registered"]:
        return
    trt = import_tensorrt()
    import tensorrt.plugin as trtp

    _state["capability"] = capability

    def _aot(kernel: str, x, w1):
        """Compile ``kernel`` for x's dtype/channels and describe its launch symbolically."""
        from ..kernels.fused_attention import compile_kernel

        channels, hidden = x.shape_expr[1], w1.shape_expr[0]
        if not (channels.is_constant and hidden.is_constant):
            raise ValueError("fused attention needs build-time channel counts")
        ck = compile_kernel(kernel, storage_type(trt, x.dtype), channels.constant_value(), hidden.constant_value(),
                            _state["capability"])
        batch = x.shape_expr[0]
        hw = x.shape_expr[2] * x.shape_expr[3]
        grid_x, grid_y = launch_geometry(kernel, batch, hw, ck.block_pixels, trtp.cdiv)
        params = trtp.KernelLaunchParams()
        params.grid_x = grid_x
        params.grid_y = grid_y
        params.block_x = ck.threads
        params.shared_mem = ck.shared
        extra = trtp.SymIntExprs(1)
        extra[0] = trtp.SymInt32(hw)
        return ck.name, ck.ptx, params, extra

    @trtp.register(f"{DOMAIN}::{POOL_OP}")
    def sa_pool_desc(x: trtp.TensorDesc, w1: trtp.TensorDesc, b1: trtp.TensorDesc, w2: trtp.TensorDesc,
                     b2: trtp.TensorDesc) -> Tuple[trtp.TensorDesc]:
        return (trtp.from_shape_expr((x.shape_expr[0], POOL_PROGRAMS, x.shape_expr[1]), dtype=trt.float32),)

    @trtp.aot_impl(f"{DOMAIN}::{POOL_OP}")
    def sa_pool_aot(x: trtp.TensorDesc, w1: trtp.TensorDesc, b1: trtp.TensorDesc, w2: trtp.TensorDesc,
                    b2: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc], tactic: int
                    ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        return _aot("sa_pool", x, w1)

    @trtp.register(f"{DOMAIN}::{APPLY_OP}")
    def sa_apply_desc(x: trtp.TensorDesc, res: trtp.TensorDesc, ca: trtp.TensorDesc, w1: trtp.TensorDesc,
                      b1: trtp.TensorDesc, w2: trtp.TensorDesc, b2: trtp.TensorDesc) -> Tuple[trtp.TensorDesc]:
        return (x.like(),)

    @trtp.aot_impl(f"{DOMAIN}::{APPLY_OP}")
    def sa_apply_aot(x: trtp.TensorDesc, res: trtp.TensorDesc, ca: trtp.TensorDesc, w1: trtp.TensorDesc,
                     b1: trtp.TensorDesc, w2: trtp.TensorDesc, b2: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc],
                     tactic: int) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        return _aot("sa_apply", x, w1)

    _state["registered"] = True
