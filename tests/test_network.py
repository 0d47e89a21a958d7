import numpy as np
import pytest
import torch

from vdeblur.network import (
    DeblurNet,
    ModelConfig,
    build_model,
    count_parameters,
    flops_per_frame,
    pad_to_multiple,
    resize_bilinear,
)

LIGHT = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4)


def test_default_parameter_count_matches_paper():
    with torch.device("meta"):
        assert count_parameters(build_model()) == 6_907_057


def test_flops_per_720p_frame():
    assert abs(flops_per_frame() / 1e12 - 2.35) < 0.01
    assert abs(flops_per_frame(height=368, width=640) / 1e9 - 601) < 1


@pytest.mark.parametrize("switch,delta", [
    # channel attention: per block C*C/16 + C/16 + C/16*C + C parameters, 6 blocks at each width
    ("channel_attention", -sum(6 * (2 * c * (c // 16) + c // 16 + c) for c in (32, 64, 128))),
    # spatial attention: per block C*C/16 + C/16 + C/16 + 1, 3 blocks per width on one side
    ("spatial_attention_encoder", -sum(3 * (c * (c // 16) + 2 * (c // 16) + 1) for c in (32, 64, 128))),
    ("spatial_attention_decoder", -sum(3 * (c * (c // 16) + 2 * (c // 16) + 1) for c in (32, 64, 128))),
])
def test_ablation_switches_remove_their_parameters(switch, delta):
    with torch.device("meta"):
        n = count_parameters(build_model(ModelConfig(**{switch: False})))
    assert n == 6_907_057 + delta


def test_odd_size_restores_to_input_size():
    model = build_model(LIGHT).eval()
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        y = model.restore(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1


def test_restore_is_inference_only():
    """The Python API's restore keeps no autograd graph (5x the memory), so its result converts to numpy."""
    y = build_model(LIGHT).eval().restore(torch.rand(1, 3, 32, 32))
    assert not y.requires_grad and y.numpy().shape == (1, 3, 32, 32)


def test_batch_of_720p_in_light_config():
    model = build_model(LIGHT).eval()
    x = torch.rand(2, 3, 720, 1280)
    with torch.no_grad():
        y = model.restore(x)
    assert y.shape == (2, 3, 720, 1280)
    # the two frames are processed independently
    with torch.no_grad():
        y0 = model.restore(x[:1])
    torch.testing.assert_close(y[:1], y0, atol=1e-5, rtol=1e-5)


def test_pyramid_outputs_coarse_to_fine():
    model = build_model(LIGHT)
    outs = model.forward_pyramid(torch.rand(1, 3, 32, 48))
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 12), (16, 24), (32, 48)]


def test_unpadded_forward_rejects_bad_size():
    with pytest.raises(ValueError, match="multiple of 16"):
        build_model(LIGHT)(torch.rand(1, 3, 30, 32))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_model(LIGHT)
    # Zero biases can leave a 1-unit attention ReLU dead for a given input, which would hide a real
    # disconnection behind chance; small positive biases keep every ReLU alive, so a zero gradient means a broken path.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.fill_(3.0 if ".fc1." in name else 0.05)
    outs = model.forward_pyramid(torch.rand(2, 3, 32, 32))
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, zero


def test_resize_halving_picks_every_other_pixel():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    torch.testing.assert_close(resize_bilinear(x, (4, 4)), x[..., ::2, ::2])


def test_resize_doubling_has_no_half_pixel_offset():
    x = torch.tensor([[[[0.0, 2.0, 4.0]]]])
    y = resize_bilinear(x, (1, 6))
    # source = dest * 0.5: 0, 0.5, 1, 1.5, 2, 2.5 (clamped at the edge)
    torch.testing.assert_close(y, torch.tensor([[[[0.0, 1.0, 2.0, 3.0, 4.0, 4.0]]]]))


def test_strided_conv_uses_tf_same_padding():
    # TF SAME for k=5, s=2 on even sizes pads 1 before and 2 after: output pixel 0 is centred on input pixel 1.
    model = build_model(LIGHT)
    conv = model.module.eg2.conv
    assert conv.pad == (1, 2, 1, 2)
    x = torch.zeros(1, LIGHT.widths[0], 8, 8)
    x[0, 0, 1, 1] = 1.0
    with torch.no_grad():
        conv.conv.weight.zero_()
        conv.conv.bias.zero_()
        conv.conv.weight[0, 0, 2, 2] = 1.0  # the kernel centre
        y = conv(x)
    assert y[0, 0, 0, 0] == 1.0 and y.abs().sum() == 1.0


def test_pad_to_multiple_replicates_edges():
    x = torch.rand(1, 3, 17, 18)
    p = pad_to_multiple(x, 16)
    assert p.shape[-2:] == (32, 32)
    torch.testing.assert_close(p[..., 20, :18], x[..., 16, :])


def test_global_residual_switch_adds_the_input():
    cfg = ModelConfig(widths=(4, 8, 16), blocks_per_group=0, attention_reduction=4, global_residual=True)
    model = build_model(cfg)
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(model(x), x)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        ModelConfig(kernel_size=4)
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"widths": [32, 64, 128], "bogus": 1})
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()
    assert isinstance(DeblurNet().config, ModelConfig)


@pytest.mark.parametrize("bad", [torch.rand(3, 20, 24), torch.rand(1, 4, 20, 24), torch.rand(1, 1, 20, 24),
                                 torch.zeros(1, 3, 20, 24, dtype=torch.uint8), torch.rand(1, 3, 0, 0),
                                 np.zeros((1, 3, 20, 24), np.float32)])
def test_restore_says_what_it_takes(bad):
    """No batch axis gave torch's 'expected input[1, 3, 16, 8] to have 6 channels': misleading."""
    model = build_model(ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4))
    with pytest.raises(ValueError, match=r"restore takes float RGB images in \[0, 1\] as a tensor \(N, 3, H, W\)"):
        model.restore(bad)


def test_load_model_names_a_wrong_argument():
    import vdeblur

    with pytest.raises(TypeError, match="load_model takes a checkpoint path"):
        vdeblur.load_model(5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_restore_takes_any_float_and_answers_in_it(dtype):
    """float64 (numpy's default) gave torch's 'Input type (double) and bias type (float)'."""
    model = build_model(LIGHT)
    x = torch.rand(1, 3, 20, 24)
    y = model.restore(x.to(dtype))
    assert y.dtype == dtype
    assert torch.allclose(y.float(), model.restore(x), atol=2e-2)
