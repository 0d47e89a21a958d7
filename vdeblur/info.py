"""`vdeblur info`: what this install is and what it can run here."""

from __future__ import annotations

import json

import torch

from . import __version__
from .backends import BackendOptions, auto_order
from .hardware import cpu_description, probe_backends
from .network import ModelConfig, build_model, count_parameters, flops_per_frame


def collect() -> dict:
    from .checkpoint import file_sha256
    from .weights import default_weights

    cfg = ModelConfig()
    with torch.device("meta"):
        params = count_parameters(build_model(cfg))
    entry = default_weights()
    backends = [b.to_dict() for b in probe_backends()]
    importable = {"torch"} | {b["name"] for b in backends if b["usable"]}
    weights = None
    if entry is not None and entry.path.is_file():
        weights = {"name": entry.name, "path": str(entry.path), "sha256": file_sha256(entry.path),
                   "expected_sha256": entry.sha256, "metrics": entry.metrics}
    return {
        "version": __version__,
        "torch": torch.__version__,
        "cpu": cpu_description(),
        "model": {
            "config": cfg.to_dict(),
            "parameters": params,
            "mib_fp32": round(params * 4 / 2**20, 2),
            "flops_per_720p_frame": flops_per_frame(cfg, 720, 1280),
        },
        "backends": backends,
        # What `--backend auto` tries here, in order, for 8-bit video and for deeper (10-bit) video.
        "auto": {kind: [n for n in auto_order(BackendOptions(deep_input=deep)) if n in importable]
                 for kind, deep in (("8-bit", False), ("10-bit", True))},
        "default_weights": weights,
    }


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="version, model size and cost, usable backends, default weights")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["model"]
    print(f"vdeblur {info['version']} (torch {info['torch']})")
    print(f"cpu: {info['cpu']}")
    print(f"model: {m['parameters']:,} parameters ({m['mib_fp32']} MiB fp32), "
          f"{m['flops_per_720p_frame'] / 1e12:.2f} TFLOP per 1280x720 frame")
    print("backends:")
    for b in info["backends"]:
        print(f"  {b['name']:<12} {'yes' if b['usable'] else 'no ':<4} {b['detail']}")
    print("auto: " + "; ".join(f"{', then '.join(names)} for {kind} video" for kind, names in info["auto"].items()))
    w = info["default_weights"]
    if w:
        print(f"default weights: {w['path']} (sha256 {w['sha256'][:16]}...)")
    else:
        print("default weights: none shipped yet (use --weights PATH)")
    return 0
