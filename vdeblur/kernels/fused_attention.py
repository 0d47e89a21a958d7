"""The two Triton kernels of the fused serial attention (contract in ``vdeblur.kernels``).

One source serves three users: torch on CUDA (the launchers below), the TensorRT plugin (PTX from
``compile_kernel``, launched by TensorRT with the ABI "inputs, int32 extras, outputs"), and the
CPU tests (``TRITON_INTERPRET=1``). Tensors are contiguous NCHW; arithmetic is float32 whatever
the storage dtype, so fp16/bf16 round only once, on the store.

Kernel parameter order is the TensorRT AOT ABI and must not change without the plugin:
``sa_pool:  x, w1, b1, w2, b2, hw | part``        grid (POOL_PROGRAMS, B)
``sa_apply: x, res, ca, w1, b1, w2, b2, hw | y``  grid (cdiv(hw, BLOCK), B)
"""

from __future__ import annotations

from dataclasses import dataclass

import triton
import triton.language as tl

from . import POOL_PROGRAMS

NUM_WARPS = 4
#: Elements of the [channels, pixels] tile one program holds in registers.
TILE_ELEMENTS = 4096

#: Triton's pointer type names per storage dtype ("fp32"...) of the model.
TRITON_TYPES = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16"}


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def block_pixels(channels: int) -> int:
    """Pixels per program: the tile stays at ``TILE_ELEMENTS`` whatever the width (16..)."""
    return max(16, TILE_ELEMENTS // next_pow2(channels))


@triton.jit
def _spatial_gate(x, w1_ptr, b1_ptr, w2_ptr, b2_ptr, offs_c, cmask,
                  C: tl.constexpr, HID: tl.constexpr, BLOCK: tl.constexpr):
    """sigmoid(w2 . relu(w1 x + b1) + b2) for a [CP, BLOCK] float32 tile -> [BLOCK]."""
    logit = tl.zeros([BLOCK], dtype=tl.float32) + tl.load(b2_ptr).to(tl.float32)
    for j in tl.static_range(HID):
        w = tl.load(w1_ptr + j * C + offs_c, mask=cmask, other=0.0).to(tl.float32)
        h = tl.sum(x * w[:, None], axis=0) + tl.load(b1_ptr + j).to(tl.float32)
        logit += tl.maximum(h, 0.0) * tl.load(w2_ptr + j).to(tl.float32)
    return tl.sigmoid(logit)


@triton.jit
def _tile_offsets(b, offs_c, offs_p, hw, C: tl.constexpr, CHANNELS_LAST: tl.constexpr):
    """Element offsets of a [channels, pixels] tile of image b, NCHW or NHWC (channels_last)."""
    base = b.to(tl.int64) * C * hw
    if CHANNELS_LAST:
        return base + offs_p[None, :] * C + offs_c[:, None]
    return base + offs_c[:, None] * hw + offs_p[None, :]


@triton.jit
def sa_pool_kernel(x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, hw, part_ptr,
                   C: tl.constexpr, HID: tl.constexpr, CP: tl.constexpr,
                   BLOCK: tl.constexpr, PROGRAMS: tl.constexpr, CHANNELS_LAST: tl.constexpr):
    """Pass 1: program p of image b sums x * SA(x) over pixel blocks p, p + PROGRAMS, ..."""
    pid = tl.program_id(0)
    b = tl.program_id(1)
    offs_c = tl.arange(0, CP)
    cmask = offs_c < C
    acc = tl.zeros([CP], dtype=tl.float32)
    for start in range(pid * BLOCK, hw, PROGRAMS * BLOCK):
        offs_p = start + tl.arange(0, BLOCK)
        mask = cmask[:, None] & (offs_p < hw)[None, :]
        offs = _tile_offsets(b, offs_c, offs_p, hw, C, CHANNELS_LAST)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate = _spatial_gate(x, w1_ptr, b1_ptr, w2_ptr, b2_ptr, offs_c, cmask, C, HID, BLOCK)
        acc += tl.sum(x * gate[None, :], axis=1)
    tl.store(part_ptr + (b * PROGRAMS + pid) * C + offs_c, acc, mask=cmask)


@triton.jit
def sa_apply_kernel(x_ptr, res_ptr, ca_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, hw, y_ptr,
                    C: tl.constexpr, HID: tl.constexpr, CP: tl.constexpr, BLOCK: tl.constexpr,
                    CHANNELS_LAST: tl.constexpr):
    """Pass 2: y = res + x * SA(x) * ca for one block of pixels of image b."""
    pid = tl.program_id(0)
    b = tl.program_id(1)
    offs_c = tl.arange(0, CP)
    cmask = offs_c < C
    offs_p = pid * BLOCK + tl.arange(0, BLOCK)
    mask = cmask[:, None] & (offs_p < hw)[None, :]
    offs = _tile_offsets(b, offs_c, offs_p, hw, C, CHANNELS_LAST)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    gate = _spatial_gate(x, w1_ptr, b1_ptr, w2_ptr, b2_ptr, offs_c, cmask, C, HID, BLOCK)
    ca = tl.load(ca_ptr + b * C + offs_c, mask=cmask, other=0.0).to(tl.float32)
    res = tl.load(res_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = res + x * gate[None, :] * ca[:, None]
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def constexprs(kernel: str, channels: int, hidden: int, channels_last: bool = False) -> dict:
    """The compile-time constants of one specialisation (both the launchers and the AOT path;
    TensorRT's LINEAR format is NCHW, torch on CUDA runs channels_last)."""
    out = {"C": channels, "HID": hidden, "CP": next_pow2(channels), "BLOCK": block_pixels(channels),
           "CHANNELS_LAST": bool(channels_last)}
    if kernel == "sa_pool":
        out["PROGRAMS"] = POOL_PROGRAMS
    return out


# --- torch launchers (CUDA, or CPU tensors under TRITON_INTERPRET=1) ---------------------------

def _dense(x):
    """x as a dense NCHW or channels_last tensor (whichever it nearly is), and which one."""
    import torch

    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format), channels_last


def sa_pool(x, w1, b1, w2, b2):
    """Pass 1 on torch tensors: float32 [B, POOL_PROGRAMS, C] partial channel sums of x * SA(x)."""
    import torch

    b, c, h, w = x.shape
    x, channels_last = _dense(x)
    part = torch.empty(b, POOL_PROGRAMS, c, dtype=torch.float32, device=x.device)
    sa_pool_kernel[(POOL_PROGRAMS, b)](x, w1.contiguous(), b1.contiguous(), w2.contiguous(), b2.contiguous(), h * w,
                                        part, **constexprs("sa_pool", c, w1.shape[0], channels_last), num_warps=NUM_WARPS)
    return part


def sa_apply(x, res, ca, w1, b1, w2, b2):
    """Pass 2 on torch tensors: res + x * SA(x) * ca, in x's dtype and x's memory format."""
    import torch

    b, c, h, w = x.shape
    x, channels_last = _dense(x)
    res = res.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    y = torch.empty_like(x)
    consts = constexprs("sa_apply", c, w1.shape[0], channels_last)
    grid = (triton.cdiv(h * w, consts["BLOCK"]), b)
    sa_apply_kernel[grid](x, res, ca.contiguous(), w1.contiguous(), b1.contiguous(), w2.contiguous(),
                          b2.contiguous(), h * w, y, **consts, num_warps=NUM_WARPS)
    return y


# --- ahead-of-time compilation (TensorRT plugin, PTX tests) -------------------------------------

@dataclass(frozen=True)
class CompiledKernel:
    """What a launcher outside Python needs: entry name, PTX, threads per block, dynamic shared memory."""

    name: str
    ptx: str
    threads: int
    shared: int
    block_pixels: int
    #: Bytes of Triton's global scratch; must be 0, since TensorRT passes no pointer for it.
    global_scratch: int = 0


def signature(kernel: str, dtype: str) -> dict:
    """Triton signature in ABI order: tensor inputs, the int32 pixel count, the output."""
    t = "*" + TRITON_TYPES[dtype]
    if kernel == "sa_pool":
        return {"x_ptr": t, "w1_ptr": t, "b1_ptr": t, "w2_ptr": t, "b2_ptr": t, "hw": "i32", "part_ptr": "*fp32"}
    if kernel == "sa_apply":
        return {"x_ptr": t, "res_ptr": t, "ca_ptr": t, "w1_ptr": t, "b1_ptr": t, "w2_ptr": t, "b2_ptr": t,
                "hw": "i32", "y_ptr": t}
    raise ValueError(f"unknown kernel {kernel!r}")


def compile_kernel(kernel: str, dtype: str, channels: int, hidden: int, capability: int | None = None) -> CompiledKernel:
    """PTX for one (kernel, dtype, C, HID). ``capability`` like 86 targets that GPU without needing
    one (tests, cross builds); None asks Triton's driver for the GPU in this machine."""
    fn = {"sa_pool": sa_pool_kernel, "sa_apply": sa_apply_kernel}[kernel]
    consts = constexprs(kernel, channels, hidden)
    sig = dict(signature(kernel, dtype))
    sig.update({k: "constexpr" for k in consts})
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts)
    target = None
    if capability is not None:
        from triton.backends.compiler import GPUTarget

        target = GPUTarget("cuda", int(capability), 32)
    compiled = triton.compile(src, target=target, options={"num_warps": NUM_WARPS, "enable_fp_fusion": True})
    return CompiledKernel(name=compiled.metadata.name, ptx=compiled.asm["ptx"],
                          threads=compiled.metadata.num_warps * 32, shared=compiled.metadata.shared,
                          block_pixels=consts["BLOCK"],
                          global_scratch=int(getattr(compiled.metadata, "global_scratch_size", 0) or 0))
