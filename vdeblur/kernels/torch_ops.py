"""The fused attention as torch custom ops (``torch.library``), for the CUDA path of torch.

``vdeblur::sa_pool`` and ``vdeblur::sa_apply`` run the same Triton kernels the TensorRT plugin
carries, so one kernel serves both and is tested once. On CUDA tensors they launch Triton; on
CPU tensors they run the torch reference (or the Triton kernels when ``TRITON_INTERPRET=1``, which
is how the CPU tests exercise this path). ``fuse_attention(model)`` switches a network's residual
attention blocks to the fused form in place and ``unfuse_attention`` switches back (same weights,
same state dict), so the unfused reference stays one call away for comparisons.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..network import ResidualAttentionBlock
from . import POOL_PROGRAMS, sa_apply_reference, sa_pool_reference, spatial_weights


def _use_triton(x: torch.Tensor) -> bool:
    return x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


@torch.library.custom_op("vdeblur::sa_pool", mutates_args=())
def sa_pool(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """float32 [B, POOL_PROGRAMS, C] partial channel sums of x * SA(x)."""
    if _use_triton(x):
        from . import fused_attention

        return fused_attention.sa_pool(x, w1, b1, w2, b2)
    return sa_pool_reference(x, w1, b1, w2, b2)


@sa_pool.register_fake
def _(x, w1, b1, w2, b2):
    return x.new_empty((x.shape[0], POOL_PROGRAMS, x.shape[1]), dtype=torch.float32)


@torch.library.custom_op("vdeblur::sa_apply", mutates_args=())
def sa_apply(x: torch.Tensor, res: torch.Tensor, ca: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
             w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """res + x * SA(x) * ca, in x's dtype."""
    if _use_triton(x):
        from . import fused_attention

        return fused_attention.sa_apply(x, res, ca, w1, b1, w2, b2)
    return sa_apply_reference(x, res, ca, w1, b1, w2, b2)


@sa_apply.register_fake
def _(x, res, ca, w1, b1, w2, b2):
    return torch.empty_like(x)


class FusedResidualAttentionBlock(ResidualAttentionBlock):
    """A residual attention block whose serial attention and residual add run as the two fused ops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv2(F.relu(self.conv1(x)))
        att = self.attention
        sw = spatial_weights(att.spatial)
        b, c, h, w = t.shape
        means = (torch.ops.vdeblur.sa_pool(t, *sw).sum(dim=1) / (h * w)).to(t.dtype).view(b, c, 1, 1)
        ca = torch.sigmoid(att.channel.fc2(F.relu(att.channel.fc1(means))))
        return torch.ops.vdeblur.sa_apply(t, x, ca, *sw)


def fuse_attention(model: torch.nn.Module) -> int:
    """Switch every block that has both attentions to the fused ops; returns how many were switched."""
    n = 0
    for m in model.modules():
        if type(m) is ResidualAttentionBlock and m.attention.spatial is not None and m.attention.channel is not None:
            m.__class__ = FusedResidualAttentionBlock
            n += 1
    return n


def unfuse_attention(model: torch.nn.Module) -> int:
    """Back to the reference blocks (for A/B comparisons)."""
    n = 0
    for m in model.modules():
        if type(m) is FusedResidualAttentionBlock:
            m.__class__ = ResidualAttentionBlock
            n += 1
    return n
