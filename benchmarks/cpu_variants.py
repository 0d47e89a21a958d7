"""Side-by-side CPU variants of the model stage (the measurements behind the torch backend's CPU defaults).

    python benchmarks/cpu_variants.py --size 640x368 --variants fp32,bf16-autocast,bf16,bf16-nchw
    python benchmarks/cpu_variants.py --size 1280x720 --variants bf16,bf16-tiles:2x2,bf16-tiles:2x3

Variants run round-robin (one call each per round, plus the bf16 and fp32 peak probes), so a
machine shared with other work slows them alike; medians and bests (minimums) are both printed,
the best being the steadier figure on a loaded machine. Model only, batch 1, no I/O.

Variant names: fp32 | bf16 (bf16 weights, what the torch backend does) | bf16-autocast (fp32
weights under autocast) | any of these + "-nchw" (contiguous instead of channels_last) |
+ "-compile" (torch.compile, inductor; compile time printed) | "bf16-tiles:RxC" (the frame as
R x C tiles with a 32-pixel overlap, each padded to the size multiple; model time only).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from vdeblur.bench import PeakProbe, parse_size
from vdeblur.network import ModelConfig, build_model, flops_per_frame

OVERLAP = 32


def tile_shapes(h: int, w: int, rows: int, cols: int, multiple: int = 16) -> list[tuple[int, int]]:
    """R x C tiles covering h x w with OVERLAP pixels shared, rounded up to the model's multiple."""
    def span(n, k):
        s = (n + (k - 1) * OVERLAP + k - 1) // k
        return s + (-s % multiple)
    return [(span(h, rows), span(w, cols))] * (rows * cols)


def precision_of(name: str) -> str:
    return "fp32" if name.startswith("fp32") else "bf16"


def make_variant(name: str, base, h: int, w: int):
    fmt = torch.contiguous_format if "-nchw" in name else torch.channels_last
    model = copy.deepcopy(base).to(memory_format=fmt)
    autocast = "autocast" in name
    dtype = torch.bfloat16 if name.startswith("bf16") and not autocast else torch.float32
    model = model.to(dtype)
    shapes = [(h, w)]
    if "-tiles:" in name:
        rows, cols = (int(v) for v in name.split("-tiles:")[1].split("x"))
        shapes = tile_shapes(h, w, rows, cols)
    inputs = [torch.rand(1, 3, th, tw).to(dtype).contiguous(memory_format=fmt) for th, tw in shapes]
    compile_s = None
    if "-compile" in name:
        t0 = time.perf_counter()
        model = torch.compile(model, dynamic=False)
        with torch.inference_mode():
            for x in inputs[:1]:
                model(x)
        compile_s = time.perf_counter() - t0

    def run():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            for x in inputs:
                model(x)

    work = sum(th * tw for th, tw in shapes) / (h * w)
    return run, compile_s, work


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="640x368")
    p.add_argument("--variants", default="fp32,bf16-autocast,bf16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cpu-time", action="store_true",
                   help="time with the process's CPU time instead of the wall clock: with --threads 1 it "
                        "hardly moves when other work shares the machine (no use with more threads, which spin)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    w, h = parse_size(a.size)
    cfg = ModelConfig()
    flops = flops_per_frame(cfg, h, w)
    base = build_model(cfg).eval()
    names = a.variants.split(",")
    variants = {n: make_variant(n, base, h, w) for n in names}
    for run, _, _ in variants.values():
        run()
        run()
    clock = time.process_time if a.cpu_time else time.perf_counter
    # Only the precisions the variants use: on a CPU without native bf16 its probe alone takes minutes.
    used = sorted({precision_of(n) for n in names})
    peaks = {p: PeakProbe(torch.device("cpu"), p, clock=clock) for p in used}
    times = {n: [] for n in names}
    for _ in range(a.repeats):
        for n, (run, _, _) in variants.items():
            t0 = clock()
            run()
            times[n].append(clock() - t0)
        for probe in peaks.values():
            probe.run()
    peak = {k: v.tflops for k, v in peaks.items()}
    best_peak = {k: max(flops * calls / min(v.seconds[m]) / 1e12 for m, (_, flops, calls) in v.methods.items())
                 for k, v in peaks.items()}
    mm_peak = {k: v.mm_tflops for k, v in peaks.items()}
    rows = []
    for n in names:
        med, best = statistics.median(times[n]), min(times[n])
        prec = precision_of(n)
        rows.append({"variant": n, "size": [w, h], "median_s": med, "best_s": best, "fps": 1 / med,
                     "tflops": flops / med / 1e12, "best_tflops": flops / best / 1e12,
                     "fraction_of_peak": flops / med / 1e12 / peak[prec],
                     "fraction_of_mm_peak": flops / med / 1e12 / mm_peak[prec],
                     "best_fraction_of_best_peak": flops / best / 1e12 / best_peak[prec],
                     "tile_work": variants[n][2], "compile_s": variants[n][1], "runs_s": [round(t, 3) for t in times[n]]})
    if a.json:
        print(json.dumps({"threads": torch.get_num_threads(), "peak_tflops": peak, "mm_peak_tflops": mm_peak, "best_peak_tflops": best_peak, "rows": rows}, indent=2))
        return
    print(f"{w}x{h}, {torch.get_num_threads()} threads, {a.repeats} rounds, {'CPU' if a.cpu_time else 'wall'} time; peak TFLOP/s median/best: "
          + ", ".join(f"{k} {peak[k]:.3f}/{best_peak[k]:.3f} (mm {mm_peak[k]:.3f})" for k in peak))
    for r in rows:
        extra = f" compile {r['compile_s']:.0f} s" if r["compile_s"] else ""
        extra += f" work x{r['tile_work']:.2f}" if r["tile_work"] != 1 else ""
        print(f"  {r['variant']:<20} median {r['median_s']:.3f} s ({r['tflops']:.3f} TFLOP/s, {100 * r['fraction_of_peak']:.0f}% of peak, "
              f"{100 * r['fraction_of_mm_peak']:.0f}% of mm)"
              f"  best {r['best_s']:.3f} s ({r['best_tflops']:.3f}, {100 * r['best_fraction_of_best_peak']:.0f}%){extra}  runs {r['runs_s']}")


if __name__ == "__main__":
    main()
