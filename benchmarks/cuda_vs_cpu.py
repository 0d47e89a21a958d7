"""The CUDA path's frames against the fp32 CPU path's, on the same frames and weights (issue 10:
PSNR >= 45 dB in fp16), and every variant against every other (CUDA graphs against eager: bit-exact
or within one level).

Each variant is a precision with optional ``+fused`` (the Triton attention ops) and ``+graphs``
(CUDA graphs), e.g. ``fp16+fused+graphs``. Frames go through in batches of ``--batch``, ``--repeat``
times, so graphs get captured and replayed and a shorter tail batch is exercised; the frames of
every pass must agree with the first. Prints JSON; exit status 0, or 3 when an fp16 variant is under
the PSNR bar, a pass disagrees or a variant fails (its one-line error is in the JSON; the others
still run).

    python benchmarks/cuda_vs_cpu.py --size 1280x720 --frames 4 --batch 2
    python benchmarks/cuda_vs_cpu.py --device cpu --variants bf16 --size 64x64   # dry run on a CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np
import torch

from vdeblur.backends.torch_backend import TorchBackend
from vdeblur.bench import parse_size, synthetic_frames
from vdeblur.compile import psnr
from vdeblur.errors import VdeblurError
from vdeblur.network import ModelConfig, build_model

MIN_FP16_PSNR_DB = 45.0
DEFAULT_VARIANTS = "fp16,fp16+fused,fp16+graphs,fp16+fused+graphs,bf16,bf16+fused+graphs,fp32"


def parse_variant(name: str) -> dict:
    precision, *flags = name.split("+")
    unknown = set(flags) - {"fused", "graphs"}
    if unknown or precision not in ("fp16", "bf16", "fp32"):
        raise SystemExit(f"cuda_vs_cpu: bad variant {name!r}: PRECISION[+fused][+graphs]")
    return {"precision": precision, "fused_attention": "fused" in flags, "cuda_graphs": "graphs" in flags}


def run_batches(backend, frames: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([backend.run(frames[i:i + batch]) for i in range(0, len(frames), batch)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="passes over the frames (graphs: eager, capture, replay)")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--weights", help="checkpoint (default: the paper's config, random weights, seed 0)")
    args = ap.parse_args(argv)
    w, h = parse_size(args.size)
    frames = np.stack(list(synthetic_frames(w, h, args.frames)))
    if args.weights:
        from vdeblur import load_model

        base, weights = load_model(args.weights), args.weights
    else:
        torch.manual_seed(0)
        base, weights = build_model(ModelConfig()), "random initialisation of the default config, seed 0"

    t0 = time.perf_counter()
    reference = run_batches(TorchBackend(copy.deepcopy(base), device="cpu", precision="fp32"), frames, args.batch)
    result = {"torch": torch.__version__, "size": [w, h], "frames": args.frames, "batch": args.batch,
              "repeat": args.repeat, "weights": weights, "reference": "torch fp32 on the CPU",
              "reference_s": time.perf_counter() - t0,
              "reference_stats": {"mean": float(reference.mean()), "std": float(reference.std()),
                                  "zero_fraction": float((reference == 0).mean())},
              "min_fp16_psnr_db": MIN_FP16_PSNR_DB, "variants": {}}
    outputs, ok = {}, True
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        spec = parse_variant(name)
        t0 = time.perf_counter()
        try:
            backend = TorchBackend(copy.deepcopy(base), device=args.device, **spec)
            passes = [run_batches(backend, frames, args.batch) for _ in range(args.repeat)]
        except (VdeblurError, RuntimeError) as e:   # one variant failing must not hide the others
            result["variants"][name] = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"}
            ok = False
            continue
        out = passes[0]
        diff = np.abs(out.astype(np.int16) - reference.astype(np.int16))
        entry = {"psnr_db": psnr(out, reference), "max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.mean()),
                 "passes_agree": all(np.array_equal(p, out) for p in passes[1:]),
                 "seconds": time.perf_counter() - t0, "backend": backend.describe()}
        backend.close()
        entry["max_abs_diff_vs"] = {other: int(np.abs(out.astype(np.int16) - o.astype(np.int16)).max())
                                    for other, o in outputs.items()}
        outputs[name] = out
        if spec["precision"] == "fp16" and entry["psnr_db"] < MIN_FP16_PSNR_DB or not entry["passes_agree"]:
            ok = False
        result["variants"][name] = entry
    for name, entry in result["variants"].items():   # make the pairwise table symmetric
        for other, d in entry.get("max_abs_diff_vs", {}).items():
            result["variants"][other]["max_abs_diff_vs"][name] = d
    result["ok"] = ok
    print(json.dumps(result, indent=2))
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
