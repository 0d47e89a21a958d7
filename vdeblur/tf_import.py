"""`vdeblur import-tf`: turn the authors' TensorFlow checkpoint into a vdeblur checkpoint.

The official model (github.com/zhuyeye/Attentive-Deblurring) names its layers SRN-style:
``g_net/enc{1,2,3}_1`` are the group convs, ``enc*_2..`` the residual attention blocks, the
decoder runs ``dec3_3, dec3_2, dec3_1`` (highest number first), ``dec2_4``/``dec1_4`` are the
transposed convs and ``dec1_0`` the final conv to RGB. Conv kernels are HWIO
``[kh, kw, in, out]`` and transposed-conv kernels ``[kh, kw, out, in]``; both become PyTorch's
layout with the same permutation (no spatial flip: both frameworks' transposed conv is the
adjoint of the same cross-correlation). Adam slots, beta powers and the step counter are not
weights; the step is kept in the provenance record.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import file_sha256, save_state
from .errors import VdeblurError
from .fileio import check_output
from .network import DeblurNet, ModelConfig
from .tf_checkpoint import TFCheckpoint

SCOPE = "g_net"
_SLOT = re.compile(r"/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1)$")
_NOT_WEIGHTS = {"beta1_power", "beta2_power", "global_step", "Variable"}
_STEP_NAMES = ("global_step", "Variable")

# Inside one residual attention block: official sub-scope -> our sub-module.
_BLOCK_LAYERS = {
    "conv2d-1": "conv1",
    "conv2d-2": "conv2",
    "blur_attention/conv2d-1": "attention.spatial.fc1",
    "blur_attention/conv2d-2": "attention.spatial.fc2",
    "channel_attention/conv2d-1": "attention.channel.fc1",
    "channel_attention/conv2d-2": "attention.channel.fc2",
}


def layer_map(config: ModelConfig) -> dict[str, str]:
    """Official layer scope (without ``g_net/``) -> our module path, for a config's block count."""
    n = config.blocks_per_group
    layers: dict[str, str] = {}

    def blocks(official: str, ours: str, numbers: list[int]) -> None:
        for i, number in enumerate(numbers):
            for sub, mod in _BLOCK_LAYERS.items():
                if sub.startswith("blur") and not _has_spatial(config, ours):
                    continue
                if sub.startswith("channel") and not config.channel_attention:
                    continue
                layers[f"{official}_{number}/{sub}"] = f"module.{ours}.blocks.{i}.{mod}"

    for g in (1, 2, 3):
        layers[f"enc{g}_1"] = "module.eg1.conv" if g == 1 else f"module.eg{g}.conv.conv"
        blocks(f"enc{g}", f"eg{g}", list(range(2, n + 2)))
    for dg, level in ((1, 3), (2, 2), (3, 1)):
        blocks(f"dec{level}", f"dg{dg}", list(range(n, 0, -1)))
        layers[f"dec{level - 1}_{n + 1}" if level > 1 else "dec1_0"] = f"module.dg{dg}.out"
    return layers


def _has_spatial(config: ModelConfig, group: str) -> bool:
    return config.spatial_attention_encoder if group.startswith("eg") else config.spatial_attention_decoder


def variable_map(config: ModelConfig) -> dict[str, str]:
    """Official variable name -> our state_dict key (``weights`` -> ``weight``, ``biases`` -> ``bias``)."""
    out = {}
    for official, ours in layer_map(config).items():
        out[f"{SCOPE}/{official}/weights"] = f"{ours}.weight"
        out[f"{SCOPE}/{official}/biases"] = f"{ours}.bias"
    return out


def to_torch_layout(array: np.ndarray) -> np.ndarray:
    """HWIO conv kernels and [kh, kw, out, in] transposed-conv kernels both go to [.., .., kh, kw]
    by the same axis permutation; biases are unchanged."""
    return np.ascontiguousarray(array.transpose(3, 2, 0, 1)) if array.ndim == 4 else array


def is_model_variable(name: str) -> bool:
    return name.startswith(SCOPE + "/") and not _SLOT.search(name)


def infer_config(shapes: dict[str, tuple[int, ...]]) -> ModelConfig:
    """The architecture the checkpoint's shapes describe (the official model gives the paper default)."""
    def shape(layer: str) -> tuple[int, ...]:
        key = f"{SCOPE}/{layer}/weights"
        if key not in shapes or len(shapes[key]) != 4:
            raise VdeblurError(f"not a checkpoint of the paper's network: no 4-D variable {key}")
        return shapes[key]

    first = shape("enc1_1")
    widths = (first[3], shape("enc2_1")[3], shape("enc3_1")[3])
    blocks = 0
    while f"{SCOPE}/enc1_{blocks + 2}/conv2d-1/weights" in shapes:
        blocks += 1
    reduction = _attention_reduction(shapes, widths)

    def present(layer: str) -> bool:  # attention switched off in an ablation leaves no variables
        return blocks == 0 or f"{SCOPE}/{layer}/conv2d-1/weights" in shapes

    try:
        return ModelConfig(widths=widths, blocks_per_group=blocks, kernel_size=first[0],
                           attention_reduction=reduction, global_residual=False,
                           channel_attention=present("enc1_2/channel_attention"),
                           spatial_attention_encoder=present("enc1_2/blur_attention"),
                           spatial_attention_decoder=present("dec1_1/blur_attention"))
    except ValueError as e:
        raise VdeblurError(f"not a checkpoint of the paper's network ({e})") from None


def _attention_reduction(shapes: dict[str, tuple[int, ...]], widths: tuple[int, int, int]) -> int:
    """An r with max(width // r, 1) equal to every group's attention width: the paper's 16 if it
    fits (15 would fit the official shapes too), else the smallest that does."""
    hidden = {}
    for g, width in enumerate(widths, start=1):
        for part in ("channel_attention", "blur_attention"):
            shape = shapes.get(f"{SCOPE}/enc{g}_2/{part}/conv2d-1/weights")
            if shape is not None and len(shape) == 4:
                hidden[width] = shape[3]
                break
    if not hidden:
        return ModelConfig.attention_reduction
    default = ModelConfig.attention_reduction
    for r in [default, *range(1, max(widths) + 1)]:
        if all(max(w // r, 1) == h for w, h in hidden.items()):
            return r
    return ModelConfig.attention_reduction  # no fit: the shape check names the mismatch


def check_architecture(config: ModelConfig, shapes: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """Every model variable must map onto the network with the right shape, and none may be left over."""
    mapping = variable_map(config)
    with torch.device("meta"):
        reference = DeblurNet(config).state_dict()
    missing = sorted(set(mapping) - set(shapes))
    unexpected = sorted(set(shapes) - set(mapping))
    if missing:
        raise VdeblurError(f"not the paper's architecture: {len(missing)} variables missing, e.g. {missing[0]}")
    if unexpected:
        raise VdeblurError(f"not the paper's architecture: {len(unexpected)} unexpected variables, e.g. {unexpected[0]}")
    for name, key in mapping.items():
        want = tuple(reference[key].shape)
        got = shapes[name]
        if len(got) == 4:
            got = (got[3], got[2], got[0], got[1])
        if got != want:
            raise VdeblurError(f"not the paper's architecture: {name} has shape {list(shapes[name])}, "
                               f"which does not fit {key} {list(want)}")
    return mapping


def _step(ckpt: TFCheckpoint) -> int | None:
    for name in _STEP_NAMES:
        e = ckpt.entries.get(name)
        if e is not None and e.shape == () and e.dtype in (3, 9):
            return int(ckpt.read(name))
    m = re.search(r"-(\d+)$", ckpt.prefix.name)
    return int(m.group(1)) if m else None


def convert(prefix: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict]:
    """Read, verify and map a TF checkpoint: (config, state_dict, provenance)."""
    ckpt = TFCheckpoint(prefix)
    model_vars = {n: e for n, e in ckpt.entries.items() if is_model_variable(n)}
    shapes = {n: e.shape for n, e in model_vars.items()}
    config = infer_config(shapes)
    mapping = check_architecture(config, shapes)
    for name, e in model_vars.items():
        if e.dtype != 1:
            raise VdeblurError(f"{ckpt.index_path}: {name} is {e.dtype_name}, expected float32")
    ckpt.check_data_files()
    state = {mapping[name]: torch.from_numpy(to_torch_layout(ckpt.read(name))) for name in sorted(model_vars)}
    DeblurNet(config).load_state_dict(state, strict=True)  # shape-checked above; this proves completeness
    provenance = {
        "source": "tensorflow-checkpoint",
        "converted_by": f"vdeblur {__version__} import-tf",
        "prefix": ckpt.prefix.name,
        "files": {p.name: file_sha256(p) for p in [ckpt.index_path, *ckpt.data_paths()]},
        "step": _step(ckpt),
        "variables": len(model_vars),
        "ignored_entries": len(ckpt.entries) - len(model_vars),
    }
    return config, state, provenance


def import_tf(prefix: str | Path, out: str | Path, overwrite: bool = False) -> dict:
    """Convert and write; returns the provenance record. Never replaces ``out`` unless asked."""
    ckpt = TFCheckpoint(prefix)
    out = check_output(out, overwrite, dir_hint="give the output file name", inputs=[ckpt.index_path, *ckpt.data_paths()])
    config, state, provenance = convert(prefix)
    save_state(out, config, state, extra={"provenance": provenance})
    return provenance


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-tf", help="convert the authors' TensorFlow checkpoint (no TensorFlow needed)",
        description="Convert a TensorFlow checkpoint of the paper's network (PREFIX.index + "
                    "PREFIX.data-00000-of-00001, e.g. deblur.model-675000 from github.com/zhuyeye/"
                    "Attentive-Deblurring) into a vdeblur checkpoint for --weights.")
    p.add_argument("prefix", metavar="PREFIX", help="checkpoint prefix (or its .index file)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="vdeblur checkpoint to write (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    prov = import_tf(args.prefix, args.output, args.overwrite)
    step = f", step {prov['step']}" if prov["step"] is not None else ""
    print(f"converted {prov['variables']} variables{step} from {prov['prefix']} -> {args.output}")
    return 0
