#!/usr/bin/env python3
"""Train on a lent GPU machine (the `device` tool) inside its limits, and bring the weights back.

The tool sends the work tree plus carried folders (64 MiB in all), runs one command of at most
10 minutes, and returns at most 8 files of at most 16 MiB from $OUT. A run started in its own
process session outlives the call; the machine goes back 30 s after an idle call and after 30
minutes held. So: pack the data small enough to travel, start the run detached, follow it with
calls that wait and export the latest weights (split into parts that fit), and join them here.

    here:   python scripts/device_train.py pack                     # ../shared/data -> .carry/data
                                                                    # (35.4 MiB; with the tree, 49.7 of 64)
    device: run(command="python3 scripts/device_train.py start --minutes 6", carry=[".carry"])
            run(command="python3 scripts/device_train.py wait")     # issue each right after the last,
                                                                    # until one says the run ended
    (A session now has 15 minutes of device time in all, the machine's start included: `--minutes 6`
    ends inside the first call's 540-s wait, with its weights exported. Longer runs need `wait` calls
    that follow each other within the machine's 30-s idle window.)
    here:   python scripts/device_train.py join FILES_AT --out ~/.cache/vdeblur/runs/h100

The run trains from a copy of the data inside its run directory, so calls in between may carry
other things (the PyAV wheel for benchmarks/run_gpu.sh) and run other GPU work: `start --wait 60`
returns after a minute with the run going; `run_gpu.sh test` can share the GPU with it (correctness
only), while timed phases should wait until `wait` reports the run over.

What one 15-minute H200 lease did on 2026-12-04 (the shipped weights' GPU phase; 797 s held, the
machine's start included), each call issued as soon as the last returned:

    run(command="python3 scripts/device_train.py start --eager --steps 2400 --workers 8
                 --checkpoint-minutes 1 --wait 25 -- --init-weights vdeblur/weights/default.safetensors
                 --lr 1.5e-4", carry=[".carry"])                                # 32 s: steps flowing
    run(command="VDEBLUR_GPU_BUDGET_S=240 bash benchmarks/run_gpu.sh test;
                 python3 scripts/device_train.py wait --wait 150 --export /tmp/exp; cp /tmp/exp/weights.* $OUT/;
                 tar -czf $OUT/trainlogs.tgz -C /tmp/exp log.jsonl command.txt train.log", carry=[".whl"])
    then run_gpu.sh quick, compile and eager, each in its own call.

Fine-tuning, eager: 2,400 steps in 5.2 min (122 samples/s beside the GPU tests). For a run this short
`--eager` beats compiling (89 s of compile is ~800 eager steps). The tool brings back 8 files at
most: the weights' two parts and weights.json, plus the logs as one archive, beside run_gpu.sh's three.

`start` trains from scratch with the notes' 30-minute H100 recipe (crop 256, batch 16, Adam 2e-4,
power-0.3 decay, synthetic pairs 3:1 with the real train pairs), compiled; arguments after `--` go to
`vdeblur train` and override it. Its step count is sized so the learning rate reaches zero inside
the time given (at --rate steps/s); --time-limit stops it regardless.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vdeblur.errors import VdeblurError  # noqa: E402

CARRY_LIMIT = 64 * 2**20          # the device tool: work tree + carried folders, per call
CARRY_MARGIN = 2 * 2**20          # room for the tree to grow between packing and the call
PART_LIMIT = 15 * 2**20           # the tool returns files of at most 16 MiB
CARRIED = ROOT / ".carry" / "data"    # ignored by git; named in the call's carry
DEFAULT_RUN = Path(os.environ.get("TMPDIR", "/tmp")) / "vdeblur-device-run"
STARTUP_S = 150                   # compiling (89 s measured on an H100), workers and cuDNN before steps flow
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# ----------------------------------------------------------------------------- pack (here)

def _to_webp(job: tuple[str, str]) -> int:
    """Re-encode one image as lossless WebP (a third smaller than PNG here); check it reads back exactly."""
    from PIL import Image

    src, dst = job
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = dst + ".tmp"
    rgb.save(tmp, "WEBP", lossless=True, quality=100, method=1)
    with Image.open(tmp) as back:
        if not np.array_equal(np.asarray(back.convert("RGB")), np.asarray(rgb)):
            raise VdeblurError(f"{src}: lossless WebP did not read back exactly")
    os.replace(tmp, dst)
    return Path(dst).stat().st_size


def _tree_bytes() -> int:
    """What the device tool sends besides carried folders: tracked and untracked-not-ignored files."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    return sum((ROOT / n).stat().st_size for n in names if n and (ROOT / n).is_file())


def pack(data: Path, out: Path, jobs: int) -> None:
    sources = {"sharp": data / "sharp", "gopro-train": data / "gopro-resynth" / "train"}
    for name, folder in sources.items():
        if not folder.is_dir():
            raise VdeblurError(f"{folder}: no such folder (give --data, the folder holding sharp/ and gopro-resynth/)")
    work = []
    for name, folder in sources.items():
        for src in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            dst = (out / name / src.relative_to(folder)).with_suffix(".webp")
            if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
                work.append((str(src), str(dst)))
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(_to_webp, work))
    else:
        for job in work:
            _to_webp(job)
    _check_same_split(sources["sharp"], out / "sharp")
    packed = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    tree = _tree_bytes()
    print(f"packed {len(work)} new image(s) into {out}: {packed / 2**20:.1f} MiB; work tree {tree / 2**20:.1f} MiB; "
          f"together {(packed + tree) / 2**20:.1f} of the tool's {CARRY_LIMIT / 2**20:.0f} MiB")
    if packed + tree > CARRY_LIMIT - CARRY_MARGIN:
        raise VdeblurError(f"{out} and the work tree come to {(packed + tree) / 2**20:.1f} MiB, over the "
                           f"{(CARRY_LIMIT - CARRY_MARGIN) / 2**20:.0f} MiB that can travel: carry fewer photos")


def _check_same_split(original: Path, packed: Path) -> None:
    """The packed photos must split into train/held-out exactly as the originals do, or the
    synthetic evaluation (`vdeblur eval --synthetic`) would score images the device trained on."""
    from vdeblur.synthetic import PhotoBank

    def stems(folder: Path, split: str) -> list[str]:
        names = PhotoBank([folder], builtin=False, split=split).names()
        return [Path(n).relative_to(folder).with_suffix("").as_posix() for n in names]

    for split in ("train", "val"):
        if stems(original, split) != stems(packed, split):
            raise VdeblurError(f"{packed}: its photos split into train/held-out differently from {original}")


# ----------------------------------------------------------------------------- start / wait (device)

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child of ours that has exited stays a zombie until reaped; it is not running.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def train_command(args, extra: list[str]) -> list[str]:
    steps = args.steps or max(100, int(args.rate * (args.minutes * 60 - STARTUP_S)))
    carry = args.data
    cmd = [sys.executable, "-m", "vdeblur", "train", "--out", str(args.run),
           "--data", str(carry / "gopro-train"), "--photos", str(carry / "sharp"), "--synthetic-fraction", "0.75",
           "--crop", "256", "--batch", "16", "--steps", str(steps), "--lr", "2e-4", "--lr-power", "0.3",
           "--seed", str(args.seed), "--device", args.device, "--checkpoint-minutes", str(args.checkpoint_minutes),
           "--time-limit", f"{args.minutes + 1.5:g}", "--no-progress"] + ([] if args.eager else ["--compile"])
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    return cmd + extra


def start(args, extra: list[str]) -> int:
    run: Path = args.run
    pid_file = run / "pid"
    if pid_file.is_file() and _alive(int(pid_file.read_text())):
        raise VdeblurError(f"{run}: a run is already going (pid {pid_file.read_text().strip()}); use `wait`")
    if (run / "latest.json").exists():
        raise VdeblurError(f"{run}: holds an earlier run; give another --run")
    if not (args.data / "sharp").is_dir() or not (args.data / "gopro-train").is_dir():
        raise VdeblurError(f"{args.data}: no packed data (run `pack` here, then carry .carry)")
    run.mkdir(parents=True, exist_ok=True)
    # The run reads its own copy: later calls re-sync the work tree (and may carry other folders).
    data = run / "data"
    if not data.exists():
        shutil.copytree(args.data, data)
    args.data = data
    cmd = train_command(args, extra)
    (run / "command.txt").write_text(" ".join(cmd) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    with open(run / "train.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    print(f"started {' '.join(cmd)}\n  pid {proc.pid}, run directory {run}", flush=True)
    return wait(args)


def _last_log(run: Path) -> dict | None:
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def wait(args) -> int:
    run: Path = args.run
    pid_file = run / "pid"
    if not pid_file.is_file():
        raise VdeblurError(f"{run}: no run here (start one with `start`)")
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + args.wait
    last_step = None
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(min(args.poll, max(0.0, deadline - time.monotonic())))
        rec = _last_log(run)
        if rec and rec.get("step") != last_step:
            last_step = rec.get("step")
            print(time.strftime("%H:%M:%S"), json.dumps({k: rec.get(k) for k in ("step", "loss_ema", "lr", "samples_per_s", "elapsed_s")}),
                  flush=True)
    running = _alive(pid)
    tail = (run / "train.log").read_text(errors="replace")[-3000:] if (run / "train.log").is_file() else ""
    if not running:
        print(f"--- the run ended; end of {run / 'train.log'}:\n{tail}", flush=True)
    export(run, Path(args.export or os.environ.get("OUT") or run / "export"), int(args.part_mib * 2**20), running)
    return 0


def export(run: Path, out: Path, part_bytes: int, running: bool) -> None:
    """The latest weights as parts under ``part_bytes``, with a manifest to join and check them, and the logs."""
    out.mkdir(parents=True, exist_ok=True)
    latest = run / "latest.json"
    if not latest.is_file():
        print(f"no checkpoint yet in {run} ({'still running' if running else 'the run ended without one'})", flush=True)
        return
    info = json.loads(latest.read_text())
    data = (run / info["weights"]).read_bytes()  # latest.json only ever names a complete file
    parts = []
    for i in range(0, len(data), part_bytes):
        name = f"weights.part{len(parts)}"
        (out / name).write_bytes(data[i:i + part_bytes])
        parts.append(name)
    manifest = {"file": info["weights"], "step": info["step"], "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "parts": parts, "running": running}
    (out / "weights.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in ("log.jsonl", "command.txt", "train.log"):
        if (run / name).is_file():
            shutil.copyfile(run / name, out / name)
    print(f"exported {info['weights']} (step {info['step']}, {len(data) / 2**20:.1f} MiB in {len(parts)} part(s)) to {out}; "
          f"the run is {'still going: call wait again now' if running else 'over'}", flush=True)


# ----------------------------------------------------------------------------- join (here)

def join(files_at: Path, out: Path) -> Path:
    from vdeblur.checkpoint import read_checkpoint
    from vdeblur.fileio import atomic_write

    try:
        manifest = json.loads((files_at / "weights.json").read_text())
        parts = [files_at / p for p in manifest["parts"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise VdeblurError(f"{files_at}: no readable weights.json from `wait`") from None
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise VdeblurError(f"{files_at}: missing part(s) {', '.join(missing)}")
    data = b"".join(p.read_bytes() for p in parts)
    if len(data) != manifest["bytes"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise VdeblurError(f"{files_at}: the joined parts do not match weights.json (size or sha256)")
    out.mkdir(parents=True, exist_ok=True)
    target = out / Path(manifest["file"]).name
    atomic_write(target, data)
    read_checkpoint(target)  # a vdeblur checkpoint, not just matching bytes
    for name in ("log.jsonl", "command.txt", "train.log"):
        if (files_at / name).is_file():
            shutil.copyfile(files_at / name, out / name)
    print(f"{target}: step {manifest['step']}, sha256 {manifest['sha256'][:16]}..., "
          f"{'taken while the run was still going' if manifest['running'] else 'the run had ended'}")
    return target


# ----------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    pk = sub.add_parser("pack", help="here: the training data as lossless WebP in .carry/data, checked to fit a call")
    pk.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    pk.add_argument("--out", type=Path, default=CARRIED)
    pk.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    for name, helptext in (("start", "device: start the run detached, then wait"), ("wait", "device: follow the run, export the latest weights")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--run", type=Path, default=DEFAULT_RUN, help="run directory on the device")
        s.add_argument("--wait", type=float, default=540, help="seconds this call follows the run (the tool allows 600)")
        s.add_argument("--poll", type=float, default=30, help="seconds between progress lines")
        s.add_argument("--export", help="where the weights go (default $OUT)")
        s.add_argument("--part-mib", type=float, default=PART_LIMIT / 2**20, help="largest exported file")
        if name == "start":
            s.add_argument("--data", type=Path, default=CARRIED, help="the packed data")
            s.add_argument("--minutes", type=float, default=6,
                           help="training time; the schedule is sized to it (default 6: inside one call)")
            s.add_argument("--rate", type=float, default=9.0,
                           help="expected steps/s (H100, batch 16, 256 px: 10.6 compiled, 8.9 eager in the notes)")
            s.add_argument("--eager", action="store_true", help="no torch.compile (then use --rate 7.5)")
            s.add_argument("--steps", type=int, help="total steps (default: from --minutes and --rate)")
            s.add_argument("--seed", type=int, default=11)
            s.add_argument("--device", default="cuda")
            s.add_argument("--workers", type=int, default=12, help="data loader processes (synthetic pairs cost ~40 ms each on one core)")
            s.add_argument("--checkpoint-minutes", type=float, default=2.0)
    j = sub.add_parser("join", help="here: rebuild the weights from the files a `wait` call brought back")
    j.add_argument("files_at", type=Path)
    j.add_argument("--out", type=Path, required=True, help="directory for the joined checkpoint and logs")
    args = p.parse_args(argv)
    if extra and args.verb != "start":
        p.error("arguments after -- go to `vdeblur train` and only with start")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.verb == "pack":
            pack(args.data, args.out, args.jobs)
        elif args.verb == "start":
            return start(args, extra)
        elif args.verb == "wait":
            return wait(args)
        else:
            join(args.files_at, args.out)
    except VdeblurError as e:
        print(f"device_train.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
