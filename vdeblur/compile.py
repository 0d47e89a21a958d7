"""`vdeblur compile`: export, build a TensorRT engine, verify it against fp32 torch, file it under engines/.

The engine's name and JSON sidecar carry everything it depends on (``trt.cache.EngineKey``), so
an engine built for other weights, sizes, precision, TensorRT or GPU is rebuilt, never reused.
A new engine takes its final name only after it matched the fp32 torch model on real frames
(the user's video when given) at >= 40 dB PSNR with no NaN/Inf.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import VdeblurError, require_pyav
from .fileio import atomic_write, check_output
from .trt.cache import EngineKey, ShapeProfile, engine_facts, engine_mismatch, parse_shape, read_sidecar, write_sidecar

DEFAULT_ENGINE_DIR = Path("engines")
MIN_PSNR_DB = 40.0
VERIFY_FRAMES = 4


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def video_frames(path: str, count: int) -> np.ndarray:
    """The first ``count`` frames of a video as uint8 RGB NHWC, converted exactly as `vdeblur deblur`
    converts them (the pipeline's reader: its checks, its colour matrix), so the engine is verified
    on the frames it will see."""
    require_pyav()
    from .video import VideoReader

    reader = VideoReader(path)
    try:
        frames = []
        for frame in reader.video_frames():
            frames.append(reader.to_rgb(frame).image)
            if len(frames) == count:
                break
    finally:
        reader.close()
    return np.stack(frames)


def synthetic_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random images with edges and noise: natural enough to exercise every layer."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, height // 16 + 2, width // 16 + 2, 3))
    img = np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)[:, :height, :width]
    img = img + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def engine_key(weights_sha256: str, onnx_bytes: bytes, precision: str, profile: ShapeProfile, plugin: bool,
               tensorrt_version: str, gpu_name: str, compute_capability: str) -> EngineKey:
    import hashlib

    from . import __version__
    from .trt.cache import builder_sha256, kernel_sha256

    triton_version = "none"
    if plugin:
        try:
            import triton
        except ImportError:
            raise VdeblurError("the fused-attention plugin is compiled with triton at build time: "
                               "pip install 'vdeblur[tensorrt]' (or pass --no-plugin)") from None
        triton_version = triton.__version__
    return EngineKey(weights_sha256=weights_sha256, onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                     precision=precision, profile=profile, plugin=plugin, tensorrt_version=tensorrt_version,
                     gpu_name=gpu_name, compute_capability=compute_capability,
                     kernel_sha256=kernel_sha256() if plugin else "none", triton_version=triton_version,
                     builder_sha256=builder_sha256(), vdeblur_version=__version__)


def verify_engine(plan: bytes, weights: Path, frames: np.ndarray, source: str) -> dict:
    """Engine vs the fp32 torch model on ``frames``; raises below MIN_PSNR_DB or on NaN/Inf."""
    from . import load_model
    from .backends.torch_backend import TorchBackend
    from .trt.runtime import EngineRunner

    runner = EngineRunner(plan, source)
    try:
        out, nonfinite = runner.run(frames)
    finally:
        runner.close()
    with TorchBackend(load_model(weights), device="auto", precision="fp32", weights=str(weights)) as ref_backend:
        ref = ref_backend.run(frames)
    value = psnr(out, ref)
    facts = {"verify_frames": len(frames), "verify_psnr_db": round(value, 2) if math.isfinite(value) else "inf",
             "verify_nonfinite": int(nonfinite.sum())}
    if nonfinite.any():
        raise VdeblurError(f"{source}: the engine produced {int(nonfinite.sum())} NaN/Inf values on the check frames; not saved")
    if value < MIN_PSNR_DB:
        raise VdeblurError(f"{source}: engine output is {value:.1f} dB from the fp32 torch model (needs >= {MIN_PSNR_DB:.0f} dB); not saved")
    return facts


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def compile_engine(weights: str | None, profile: ShapeProfile, precision: str = "fp16", plugin: bool = True,
                   engine_dir: Path = DEFAULT_ENGINE_DIR, output: Path | None = None, check_frames: np.ndarray | None = None,
                   overwrite: bool = False, log=_to_stderr, inputs: tuple = ()) -> tuple[Path, dict]:
    """Return an up-to-date engine for these inputs, building (and verifying) it if needed. ``output``
    is never one of the files read (the weights, or ``inputs`` such as the video checked on). Status
    lines go to stderr by default: stdout may be the video (`deblur -o -`)."""
    from . import load_model
    from .checkpoint import file_sha256
    from .onnx_export import ExportSpec, build_onnx, count_custom_nodes
    from .trt import import_pycuda, import_tensorrt
    from .trt.build import build_engine, gpu_facts
    from .weights import default_weights_path

    trt = import_tensorrt()
    import_pycuda()
    weights_path = Path(weights) if weights else default_weights_path()
    if output is not None:
        check_output(output, True, inputs=[weights_path, *inputs])
    if profile.min[0] != 1:   # the last batch of a video, and frames the repeat check leaves, come fewer
        raise VdeblurError(f"the smallest batch of an engine must be 1, not {profile.min[0]}: a video's last batch "
                           "can be shorter than the others")
    sha = file_sha256(weights_path)
    size = profile.static_size
    model = load_model(weights_path)
    spec = ExportSpec(precision=precision, plugin=plugin, height=size and size[0], width=size and size[1])
    proto = build_onnx(model, spec, {"weights_sha256": sha})
    if plugin and not count_custom_nodes(proto):
        log(f"{weights_path.name}: its blocks lack the spatial or the channel attention that the fused plugin "
            "runs together; building with plain layers")
        plugin = False
        proto = build_onnx(model, replace(spec, plugin=False), {"weights_sha256": sha})
    onnx_bytes = proto.SerializeToString()
    gpu_name, cc = gpu_facts()
    key = engine_key(sha, onnx_bytes, precision, profile, plugin, trt.__version__, gpu_name, cc)
    path = Path(output) if output else Path(engine_dir) / key.filename()

    if path.is_file() and not overwrite:
        try:
            doc = read_sidecar(path)
        except VdeblurError:
            doc = None
        what = (", ".join(key.mismatches(doc["key"])) or engine_mismatch(doc, path.read_bytes())) if doc \
            else "its sidecar is missing"
        if not what:
            log(f"engine up to date: {path}")
            return path, doc
        if output:
            raise VdeblurError(f"{path}: exists and does not match this build ({what}); pass --overwrite to replace it")
        log(f"{path.name}: {what}; building it again")

    log(f"building {path.name} (TensorRT {trt.__version__}, {gpu_name} sm_{cc}, {precision}, "
        f"{'fused attention plugin' if plugin else 'plain ops'}); this takes minutes the first time")
    cache = Path(engine_dir) / f"timing-{key.gpu_slug}-sm{key.compute_capability.replace('.', '')}-trt{key.tensorrt_version}.cache"
    plan, facts = build_engine(onnx_bytes, profile, cache, plugin=plugin,
                               capability=int(cc.replace(".", "")), source=path.name)
    if check_frames is None:
        b, h, w = profile.opt
        check_frames = synthetic_frames(min(VERIFY_FRAMES, max(b, 1)), h, w)
    facts.update(verify_engine(plan, weights_path, check_frames, path.name))
    if profile.static_size is None:   # a dynamic engine: its smallest and largest frames are checked too
        for which in ("min", "max"):
            _, h, w = getattr(profile, which)
            verify_engine(plan, weights_path, synthetic_frames(1, h, w, seed=1), f"{path.name} at {h}x{w}")
    facts.update({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "weights": str(weights_path.resolve()),   # found again from any folder
                  **engine_facts(plan)})
    atomic_write(path, plan)
    doc = {"key": key.to_dict(), **facts}
    write_sidecar(path, key, facts)
    return path, doc


def register(subparsers) -> None:
    p = subparsers.add_parser("compile", help="build a TensorRT engine (fused attention plugin) for a frame size, verified against torch")
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", help="build for this video's frame size and verify on its first frames")
    src.add_argument("--height", type=int, help="frame height (with --width)")
    p.add_argument("--width", type=int, help="frame width (with --height)")
    p.add_argument("--min", dest="min_shape", help="smallest frames of a dynamic engine, HxW or NxHxW")
    p.add_argument("--opt", dest="opt_shape", help="frames TensorRT tunes for, HxW or NxHxW")
    p.add_argument("--max", dest="max_shape", help="largest frames of a dynamic engine, HxW or NxHxW")
    p.add_argument("--batch", type=int, default=1, help="frames per inference (default 1)")
    p.add_argument("--precision", choices=("fp16", "bf16", "fp32"), default="fp16", help="default fp16")
    p.add_argument("--no-plugin", action="store_true", help="plain TensorRT layers instead of the fused attention kernels")
    p.add_argument("--engine-dir", default=str(DEFAULT_ENGINE_DIR), help="where engines and the timing cache live (default ./engines)")
    p.add_argument("-o", "--output", help="engine file (default: a name in --engine-dir that encodes what it was built for)")
    p.add_argument("--overwrite", action="store_true", help="rebuild and replace the engine even if an up-to-date one exists")
    p.set_defaults(func=run)


def profile_from_args(args, video_size: tuple[int, int] | None) -> ShapeProfile:
    if args.batch < 1:
        raise VdeblurError("--batch must be at least 1")
    shapes = [args.min_shape, args.opt_shape, args.max_shape]
    if any(shapes):
        if not all(shapes):
            raise VdeblurError("a dynamic engine needs all of --min, --opt and --max")
        if args.height is not None or args.width is not None or video_size:
            raise VdeblurError("--min/--opt/--max replace --height/--width/--video's size; give one or the other")
        # A short last batch, a photo or frames left by the repeat check come fewer than --batch:
        # the smallest shape's batch is 1 unless written out (2x360x640).
        low, opt, high = shapes
        return ShapeProfile(parse_shape(low, 1), parse_shape(opt, args.batch), parse_shape(high, args.batch))
    if video_size:
        if args.width is not None:
            raise VdeblurError("--video gives the frame size; drop --width")
        return ShapeProfile.fixed(*video_size, batch=args.batch)
    if args.height is None or args.width is None:
        raise VdeblurError("give --video FILE, --height H --width W, or --min/--opt/--max")
    if args.height < 1 or args.width < 1:
        raise VdeblurError("--height and --width must be positive")
    return ShapeProfile.fixed(args.height, args.width, batch=args.batch)


def run(args) -> int:
    from .trt import import_pycuda, import_tensorrt

    import_tensorrt()  # fail in one line, before any work, on a machine without TensorRT
    import_pycuda()
    frames = video_frames(args.video, VERIFY_FRAMES) if args.video else None
    profile = profile_from_args(args, frames.shape[1:3] if frames is not None else None)
    path, doc = compile_engine(args.weights, profile, args.precision, not args.no_plugin, Path(args.engine_dir),
                               Path(args.output) if args.output else None, frames, args.overwrite,
                               inputs=(args.video,) if args.video else ())
    print(f"engine: {path}")
    if "verify_psnr_db" in doc:
        print(f"checked against fp32 torch on {doc['verify_frames']} frames: PSNR {doc['verify_psnr_db']} dB, "
              f"{doc.get('plugin_layers', 0)} plugin layers, built in {doc.get('build_seconds', '?')} s")
    return 0
