"""Fused serial attention: the op contract shared by the Triton kernels, the ONNX export and the
TensorRT plugin, plus its torch reference.

A residual attention block ends in ``out = res + Y * CA(mean(Y))`` with ``Y = X * SA(X)`` (spatial
attention first, channel attention pooled over Y: the shipped model's serial order). Pooling
needs the whole image before any output pixel can be written, so the fused form has two passes
and never writes Y:

1. ``sa_pool(x, w1, b1, w2, b2) -> partial`` float32 ``[B, POOL_PROGRAMS, C]``: channel sums of
   ``X * SA(X)`` split over ``POOL_PROGRAMS`` parts (how the pixels are split is the
   implementation's business; only the sum over axis 1 is meaningful). A fixed part count keeps
   the output shape independent of H and W and needs neither atomics nor a zeroed buffer.
2. the tiny channel-attention MLP on ``sum / (H*W)`` (ordinary ops),
3. ``sa_apply(x, res, ca, w1, b1, w2, b2) -> res + X * SA(X) * ca``, recomputing SA.

Spatial-attention weights are flattened: ``w1 [HID, C]``, ``b1 [HID]``, ``w2 [HID]``, ``b2 [1]``.
"""

from __future__ import annotations

import torch

#: Parts of the pooled channel sums per image; >= the SM count of current GPUs so pass 1 fills them.
POOL_PROGRAMS = 128


def spatial_weights(spatial) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The flattened (w1, b1, w2, b2) of a ``network.SpatialAttention`` module."""
    hid, c = spatial.fc1.weight.shape[:2]
    return (spatial.fc1.weight.reshape(hid, c), spatial.fc1.bias.reshape(hid),
            spatial.fc2.weight.reshape(hid), spatial.fc2.bias.reshape(1))


def spatial_gate(x, w1, b1, w2, b2) -> torch.Tensor:
    """SA(x) as a [B, 1, H, W] gate, computed in float32."""
    xf = x.float()
    h = torch.relu(torch.einsum("jc,bchw->bjhw", w1.float(), xf) + b1.float().view(1, -1, 1, 1))
    return torch.sigmoid(torch.einsum("j,bjhw->bhw", w2.float(), h) + b2.float()).unsqueeze(1)


def sa_pool_reference(x, w1, b1, w2, b2) -> torch.Tensor:
    """Pass 1 in torch: all of the sum in part 0, zeros in the others (the contract allows any split)."""
    sums = (x.float() * spatial_gate(x, w1, b1, w2, b2)).sum(dim=(2, 3))
    out = torch.zeros(x.shape[0], POOL_PROGRAMS, x.shape[1], dtype=torch.float32, device=x.device)
    out[:, 0] = sums
    return out


def sa_apply_reference(x, res, ca, w1, b1, w2, b2) -> torch.Tensor:
    """Pass 2 in torch: ``res + x * SA(x) * ca`` in float32, rounded once to x's dtype."""
    y = res.float() + x.float() * spatial_gate(x, w1, b1, w2, b2) * ca.float().view(x.shape[0], -1, 1, 1)
    return y.to(x.dtype)
