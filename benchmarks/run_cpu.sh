#!/bin/sh
# The numbers in BENCHMARKS.md (CPU), in one go on a quiet machine (about 12 minutes on 2 quiet cores).
# Writes benchmarks/results/<date>-*.{json,txt}; paste the .txt tables into BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out=benchmarks/results/$(date -u +%Y%m%dT%H%MZ)
mkdir -p "$(dirname "$out")"
# 1. vdeblur bench: every stage, fp32 vs bf16 side by side, both sizes, memory vs video length.
python -m vdeblur bench --size 640x368,1280x720 --precision bf16,fp32 --frames 24 --repeats 5 --warmup 2 \
    --e2e-repeats 2 --memory-check --json > "$out-bench.json"
python -c 'import json, sys; from vdeblur.bench import format_table; print(format_table(json.load(open(sys.argv[1]))))' \
    "$out-bench.json" > "$out-bench.txt"
# 2. the CPU variants behind the backend's defaults (model only, round-robin).
python benchmarks/cpu_variants.py --size 640x368 --repeats 3 \
    --variants fp32,bf16-autocast,bf16,bf16-nchw,bf16-compile > "$out-variants-368.txt"
python benchmarks/cpu_variants.py --size 1280x720 --repeats 3 \
    --variants bf16,bf16-compile,bf16-tiles:2x2 > "$out-variants-720.txt"
cat "$out-bench.txt" "$out-variants-368.txt" "$out-variants-720.txt"
