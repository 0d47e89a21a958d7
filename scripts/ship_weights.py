#!/usr/bin/env python3
"""Ship a training checkpoint as the package's default weights, with the numbers its model card quotes.

    python scripts/ship_weights.py CKPT --val ../shared/data/gopro-resynth/val \
        --photos ../shared/data/sharp [--synthetic 24] [--threads 2]

Writes into vdeblur/weights/: default.safetensors (fp16 storage: half the bytes in git history,
checked against the fp32 original before anything is written), default.eval.json (the `vdeblur
eval` report of the shipped file, per image), before_after.png (blurry | model | sharp crops) and
the manifest.json entry that `load_model()` reads. The prose of the model card (README.md there)
is written by hand from the printed summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from vdeblur.checkpoint import file_sha256, read_checkpoint, save_state
from vdeblur.errors import VdeblurError
from vdeblur.evaluate import DEFAULT_SYNTHETIC_SEED, evaluate_set, pairs_from_folder, pairs_synthetic, restore_image
from vdeblur.fileio import atomic_write
from vdeblur.hardware import cpu_description, resolve_device
from vdeblur.metrics import psnr
from vdeblur.training import training_precision
from vdeblur.weights import WEIGHTS_DIR

STORAGE_MIN_PSNR = 50.0  # fp16-stored weights must reproduce the fp32 model's output this closely


def lineage(path: Path) -> list[dict]:
    """The chain of training phases behind a checkpoint, newest first, followed through init_weights."""
    phases, seen = [], set()
    while path is not None and path.is_file() and path not in seen:
        seen.add(path)
        extra = read_checkpoint(path).extra
        recipe = extra.get("recipe", {})
        phases.append({"checkpoint": str(path), "sha256": file_sha256(path),
                       "steps": extra.get("trained_steps"), "samples": extra.get("samples_seen"),
                       "seconds": extra.get("training_seconds"), "recipe": recipe})
        init = recipe.get("init_weights")
        path = Path(init) if init else None
    return phases


def storage_check(fp32_model, stored_model, count: int = 4) -> float:
    """Lowest PSNR between the fp32 and the fp16-stored model's fp32 outputs on held-out synthetic pairs."""
    worst = float("inf")
    for _, blur, _ in pairs_synthetic(count, DEFAULT_SYNTHETIC_SEED + 1, 128, []):
        with torch.no_grad():
            a, b = fp32_model.restore(blur[None]), stored_model.restore(blur[None])
        worst = min(worst, float(psnr(a, b)))
    return worst


def before_after(model, real_dir: Path, photos, device, precision, out: Path, crop: int = 224) -> str:
    """Rows of blurry | model | sharp: a crop of the first real pair where the model gains most, and a synthetic one."""
    rows, notes = [], []
    candidates = []
    for name, blur, sharp in pairs_from_folder(real_dir):
        restored = restore_image(model, blur, device, precision)
        candidates.append((float(psnr(restored, sharp) - psnr(blur, sharp)), name, blur, restored, sharp))
    gain, name, blur, restored, sharp = max(candidates, key=lambda c: c[0])
    # The crop with the most detail in the sharp frame: where blur (and deblurring) shows.
    detail = sharp.mean(0).diff(dim=1).abs()[None, None]
    energy = torch.nn.functional.avg_pool2d(detail, crop, stride=crop // 2)[0, 0]
    iy, ix = np.unravel_index(int(energy.argmax()), tuple(energy.shape))
    y, x = iy * (crop // 2), ix * (crop // 2)
    rows.append([t[:, y:y + crop, x:x + crop] for t in (blur, restored, sharp)])
    notes.append(f"top: {real_dir.name}/{name}, crop x={x} y={y} of the full-frame result ({gain:+.2f} dB on the frame)")
    scored = []
    for sname, sblur, ssharp in pairs_synthetic(12, DEFAULT_SYNTHETIC_SEED, crop, photos):
        srest = restore_image(model, sblur, device, precision)
        scored.append((float(psnr(srest, ssharp) - psnr(sblur, ssharp)), sname, sblur, srest, ssharp))
    median = sorted(scored, key=lambda c: c[0])[len(scored) // 2]
    rows.append(list(median[2:]))
    notes.append(f"bottom: {median[1]} at {crop}px, the median gain of 12 held-out synthetic pairs ({median[0]:+.2f} dB)")
    grid = torch.cat([torch.cat(r, dim=2) for r in rows], dim=1)
    img = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)

    from PIL import Image

    def write(f):
        Image.fromarray(img).save(f, format="PNG", optimize=True)

    atomic_write(out, write)
    return "; ".join(notes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--val", type=Path, required=True, help="real blur/sharp pairs never used in training")
    p.add_argument("--photos", action="append", default=[], help="photo folders (their held-out split)")
    p.add_argument("--synthetic", type=int, default=24)
    p.add_argument("--threads", type=int)
    p.add_argument("--name", default="default")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="weights folder (default: the package's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    source = read_checkpoint(args.checkpoint)
    fp32_model = source.build().float().eval()
    state16 = {k: v.half() if v.is_floating_point() else v for k, v in source.state.items()}
    if any(not torch.isfinite(v).all() for v in state16.values() if v.is_floating_point()):
        raise VdeblurError(f"{args.checkpoint}: weights overflow fp16 storage")
    phases = lineage(args.checkpoint)
    extra = {"shipped_from": {"file": args.checkpoint.name, "sha256": file_sha256(args.checkpoint)},
             "trained_steps": sum(ph["steps"] or 0 for ph in phases),
             "samples_seen": sum(ph["samples"] or 0 for ph in phases),
             "training_seconds": round(sum(ph["seconds"] or 0 for ph in phases), 1),
             "storage": "fp16 (the network runs in fp32, bf16 or fp16 as the device chooses)"}
    target = args.out / f"{args.name}.safetensors"
    with tempfile.TemporaryDirectory() as tmp:
        staged = save_state(Path(tmp) / target.name, source.config, state16, extra)
        stored_model = read_checkpoint(staged).build().float().eval()
        storage_psnr = storage_check(fp32_model, stored_model)
        if storage_psnr < STORAGE_MIN_PSNR:
            raise VdeblurError(f"fp16 storage changes the output too much ({storage_psnr:.1f} dB < {STORAGE_MIN_PSNR})")
        save_state(target, source.config, state16, extra)

    device = resolve_device("auto")
    precision = training_precision("auto", device)
    model = read_checkpoint(target).build().float().eval().to(device)
    sets = [evaluate_set(model, pairs_from_folder(args.val), device, precision,
                         f"{args.val.resolve().parent.name}/{args.val.name}", progress=True)]
    if args.synthetic:
        name = f"synthetic held-out (n={args.synthetic}, seed={DEFAULT_SYNTHETIC_SEED}, 256px)"
        sets.append(evaluate_set(model, pairs_synthetic(args.synthetic, DEFAULT_SYNTHETIC_SEED, 256, args.photos),
                                 device, precision, name, progress=True))
    sha = file_sha256(target)
    report = {"weights": target.name, "sha256": sha, "device": str(device), "precision": precision,
              "cpu": cpu_description() if device.type == "cpu" else None, "sets": sets}
    eval_path = args.out / f"{args.name}.eval.json"
    atomic_write(eval_path, lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    figure = before_after(model, args.val, args.photos, device, precision, args.out / "before_after.png")

    metrics = {s["name"]: {"images": s["images"], "input_psnr": s["input"]["psnr"], "input_ssim": s["input"]["ssim"],
                           "psnr": s["model"]["psnr"], "ssim": s["model"]["ssim"], "gain_db": s["gain_db"]} for s in sets}
    manifest_path = args.out / "manifest.json"
    entries = json.loads(manifest_path.read_text()) if manifest_path.is_file() else []
    entries = [e for e in entries if e["name"] != args.name]
    entries.append({"name": args.name, "filename": target.name, "sha256": sha,
                    "recipe": "vdeblur/weights/README.md (model card: commands, data, steps, time)",
                    "metrics": metrics})
    atomic_write(manifest_path, lambda f: f.write((json.dumps(entries, indent=2) + "\n").encode()))

    summary = {"shipped": str(target), "bytes": target.stat().st_size, "sha256": sha,
               "fp16_storage_psnr_db": round(storage_psnr, 2), "before_after": figure,
               "phases": phases, **{k: extra[k] for k in ("trained_steps", "samples_seen", "training_seconds")},
               "metrics": metrics, "precision": precision, "cpu": report["cpu"]}
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VdeblurError as e:
        print(f"ship_weights: error: {e}", file=sys.stderr)
        sys.exit(1)
