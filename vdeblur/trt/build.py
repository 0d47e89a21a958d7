"""ONNX -> TensorRT engine, with a persistent timing cache and one optimisation profile.

Precision is not a builder flag: it is in the ONNX (TensorRT 11 networks are always strongly
typed and removed BuilderFlag.FP16/BF16; on 10.x we ask for strong typing explicitly so both
versions build the same engine). The plugins are registered before parsing, so the parser turns
each custom node into the fused kernel instead of importing its function body.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import VdeblurError
from . import import_tensorrt, version_tuple
from ..fileio import atomic_write
from .cache import INPUT, ShapeProfile

WORKSPACE_BYTES = 4 << 30


def gpu_facts() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of device 0, through the primary context."""
    from . import import_pycuda

    cuda, _ = import_pycuda()
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return dev.name(), f"{major}.{minor}"


def _network_flags(trt) -> int:
    if version_tuple(trt.__version__)[0] >= 11:
        return 0  # strongly typed always; the flag is deprecated and ignored
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _parse(trt, network, logger, onnx_bytes: bytes, source: str):
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise VdeblurError(f"TensorRT cannot parse {source}: {errors[0] if errors else 'unknown error'}"
                           + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
    return parser


def plugin_layer_count(trt, network) -> int:
    """Layers that became plugins (V3: the QDPs); 0 means the parser fell back to function bodies."""
    kinds = {getattr(trt.LayerType, n) for n in ("PLUGIN_V3", "PLUGIN_V2", "PLUGIN") if hasattr(trt.LayerType, n)}
    return sum(1 for i in range(network.num_layers) if network.get_layer(i).type in kinds)


def build_engine(onnx_bytes: bytes, profile: ShapeProfile, timing_cache: Path, *, plugin: bool,
                 capability: int | None = None, source: str = "the ONNX model") -> tuple[bytes, dict]:
    """Build a serialized engine; reads and updates ``timing_cache``. Returns (plan, facts)."""
    trt = import_tensorrt()
    if plugin:
        from .plugin import ensure_registered

        ensure_registered(capability)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = _parse(trt, network, logger, onnx_bytes, source)  # owns the weights: keep it until the build is done
    plugins = plugin_layer_count(trt, network)
    if plugin and plugins == 0:
        raise VdeblurError("the fused-attention plugin was not used (TensorRT imported the reference function bodies); "
                           "check that TensorRT >= 10.9 and triton are installed")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    # ignore_mismatch=False: a cache recorded on a different device is refused; then start afresh.
    # The cache object must outlive the build, hence the name.
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, False):
        cache_bytes = b""
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)

    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(INPUT, profile.nhwc("min"), profile.nhwc("opt"), profile.nhwc("max"))
    config.add_optimization_profile(opt_profile)

    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise VdeblurError("TensorRT failed to build the engine (see the TensorRT messages above)")
    del parser
    atomic_write(timing_cache, bytes(cache.serialize()))
    facts = {"build_seconds": round(seconds, 1), "plugin_layers": plugins, "layers": network.num_layers,
             "timing_cache": str(timing_cache), "timing_cache_reused": bool(cache_bytes)}
    return bytes(plan), facts
