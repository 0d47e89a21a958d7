"""The attentive multi-scale deblurring network (Xu, Zhu, Quan, Ji, CVIU 2021).

Follows the authors' TensorFlow implementation exactly (see the model card and
``notes/official-checkpoint.md``): serial spatial-then-channel attention, ReLU after every
conv except the block's second conv, the attentions' last 1x1 convs and the final conv,
TF 'SAME' padding (stride-2 convs pad 1 before and 2 after) and bilinear resizing without
the half-pixel offset, so that the published TensorFlow weights reproduce TF's output.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Frames are padded to a multiple of this: three scales (1, 1/2, 1/4), then two stride-2 stages.
SIZE_MULTIPLE = 16


#: Channels per level at most: 8x the paper's widest (64x its weights).
MAX_WIDTH = 1024


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the network; saved in every checkpoint."""

    widths: tuple[int, int, int] = (32, 64, 128)
    blocks_per_group: int = 3
    kernel_size: int = 5
    num_scales: int = 3
    attention_reduction: int = 16
    channel_attention: bool = True
    spatial_attention_encoder: bool = True
    spatial_attention_decoder: bool = True
    # Predict the image as blurry input + correction. Not in the paper's model (its published
    # weights need False); it speeds up training on a small budget.
    global_residual: bool = False

    def __post_init__(self):
        # Strict types: a damaged checkpoint's 1.5 or "2" fails here, in one line, not deep in torch.
        whole = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)   # noqa: E731
        if isinstance(self.widths, (str, bytes)) or not isinstance(self.widths, Iterable) \
                or not all(whole(w) for w in self.widths):
            raise ValueError(f"widths must be three whole channel counts, got {self.widths!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and not whole(value):
                raise ValueError(f"{f.name} must be a whole number, got {value!r}")
            if f.type in ("bool", bool) and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be true or false, got {value!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) != 3 or min(self.widths) < 1 or max(self.widths) > MAX_WIDTH:
            raise ValueError(f"widths must be three channel counts from 1 to {MAX_WIDTH}, got {self.widths}")
        if not 3 <= self.kernel_size <= 15 or self.kernel_size % 2 == 0:   # 1: a stride-2 conv has no SAME padding
            raise ValueError(f"kernel_size must be odd, from 3 to 15, got {self.kernel_size}")
        # Upper bounds too: a checkpoint's config is read before its weights, and 10**7 blocks hung
        # building the network while 10**12 channels overflowed torch.
        if not 0 <= self.blocks_per_group <= 64 or not 1 <= self.num_scales <= 6 \
                or not 1 <= self.attention_reduction <= MAX_WIDTH:
            raise ValueError(f"blocks_per_group must be 0-64, num_scales 1-6, attention_reduction 1-{MAX_WIDTH}")

    @property
    def size_multiple(self) -> int:
        return 4 * 2 ** (self.num_scales - 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize as TF1 ``resize_images`` does it: source = dest * in/out, no half-pixel
    offset, no antialiasing (ONNX Resize "asymmetric"). Halving therefore picks every other pixel."""
    in_h, in_w = x.shape[-2:]
    out_h, out_w = size
    if (in_h, in_w) == (out_h, out_w):
        return x
    x = _lerp_axis(x, -2, in_h, out_h)
    return _lerp_axis(x, -1, in_w, out_w)


def _lerp_axis(x: torch.Tensor, dim: int, n_in: int, n_out: int) -> torch.Tensor:
    if n_in == n_out:
        return x
    src = torch.arange(n_out, device=x.device, dtype=torch.float32) * (n_in / n_out)
    i0 = src.floor().to(torch.long).clamp_(max=n_in - 1)
    i1 = (i0 + 1).clamp_(max=n_in - 1)
    frac = (src - i0.to(torch.float32)).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = n_out
    frac = frac.view(shape)
    a = x.index_select(dim, i0)
    b = x.index_select(dim, i1)
    return a + (b - a) * frac


class SpatialAttention(nn.Module):
    """Per-pixel weight in [0, 1]: sigmoid(W2 relu(W1 x)), W1: C -> C/r, W2: C/r -> 1 (eq. 4)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x))))


class ChannelAttention(nn.Module):
    """Per-channel weight in [0, 1] from the global mean: sigmoid(V2 relu(V1 mean(x))) (eq. 5)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))


class SerialAttention(nn.Module):
    """Spatial attention, then channel attention computed from its output (the shipped model)."""

    def __init__(self, channels: int, reduction: int, spatial: bool, channel: bool):
        super().__init__()
        self.spatial = SpatialAttention(channels, reduction) if spatial else None
        self.channel = ChannelAttention(channels, reduction) if channel else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial is not None:
            x = x * self.spatial(x)
        if self.channel is not None:
            x = x * self.channel(x)
        return x


class ResidualAttentionBlock(nn.Module):
    """RAB (Fig. 3): x + Att(conv(relu(conv(x))))."""

    def __init__(self, channels: int, kernel_size: int, reduction: int, spatial: bool, channel: bool):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.attention = SerialAttention(channels, reduction, spatial, channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.conv2(F.relu(self.conv1(x))))


class StridedConv(nn.Module):
    """Stride-2 conv with TF 'SAME' padding on even sizes: (k-2)//2 before, (k-1)//2 after."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int):
        super().__init__()
        total = kernel_size - 2
        self.pad = (total // 2, total - total // 2) * 2
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


def _blocks(cfg: ModelConfig, channels: int, spatial: bool) -> nn.Sequential:
    return nn.Sequential(*[
        ResidualAttentionBlock(channels, cfg.kernel_size, cfg.attention_reduction, spatial, cfg.channel_attention)
        for _ in range(cfg.blocks_per_group)
    ])


class EncoderGroup(nn.Module):
    """EG: a conv (stride 1 for the first group, 2 after) + ReLU, then RABs."""

    def __init__(self, cfg: ModelConfig, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        if stride == 1:
            self.conv = nn.Conv2d(in_ch, out_ch, cfg.kernel_size, padding=cfg.kernel_size // 2)
        else:
            self.conv = StridedConv(in_ch, out_ch, cfg.kernel_size)
        self.blocks = _blocks(cfg, out_ch, cfg.spatial_attention_encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu(self.conv(x)))


class DecoderGroup(nn.Module):
    """DG: RABs, then a 4x4 stride-2 transposed conv + ReLU (or, last, a conv to RGB)."""

    def __init__(self, cfg: ModelConfig, channels: int, out_ch: int, upsample: bool):
        super().__init__()
        self.blocks = _blocks(cfg, channels, cfg.spatial_attention_decoder)
        self.upsample = upsample
        if upsample:
            # TF 'SAME' for a 4x4 stride-2 transposed conv equals PyTorch padding=1.
            self.out = nn.ConvTranspose2d(channels, out_ch, 4, stride=2, padding=1)
        else:
            self.out = nn.Conv2d(channels, out_ch, cfg.kernel_size, padding=cfg.kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.out(self.blocks(x))
        return F.relu(x) if self.upsample else x


class EncoderDecoder(nn.Module):
    """One module M_t (Fig. 2): three encoder groups, three decoder groups, additive skips."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w1, w2, w3 = cfg.widths
        self.eg1 = EncoderGroup(cfg, 6, w1, stride=1)
        self.eg2 = EncoderGroup(cfg, w1, w2, stride=2)
        self.eg3 = EncoderGroup(cfg, w2, w3, stride=2)
        self.dg1 = DecoderGroup(cfg, w3, w2, upsample=True)
        self.dg2 = DecoderGroup(cfg, w2, w1, upsample=True)
        self.dg3 = DecoderGroup(cfg, w1, 3, upsample=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.eg1(x)
        e2 = self.eg2(e1)
        e3 = self.eg3(e2)
        d = self.dg1(e3)
        d = self.dg2(d + e2)
        return self.dg3(d + e1)


class DeblurNet(nn.Module):
    """T scales sharing one EncoderDecoder; coarse-to-fine, each scale sees [blurry, upsampled prediction]."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.config = cfg or ModelConfig()
        self.module = EncoderDecoder(self.config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases (the official initialisation)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_pyramid(self, blurry: torch.Tensor) -> list[torch.Tensor]:
        """Outputs at every scale, coarsest first. Needs H and W divisible by ``config.size_multiple``."""
        h, w = blurry.shape[-2:]
        m = self.config.size_multiple
        if h % m or w % m:
            raise ValueError(f"input {h}x{w} must be a multiple of {m}; use restore() for any size")
        outputs: list[torch.Tensor] = []
        pred = None
        for level in reversed(range(self.config.num_scales)):
            size = (h >> level, w >> level)
            blur_t = resize_bilinear(blurry, size)
            prev = blur_t if pred is None else resize_bilinear(pred.detach(), size)
            pred = self.module(torch.cat([blur_t, prev], dim=1))
            if self.config.global_residual:
                pred = pred + blur_t
            outputs.append(pred)
        return outputs

    def forward(self, blurry: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(blurry)[-1]

    @torch.no_grad()
    def restore(self, frames: torch.Tensor) -> torch.Tensor:
        """Deblur NCHW images in [0, 1] of any size: edge-pad to the size multiple, run, crop, clamp.
        Inference only: no autograd graph (which would hold every activation: 5x the memory); train
        through ``forward``."""
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3 \
                or not frames.is_floating_point() or frames.shape[2] < 1 or frames.shape[3] < 1:
            got = (f"a {frames.dtype} tensor of shape {tuple(frames.shape)}" if isinstance(frames, torch.Tensor)
                   else type(frames).__name__)
            raise ValueError(f"restore takes float RGB images in [0, 1] as a tensor (N, 3, H, W), got {got}")
        h, w = frames.shape[-2:]
        given, own = frames.dtype, next(self.parameters()).dtype
        if given != own:   # float64 from numpy, or half on an fp32 model: computed in the model's own
            frames = frames.to(own)
        padded = pad_to_multiple(frames, self.config.size_multiple)
        return self(padded)[..., :h, :w].clamp(0.0, 1.0).to(given)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad bottom/right to a multiple (the official test code pads with edge values)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def build_model(config: ModelConfig | dict | None = None) -> DeblurNet:
    """A freshly initialised network (Xavier-uniform, zero biases)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return DeblurNet(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_frame(config: ModelConfig | None = None, height: int = 720, width: int = 1280) -> int:
    """Forward FLOPs (2 per multiply-add) for one frame, padded as inference pads it."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = config or ModelConfig()
    m = cfg.size_multiple
    h, w = height + (-height % m), width + (-width % m)
    with torch.device("meta"):
        model = DeblurNet(cfg)
        x = torch.empty(1, 3, h, w)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())
