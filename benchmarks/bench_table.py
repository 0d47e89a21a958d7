"""Markdown tables for BENCHMARKS.md from `vdeblur bench --json` files (and `cuda_vs_cpu.py` files).

    python benchmarks/bench_table.py results/*.json > table.md

One row per (file, size, precision) with the model's speed, share of the measured peak, GPU memory,
first-call and compile seconds, and the end-to-end rate when the file has one; the run name is the
file's stem, and a ``<stem>.cmd`` beside the file (written by run_gpu.sh) supplies the exact command.
Stages other than the model (decode, convert, encode) get their own table, and PSNR checks theirs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(paths: list[str]) -> list[tuple[str, dict, str | None]]:
    """(name, JSON, command or None) for every .json file named or inside a named directory."""
    files = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    out = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"bench_table: skipping {f}: {e}", file=sys.stderr)
            continue
        cmd = f.with_suffix(".cmd")
        out.append((f.stem, data, cmd.read_text().strip() if cmd.is_file() else None))
    return out


def options(settings: dict, backend: dict) -> str:
    """The speed switches of a run, as a reader would name them."""
    parts = []
    if settings.get("compile"):
        parts.append(f"compile {settings.get('compile_mode') or 'default'}")
    if settings.get("fused_attention"):
        parts.append("fused attention")
    if settings.get("cuda_graphs"):
        parts.append("CUDA graphs")
    if settings.get("tile"):
        parts.append(f"{settings['tile']}px tiles")
    if not parts and backend.get("backend") not in (None, "torch"):
        parts.append(backend["backend"])
    return ", ".join(parts) or "eager"


def _num(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def model_rows(runs) -> list[str]:
    rows = ["| run | size | precision | batch | options | ms/frame | fps | TFLOP/s | % of peak | GPU GiB "
            "| first call s | compile s | end to end fps (% of model) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r, _ in runs:
        s = r["settings"]
        for entry in r["sizes"]:
            w, h = entry["size"]
            st = entry["stages"]
            e2e = st.get("end_to_end")
            for precision, m in (st.get("model") or {"": None}).items():
                e2e_text = ""
                if e2e and e2e.get("precision", precision) == precision:
                    frac = e2e.get("fraction_of_model_fps")
                    e2e_text = f"{e2e['fps']:.2f}" + (f" ({100 * frac:.0f} %)" if frac else "")
                    if e2e.get("steady_fps"):
                        e2e_text += f"; steady {e2e['steady_fps']:.2f}"
                if m is None:
                    rows.append(f"| {name} | {w}x{h} | {e2e.get('precision', '') if e2e else ''} | {s['batch']} "
                                f"| {options(s, r.get('backend', {}))} | | | | | | | | {e2e_text} |")
                    continue
                gpu = m.get("gpu_memory", {}).get("max_allocated_bytes")
                rows.append(
                    f"| {name} | {w}x{h} | {precision} | {m['batch']} | {options(s, m.get('backend', {}))} "
                    f"| {m['ms_per_frame']:.2f} | {m['fps']:.2f} | {m['tflops']:.3g} "
                    f"| {_num(m.get('fraction_of_peak') and 100 * m['fraction_of_peak'], '.0f')} "
                    f"| {_num(gpu and gpu / 2**30, '.2f')} | {m['first_call_s']:.1f} "
                    f"| {_num(m.get('compile_s'), '.1f')} | {e2e_text} |")
    return rows


def stage_rows(runs) -> list[str]:
    rows = []
    for name, r, _ in runs:
        for entry in r["sizes"]:
            st = entry["stages"]
            for stage in ("decode", "convert", "encode", "pipeline"):
                if stage in st:
                    w, h = entry["size"]
                    rows.append(f"| {name} | {w}x{h} | {stage} | {st[stage]['ms_per_frame']:.2f} | {st[stage]['fps']:.1f} |")
    if not rows:
        return []
    return ["| run | size | stage | ms/frame | fps |", "| --- | --- | --- | --- | --- |", *rows]


def psnr_rows(checks) -> list[str]:
    rows = []
    for name, r, _ in checks:
        w, h = r["size"]
        for variant, v in r["variants"].items():
            if "error" in v:
                rows.append(f"| {name} | {w}x{h} | {variant} | failed: {v['error'].replace('|', '/')} | | | | |")
                continue
            graphs = v["backend"].get("cuda_graphs")
            replays = f"{graphs['captured']} / {graphs['replays']}" if graphs else ""
            rows.append(f"| {name} | {w}x{h} | {variant} | {v['psnr_db']:.2f} | {v['max_abs_diff']} "
                        f"| {v['mean_abs_diff']:.4f} | {'yes' if v['passes_agree'] else 'NO'} | {replays} |")
    if not rows:
        return []
    return ["| check | size | variant | PSNR vs CPU fp32, dB | max abs diff | mean abs diff | passes agree "
            "| graphs captured / replays |", "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows]


def header(runs) -> list[str]:
    lines = []
    for key, fmt in (("device", lambda r: r["device"]["description"]), ("torch", lambda r: r["torch"]),
                     ("date", lambda r: r["date"]), ("weights", lambda r: r["weights"])):
        values = list(dict.fromkeys(fmt(r) for _, r, _ in runs))
        lines.append(f"- {key}: {'; '.join(values)}")
    peaks = {}
    for _, r, _ in runs:
        for p, peak in r.get("peaks", {}).items():
            peaks.setdefault(p, []).append(peak["tflops"])
    for p, values in peaks.items():
        lines.append(f"- {p} peak measured on the spot: {min(values):.3g}-{max(values):.3g} TFLOP/s ({len(values)} runs)")
    return lines


def render(items) -> str:
    runs = [i for i in items if "sizes" in i[1]]
    checks = [i for i in items if "variants" in i[1] and "reference" in i[1]]
    out = []
    if runs:
        out += header(runs) + [""] + model_rows(runs)
        stages = stage_rows(runs)
        if stages:
            out += ["", *stages]
    if checks:
        out += ["", *psnr_rows(checks)]
    commands = [(name, cmd) for name, _, cmd in items if cmd]
    if commands:
        out += ["", "Commands:", "", "```sh", *(f"{cmd}   # {name}" for name, cmd in commands), "```"]
    return "\n".join(out).strip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="JSON files, or directories of them")
    args = ap.parse_args(argv)
    items = load(args.paths)
    if not items:
        print("bench_table: no JSON files found", file=sys.stderr)
        return 1
    sys.stdout.write(render(items))
    return 0


if __name__ == "__main__":
    sys.exit(main())
