#!/usr/bin/env bash
# The GPU numbers of issue 10 (BENCHMARKS.md's H100 table), in phases that each fit one call of the
# device tool (10 minutes a command):
#
#   test      PSNR of the CUDA path against fp32 on the CPU (cuda_vs_cpu.py), then pytest -m gpu  (~4 min)
#   quick     the eager table's key rows when a lease is short: eager fp16/bf16, CUDA graphs + fused
#             attention at batch 1 and 4, fused alone, each also end to end                        (~4 min)
#   eager     bench at 1280x720: eager fp16/bf16 (all stages), fused attention, CUDA graphs (both),
#             batch 2 and 4, each with the real pipeline end to end                                (~4 min)
#   compile   torch.compile default cold, then warm in a second process (the on-disk cache),
#             reduce-overhead, default + fused attention + CUDA graphs                              (~6 min)
#   autotune  torch.compile max-autotune cold, then warm in a second process                       (~8 min)
#   all       every phase (for a machine without the 10-minute limit)
#
# Usage:  benchmarks/run_gpu.sh [--dry-run] PHASE...
#   --dry-run  on this CPU: tiny sizes, fp32, one repeat; compile steps only have their arguments
#              checked (DRY_COMPILE=1 runs them too). GPU-only steps fail with their one-line error.
#              No time budget (VDEBLUR_GPU_BUDGET_S sets one).
#
# Through the device tool (carry .whl, made by benchmarks/fetch_gpu_wheels.sh, for PyAV):
#   run(command="bash benchmarks/run_gpu.sh test", carry=[".whl"], timeout_s=600)
# Under $OUT (what the tool brings back, at most 8 files) each phase leaves PHASE.tar.gz (every JSON,
# log and command) and PHASE-summary.md (tables from bench_table.py, step status); run_gpu.log has
# everything printed. All phases of one call share one time budget (VDEBLUR_GPU_BUDGET_S, default
# 570 s, inside the tool's 600): each step has its own limit, and steps that no longer fit are
# skipped and listed as skipped, so `run_gpu.sh test eager` in one call is safe.
# Without $OUT: benchmarks/results/gpu-<date>/.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

DRY=0
PHASES=()
for arg in "$@"; do
    case $arg in
        --dry-run) DRY=1 ;;
        -h|--help) usage; exit 0 ;;
        test|quick|eager|compile|autotune) PHASES+=("$arg") ;;
        all) PHASES+=(test eager compile autotune) ;;
        *) echo "run_gpu.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done
[ ${#PHASES[@]} -gt 0 ] || { usage >&2; exit 2; }

BUDGET=${VDEBLUR_GPU_BUDGET_S:-$([ $DRY = 1 ] && echo 7200 || echo 570)}   # a dry run is about logic, not time
STAMP=$(date -u +%Y%m%dT%H%MZ)
if [ -z "${OUT:-}" ]; then
    OUT=$ROOT/benchmarks/results/gpu-$STAMP$([ $DRY = 1 ] && echo -dry)
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run_gpu.log") 2>&1
WORK=${VDEBLUR_GPU_WORK:-${TMPDIR:-/tmp}/vdeblur-gpu-$STAMP}
PY=${PYTHON:-python3}

# --- the environment: PyAV from a carried wheel, vdeblur from this checkout ----------------------
if [ $DRY = 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vdeblur-site .whl/*.whl \
        && SITE=/tmp/vdeblur-site || echo "run_gpu.sh: WARNING: installing the carried wheels failed"
fi
export PYTHONPATH=$ROOT${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
unset TORCHINDUCTOR_CACHE_DIR
$PY -c 'import av' 2>/dev/null || echo "run_gpu.sh: WARNING: PyAV is not importable: bench and the pipeline need it (carry .whl from benchmarks/fetch_gpu_wheels.sh)"

# --- sizes: the issue's on a GPU, tiny on the CPU --------------------------------------------------
if [ $DRY = 1 ]; then
    DEV=cpu; SIZE=64x64; FRAMES=3; TIMED=(--repeats 1 --warmup 1 --e2e-repeats 1 --threads 1); EAGER_LIMIT=600
    FP16=fp32; BOTH=fp32; CHECK=(--device cpu --variants fp32,bf16,fp32+graphs --size 64x64 --frames 3 --batch 2 --repeat 2)
else
    # 240 frames: at 48, the encoder's flush of its lookahead (~40 frames at the end) and the clip's setup
    # weighed on the end-to-end rate (81 % of the model on 2026-12-04, likely those fixed costs)
    DEV=cuda; SIZE=1280x720; FRAMES=240; TIMED=(--repeats 20 --warmup 3 --e2e-repeats 3); EAGER_LIMIT=120
    FP16=fp16; BOTH=fp16,bf16; CHECK=(--size 1280x720 --frames 4 --batch 2 --repeat 3)
fi
BENCH=(bench --json --device "$DEV" --size "$SIZE" --frames "$FRAMES" "${TIMED[@]}")

# --- steps ------------------------------------------------------------------------------------------
PHASE= W=

pack() {   # what comes back: the work folder as one archive, the tables, the steps
    {
        echo "# run_gpu.sh $PHASE$([ $DRY = 1 ] && echo ' (dry run on the CPU)'), $STAMP"
        echo
        echo '| step | status | seconds |'
        echo '| --- | --- | --- |'
        awk -F'\t' '{ printf "| %s | %s | %s |\n", $1, $2, $3 }' "$W/steps.tsv"
        echo
        $PY benchmarks/bench_table.py "$W" 2>/dev/null
    } > "$OUT/$PHASE-summary.md"
    tar -czf "$OUT/$PHASE.tar.gz" --exclude=xdg-cache -C "$WORK" "$PHASE"
}

# step NAME LIMIT_S KIND ARGS...   KIND: bench (python -m vdeblur ARGS > NAME.json), py (python ARGS >
# NAME.json), test (python ARGS > NAME.log), heavy-bench (bench that a dry run only parses)
step() {
    local name=$1 limit=$2 kind=$3; shift 3
    local left=$((BUDGET - SECONDS))
    local cmd=("$@") status rc t0
    [ "$kind" = bench ] || [ "$kind" = heavy-bench ] && cmd=(-m vdeblur "$@")
    if [ "$left" -lt 30 ]; then
        printf '%s\tskipped: %ss of the budget left\t0\n' "$name" "$left" >> "$W/steps.tsv"
        echo "== $name: skipped ($left s left of this call's $BUDGET s)"; pack; return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    case $kind in
        bench|heavy-bench) echo "vdeblur ${*}" > "$W/$name.cmd" ;;
        *) echo "python ${*}" > "$W/$name.cmd" ;;
    esac
    echo "== $name (limit ${limit} s): $(cat "$W/$name.cmd")"
    t0=$SECONDS
    if [ $DRY = 1 ] && [ "$kind" = heavy-bench ] && [ "${DRY_COMPILE:-0}" != 1 ]; then
        $PY -c 'import sys; from vdeblur.cli import build_parser; build_parser().parse_args(sys.argv[1:])' "$@" \
            > "$W/$name.log" 2>&1
        rc=$?
        status=$([ $rc = 0 ] && echo "arguments ok (dry run)" || echo "BAD ARGUMENTS (rc $rc)")
    else
        if [ "$kind" = test ]; then
            timeout -k 10 "$limit" $PY "${cmd[@]}" > "$W/$name.log" 2>&1
        else
            timeout -k 10 "$limit" $PY "${cmd[@]}" > "$W/$name.json.part" 2> "$W/$name.log"
        fi
        rc=$?
        [ -f "$W/$name.json.part" ] && { [ -s "$W/$name.json.part" ] && mv "$W/$name.json.part" "$W/$name.json" || rm -f "$W/$name.json.part"; }
        case $rc in
            0) status=ok ;;
            124|137) status="TIMED OUT after ${limit} s" ;;
            *) status="FAILED (rc $rc): $(grep -v '^\s*$' "$W/$name.log" | tail -n 1 | cut -c1-160 | tr '|\t' '/ ')"
               [ -f "$W/$name.json" ] && status="FAILED (rc $rc): see $name.json" ;;
        esac
    fi
    printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" >> "$W/steps.tsv"
    echo "== $name: $status ($((SECONDS - t0)) s)"
    pack
}

begin_phase() {
    PHASE=$1 W=$WORK/$1
    rm -rf "$W"; mkdir -p "$W"; : > "$W/steps.tsv"
    # every phase compiles into its own empty cache, so "cold" is cold and "warm" is this phase's
    export XDG_CACHE_HOME=$W/xdg-cache
    echo "#### phase $PHASE ($(date -u +%H:%M:%S) UTC), results under $OUT"
}

end_phase() {
    [ -d "$W/xdg-cache" ] && echo "compile cache of this phase: $(du -sh "$W/xdg-cache" | cut -f1)" | tee "$W/cache-size.txt"
    pack
    cat "$OUT/$PHASE-summary.md"
}

environment() {
    {
        date -u; uname -a
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
        $PY - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
for name in ("triton", "av", "numpy", "onnxruntime"):
    try:
        print(name, __import__(name).__version__)
    except Exception as e:
        print(name, "missing:", e)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, p.total_memory // 2**20, "MiB", p.multi_processor_count, "SMs")
EOF
    } > "$W/env.txt" 2>&1
    cat "$W/env.txt"
}

phase_test() {
    begin_phase test
    environment
    step cuda-vs-cpu 240 py benchmarks/cuda_vs_cpu.py "${CHECK[@]}"
    step pytest-gpu 420 test -m pytest -m gpu -q -rs -p no:cacheprovider --continue-on-collection-errors
    end_phase
}

phase_eager() {
    begin_phase eager
    step eager "$EAGER_LIMIT" bench "${BENCH[@]}" --precision "$BOTH" --no-fused-attention --no-cuda-graphs
    step fused 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --fused-attention --no-cuda-graphs
    step graphs 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --cuda-graphs --no-fused-attention
    step graphs-fused 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --cuda-graphs --fused-attention
    step graphs-fused-b2 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --cuda-graphs --fused-attention --batch 2
    step graphs-fused-b4 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --cuda-graphs --fused-attention --batch 4
    step fused-b4 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --fused-attention --batch 4 --no-cuda-graphs
    step graphs-fused-bf16 90 bench "${BENCH[@]}" --precision bf16 --stages model --cuda-graphs --fused-attention
    end_phase
}

phase_quick() {
    begin_phase quick
    step eager "$EAGER_LIMIT" bench "${BENCH[@]}" --precision "$BOTH" --stages model,end_to_end --no-fused-attention --no-cuda-graphs
    step graphs-fused 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,pipeline,end_to_end --cuda-graphs --fused-attention
    step graphs-fused-b4 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --cuda-graphs --fused-attention --batch 4
    step fused 90 bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --fused-attention --no-cuda-graphs
    end_phase
}

phase_compile() {
    begin_phase compile
    step compile-cold 240 heavy-bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --compile --no-fused-attention --no-cuda-graphs
    step compile-warm 120 heavy-bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --compile --no-fused-attention --no-cuda-graphs
    step compile-reduce-overhead 150 heavy-bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --compile-mode reduce-overhead --no-fused-attention
    step compile-fused-graphs 150 heavy-bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --compile --fused-attention --cuda-graphs
    end_phase
}

phase_autotune() {
    begin_phase autotune
    step autotune-cold 450 heavy-bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --compile-mode max-autotune --no-fused-attention
    step autotune-warm 150 heavy-bench "${BENCH[@]}" --precision "$FP16" --stages model,end_to_end --compile-mode max-autotune --no-fused-attention
    end_phase
}

for phase in "${PHASES[@]}"; do
    "phase_$phase"
done
