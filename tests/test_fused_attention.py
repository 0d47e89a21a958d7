"""The Triton kernels against the torch reference, on the CPU through Triton's interpreter.

TRITON_INTERPRET must be set before ``triton.jit`` decorates the kernels, so it is set here at
import time; the PTX tests (which need the real compiler) run in a subprocess of their own.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton", reason="the fused-attention kernels need triton (pip install 'vdeblur[kernels]')")

from vdeblur.kernels import POOL_PROGRAMS, sa_apply_reference, sa_pool_reference, spatial_weights  # noqa: E402
from vdeblur.network import SerialAttention  # noqa: E402

if os.environ["TRITON_INTERPRET"] != "1":  # pragma: no cover - someone ran the suite with a real GPU compiler
    pytest.skip("kernel numerics are tested under TRITON_INTERPRET=1", allow_module_level=True)

from vdeblur.kernels import fused_attention as fa  # noqa: E402

TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 4e-2}


def _case(channels, h, w, dtype, batch=2, reduction=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    att = SerialAttention(channels, reduction, spatial=True, channel=True)
    for p in att.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.5
    x = torch.randn(batch, channels, h, w, generator=g)
    res = torch.randn(batch, channels, h, w, generator=g)
    return att, x.to(dtype), res.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels,h,w", [(8, 9, 13), (20, 7, 5), (32, 16, 24)])
def test_kernels_match_reference(dtype, channels, h, w):
    att, x, res = _case(channels, h, w, dtype)
    sw = [t.detach().to(dtype) for t in spatial_weights(att.spatial)]
    part = fa.sa_pool(x, *sw)
    assert part.shape == (2, POOL_PROGRAMS, channels) and part.dtype == torch.float32
    ref_sums = sa_pool_reference(x, *sw).sum(1)
    torch.testing.assert_close(part.sum(1), ref_sums, rtol=1e-5, atol=1e-4 * h * w ** 0.5)
    ca = torch.rand(2, channels, 1, 1, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = fa.sa_apply(x, res, ca, *sw)
    ref = sa_apply_reference(x, res, ca, *sw)
    assert y.dtype == dtype and y.shape == x.shape
    err = (y.float() - ref.float()).abs().max().item()
    assert err <= TOL[dtype] * max(1.0, ref.float().abs().max().item())


def test_channels_last_tensors_take_the_nhwc_kernels():
    """torch on CUDA runs channels_last: the kernels read and write it without a layout copy."""
    att, x, res = _case(12, 6, 10, torch.float32)
    sw = [t.detach() for t in spatial_weights(att.spatial)]
    ca = torch.rand(2, 12, 1, 1)
    xl, rl = x.to(memory_format=torch.channels_last), res.to(memory_format=torch.channels_last)
    torch.testing.assert_close(fa.sa_pool(xl, *sw).sum(1), sa_pool_reference(x, *sw).sum(1), rtol=1e-5, atol=1e-4)
    y = fa.sa_apply(xl, rl, ca, *sw)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    torch.testing.assert_close(y, sa_apply_reference(x, res, ca, *sw), rtol=1e-5, atol=1e-5)


def test_fused_block_equals_serial_attention_module():
    """Pool -> channel MLP on the means -> apply reproduces ``res + SerialAttention(x)`` (fp32)."""
    att, x, res = _case(16, 11, 12, torch.float32)
    sw = [t.detach() for t in spatial_weights(att.spatial)]
    with torch.no_grad():
        means = (fa.sa_pool(x, *sw).sum(1) / (11 * 12)).view(2, 16, 1, 1)
        ca = torch.sigmoid(att.channel.fc2(torch.relu(att.channel.fc1(means))))
        fused = fa.sa_apply(x, res, ca, *sw)
        expected = res + att(x)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_pool_contract_is_split_independent():
    """Frames bigger than one sweep of all programs: every pixel is counted exactly once."""
    att, x, _ = _case(128, 72, 64, torch.float32, batch=1, reduction=16)
    sw = [t.detach() for t in spatial_weights(att.spatial)]
    assert 72 * 64 > POOL_PROGRAMS * fa.block_pixels(128)
    torch.testing.assert_close(fa.sa_pool(x, *sw).sum(1), sa_pool_reference(x, *sw).sum(1), rtol=1e-5, atol=1e-3)


def test_torch_custom_ops_fuse_a_network_and_unfuse_it():
    """The CUDA path's custom ops (Triton under the interpreter here) reproduce the unfused model."""
    from vdeblur import ModelConfig, build_model
    from vdeblur.kernels.torch_ops import fuse_attention, unfuse_attention

    with torch.random.fork_rng():
        torch.manual_seed(0)
        # One scale keeps the interpreter's work small (each pool call interprets POOL_PROGRAMS programs).
        model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, num_scales=1)).eval()
        x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        expected = model(x)
        assert fuse_attention(model) == 6
        fused = model(x)
        fused_nhwc = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
        assert unfuse_attention(model) == 6
        again = model(x)
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused_nhwc, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(again, expected)
    x16 = torch.randn(1, 8, 5, 7)
    w = [torch.randn(2, 8), torch.randn(2), torch.randn(2), torch.randn(1)]
    torch.library.opcheck(torch.ops.vdeblur.sa_pool.default, (x16, *w))
    torch.library.opcheck(torch.ops.vdeblur.sa_apply.default, (x16, torch.randn_like(x16), torch.rand(1, 8, 1, 1), *w))
