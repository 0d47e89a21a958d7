"""`vdeblur eval`: PSNR and SSIM of a model on paired images, beside the blurry input's own.

The paper's protocol: whole frames, RGB, values in [0, 1]; the model's output is rounded to
8 bits first, as a saved frame would be. Sets: folders of real pairs (``--data``, GoPro layout or
``*_blur``/``*_sharp`` files) and a fixed synthetic set (``--synthetic N``) drawn from the
held-out split of the photos, which `vdeblur train` never sees. ``--strength`` scores the output
`deblur --strength` would write, for several strengths from one run of the model.

In bf16, eval runs the fp32 weights under autocast while `deblur` casts weights and frames to bf16:
their outputs differ by a level or two in some pixels (about 0.01-0.02 dB PSNR); in fp32 they agree.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .compare import blend, check_strength
from .ensemble import check_copies
from .errors import VdeblurError
from .fileio import check_folder
from .metrics import SSIM_WINDOW, psnr, quantize, ssim

DEFAULT_SYNTHETIC_SEED = 2026


def checked_pairs(folder) -> list:
    """The folder's pairs, every one checked (headers, sizes) before any is scored."""
    from .datasets import check_pairs, find_pairs

    pairs = find_pairs(folder)
    check_pairs(pairs, SSIM_WINDOW, f"SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window")
    return pairs


def pairs_from_folder(folder, pairs: list | None = None):
    from .datasets import load_pair, to_tensor

    for pair in checked_pairs(folder) if pairs is None else pairs:
        blur, sharp = load_pair(pair)
        yield pair.name, to_tensor(blur), to_tensor(sharp)


def pairs_synthetic(count: int, seed: int, size: int, photos):
    from .synthetic import make_generator

    gen = make_generator(photos, builtin=True, split="val", size=size)
    for i in range(count):
        blur, sharp = gen.sample(np.random.default_rng([seed, i]))
        yield f"synthetic-{seed}-{i:04d}", blur, sharp


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _num(x: float):
    """JSON has no infinity: identical images (PSNR inf) are reported as null."""
    return round(x, 4) if math.isfinite(x) else None


def restore_image(model, blur: torch.Tensor, device: torch.device, precision: str, what: str = "an image",
                  copies: int = 1) -> torch.Tensor:
    """The model's output for one CHW image, on the CPU and rounded to 8 bits as a saved frame would be;
    with ``copies`` > 1, the mirror-image ensemble as `deblur --ensemble` makes it (8-bit results averaged)."""
    from .ensemble import MIRRORS, average
    from .training import autocast

    results = []
    for axes in MIRRORS[:copies]:
        dims = tuple(a + 1 for a in axes)   # the (H, W, C) axes of a frame are (C, H, W) dims here
        with torch.no_grad(), autocast(device, precision):
            out = model.restore(blur.flip(dims).unsqueeze(0).to(device)).float().cpu().flip(dims)
        if not torch.isfinite(out).all():   # NaN was scored as a perfect "inf": a diverged run looked best
            raise VdeblurError(f"{what}: the model's output is not finite (NaN or infinity): its weights are "
                               "broken (a training run that diverged?)")
        results.append(quantize(out)[0])
    if len(results) == 1:
        return results[0]
    return torch.from_numpy(average([_as_bytes(r) for r in results], np.uint8)).float() / 255


def at_strength(blur: torch.Tensor, out: torch.Tensor, strength: float) -> torch.Tensor:
    """What `deblur --strength` writes for an 8-bit input and the model's 8-bit output."""
    if strength == 1:
        return out
    return torch.from_numpy(blend(_as_bytes(blur), _as_bytes(out), strength)).float() / 255


def _as_bytes(image: torch.Tensor) -> np.ndarray:
    """An image in [0, 1] as the 8-bit values a saved frame holds."""
    return (image * 255).round().to(torch.uint8).numpy()


def evaluate_set(model, pairs, device: torch.device, precision: str, name: str, progress: bool = False,
                 strength: float = 1.0, copies: int = 1) -> dict:
    """Mean and per-image PSNR/SSIM of the input and of the model's output."""
    return evaluate_strengths(model, pairs, device, precision, name, progress, (strength,), copies)[0]


def evaluate_strengths(model, pairs, device: torch.device, precision: str, name: str, progress: bool = False,
                       strengths=(1.0,), copies: int = 1) -> list[dict]:
    """:func:`evaluate_set` at each strength, from one run of the model per image (``copies`` runs
    for the mirror-image ensemble)."""
    rows: list[list[dict]] = [[] for _ in strengths]
    for image_name, blur, sharp in pairs:
        out = restore_image(model, blur, device, precision, f"{name}: {image_name}", copies)
        target = sharp.unsqueeze(0)
        given = {"image": image_name, "input_psnr": float(psnr(blur, sharp)), "input_ssim": float(ssim(blur, sharp))}
        for strength, kept in zip(strengths, rows):
            shown = at_strength(blur, out, strength).unsqueeze(0)
            kept.append({**given, "psnr": float(psnr(shown, target)), "ssim": float(ssim(shown, target))})
        if progress:
            scores = ", ".join(f"{kept[-1]['psnr']:.2f}" + (f" (strength {strength:g})" if len(strengths) > 1 else "")
                               for strength, kept in zip(strengths, rows))
            print(f"  {name} {image_name}: {given['input_psnr']:.2f} -> {scores} dB", file=sys.stderr, flush=True)
    if not rows[0]:
        raise VdeblurError(f"{name}: no images to evaluate")
    return [_summary(name, kept, strength) for strength, kept in zip(strengths, rows)]


def _summary(name: str, rows: list[dict], strength: float) -> dict:
    means = {k: _mean([r[k] for r in rows]) for k in ("input_psnr", "input_ssim", "psnr", "ssim")}
    return {
        "name": name if strength == 1 else f"{name} at strength {strength:g}",
        "strength": strength,   # 1 too, so a script can read it from every set
        "images": len(rows),
        "input": {"psnr": _num(means["input_psnr"]), "ssim": _num(means["input_ssim"])},
        "model": {"psnr": _num(means["psnr"]), "ssim": _num(means["ssim"])},
        "gain_db": _num(means["psnr"] - means["input_psnr"]),
        "per_image": [{k: (_num(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="PSNR/SSIM of a model on blur/sharp pairs (and a held-out synthetic set)",
                              description="Full-frame RGB PSNR and SSIM of the model's output and of the blurry input.")
    p.add_argument("--data", action="append", type=Path, metavar="DIR", help="folder of blur/sharp pairs (repeatable): GoPro layout or *_blur/*_sharp files")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="also evaluate N synthetic pairs from the held-out photos")
    p.add_argument("--seed", type=int, default=DEFAULT_SYNTHETIC_SEED, help=f"seed of the synthetic set (default {DEFAULT_SYNTHETIC_SEED})")
    p.add_argument("--size", type=int, default=256, help="side of the synthetic images (default 256)")
    p.add_argument("--photos", action="append", metavar="DIR", help="photo folders for the synthetic set (their held-out split is used)")
    p.add_argument("--weights", type=Path, help="checkpoint (default: the shipped default weights)")
    p.add_argument("--strength", type=float, nargs="+", default=[1.0], metavar="S",
                   help="score what `deblur --strength S` writes; several values share one run of the model (default 1)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="score what `deblur --ensemble N` writes: the results on N mirror images averaged (1, 2 or 4)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print JSON (with per-image numbers)")
    p.add_argument("--verbose", action="store_true", help="print each image's numbers as it is done")
    p.set_defaults(func=run)


def run(args) -> int:
    from . import load_model
    from .checkpoint import file_sha256
    from .hardware import check_threads, resolve_device
    from .training import training_precision
    from .weights import default_weights_path

    if args.synthetic < 0:   # checked first: "nothing to evaluate" did not say which value was wrong
        raise VdeblurError(f"--synthetic must be 0 or more, got {args.synthetic}")
    if not args.data and args.synthetic == 0:
        raise VdeblurError("nothing to evaluate: give --data DIR and/or --synthetic N")
    if args.size < 16:
        raise VdeblurError(f"--size must be at least 16, got {args.size}")
    if args.seed < 0:
        raise VdeblurError(f"--seed must be 0 or more, got {args.seed}")
    for strength in args.strength:
        check_strength(strength)
    check_copies(args.ensemble)
    check_threads(args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    weights_path = args.weights or default_weights_path()
    # Every input is found and checked before the model loads: a typo in the last folder cost the others' run.
    data = [(folder, checked_pairs(folder)) for folder in args.data or []]
    if args.synthetic:
        for folder in args.photos or []:
            check_folder(folder)
        _say_unused_photos(args.photos or [])
        _say_other_photos(weights_path, args.photos or [])
    device = resolve_device(args.device)
    precision = training_precision(args.precision, device)
    model = load_model(weights_path).to(device)
    start = time.monotonic()
    sets = []
    for folder, pairs in data:
        sets += evaluate_strengths(model, pairs_from_folder(folder, pairs), device, precision, str(folder), args.verbose,
                                   args.strength, args.ensemble)
    if args.synthetic:
        name = f"synthetic held-out (n={args.synthetic}, seed={args.seed}, {args.size}px)"
        sets += evaluate_strengths(model, pairs_synthetic(args.synthetic, args.seed, args.size, args.photos or []),
                                   device, precision, name, args.verbose, args.strength, args.ensemble)
    report = {"weights": str(weights_path), "sha256": file_sha256(weights_path), "device": str(device),
              "precision": precision, "ensemble": args.ensemble, "seconds": round(time.monotonic() - start, 1),
              **({"photos": [str(Path(f).resolve()) for f in args.photos or []]} if args.synthetic else {}),
              "sets": sets}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    ensemble = f", an ensemble of {args.ensemble} mirror images" if args.ensemble > 1 else ""
    print(f"weights: {weights_path} ({precision} on {device}{ensemble})")
    width = max(len(s["name"]) for s in sets)   # whole names: cut from the left, two sets read alike
    header = f"{'set':<{width}} {'images':>6}  {'input PSNR':>10} {'SSIM':>7}  {'model PSNR':>10} {'SSIM':>7}  {'gain dB':>7}"
    print(header)
    print("-" * len(header))
    for s in sets:
        fmt = lambda v, spec: format("inf", ">" + spec.split(".")[0]) if v is None else format(v, spec)  # noqa: E731
        print(f"{s['name']:<{width}} {s['images']:>6}  {fmt(s['input']['psnr'], '10.2f')} {fmt(s['input']['ssim'], '7.4f')}  "
              f"{fmt(s['model']['psnr'], '10.2f')} {fmt(s['model']['ssim'], '7.4f')}  {_gain_text(s):>7}")
    return 0


def _say_unused_photos(folders) -> None:
    """The held-out split takes every 6th photo of a folder: a folder of fewer adds none, which is said."""
    from .datasets import list_images
    from .synthetic import HOLDOUT_EVERY

    for folder in folders:
        count = len(list_images(folder))
        if count < HOLDOUT_EVERY:
            print(f"vdeblur eval: {folder} adds no photo to the held-out synthetic set: it takes every "
                  f"{HOLDOUT_EVERY}th photo (sorted), and the folder has {count}", file=sys.stderr)


def _say_other_photos(weights_path, folders) -> None:
    """The held-out photos are every 6th of the folders given, so other folders than training's hold
    out other photos, some of them trained on: said where the checkpoint records its training's."""
    from .checkpoint import read_checkpoint
    from .synthetic import HOLDOUT_EVERY

    trained = (read_checkpoint(weights_path).extra.get("recipe") or {}).get("photos")
    if trained is None:   # shipped weights keep no recipe; their card names the folder
        return
    given = sorted(str(Path(f).resolve()) for f in folders)
    if sorted(trained) != given:
        print(f"vdeblur eval: these weights were trained with --photos {' '.join(trained) or '(none)'}; the held-out "
              f"set is every {HOLDOUT_EVERY}th photo of the folders given, so with others some of its photos may have been "
              "trained on", file=sys.stderr)


def _gain_text(summary: dict) -> str:
    """The gain column, where JSON's null stands for an infinite PSNR on either side: an input equal
    to its sharp image (inf) can only lose, an output equal to it (inf) can only gain."""
    if summary["gain_db"] is not None:
        return format(summary["gain_db"], "+.2f")
    given, got = summary["input"]["psnr"], summary["model"]["psnr"]
    return "-inf" if given is None and got is not None else "+inf" if got is None and given is not None else "n/a"
