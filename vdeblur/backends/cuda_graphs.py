"""CUDA graphs for the eager CUDA path: capture the device-side forward once per input signature,
then replay it, so a frame costs one graph launch instead of a few hundred kernel launches from
Python.

Replay needs fixed addresses, so each captured graph owns a static input buffer (the caller's
tensor is copied into it) and returns its static output (overwritten by the next replay: the
caller must consume it first; the torch backend copies it to the host at once). Capture follows
torch's documented recipe: warm-up runs on a side stream first (cuDNN autotuning, Triton's JIT,
cuBLAS workspaces and the allocator must not happen inside the capture), then the capture on that
same stream, so nothing it set up lazily is set up again mid-capture.

A video's frames all share one size, but its last batch may be shorter than ``--batch``. So a
signature (shape, dtype, strides) is first run eagerly (which is also its warm-up) and captured
only when it comes back; a one-off tail batch never pays for a capture. At most ``capacity``
graphs are kept (least recently used dropped, which frees its memory pool). A signature whose
capture fails runs eagerly from then on, and the failure is reported once and in ``describe``.

:class:`GraphCache` holds that policy and takes the capture function as a parameter, so the CPU
tests drive it with a fake; :func:`capture` is the real thing.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable

import torch

from ..errors import VdeblurError

#: Warm-up runs on the capture stream before capturing (torch's examples use 3; the first eager
#: call of the signature has already run, so cuDNN and Triton are warm by then).
WARMUP_RUNS = 2


def require_cuda(device: torch.device) -> None:
    if device.type != "cuda":
        raise VdeblurError("--cuda-graphs needs --device cuda (CUDA graphs replay GPU work; the CPU path has none)")


def signature(x: torch.Tensor) -> tuple:
    """What a captured graph is specific to: a graph replays fixed shapes, strides and types."""
    return (tuple(x.shape), tuple(x.stride()), x.dtype, x.device)


class CapturedGraph:
    """One captured forward: static input, the graph, static output."""

    def __init__(self, graph, static_input: torch.Tensor, static_output: torch.Tensor):
        self.graph, self.static_input, self.static_output = graph, static_input, static_output

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output


def capture(fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor,
            warmup: int = WARMUP_RUNS) -> CapturedGraph:
    """Capture ``fn`` on a static copy of ``example`` (CUDA only), after ``warmup`` runs on the
    capture stream. ``thread_local`` capture mode: the pipeline's decode and encode threads keep
    running during a capture and must not be able to spoil it."""
    device = example.device
    static_input = example.clone()
    stream = torch.cuda.Stream(device=device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn(static_input)
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
        static_output = fn(static_input)
    return CapturedGraph(graph, static_input, static_output)


class GraphCache:
    """Runs ``fn`` through captured graphs, one per input signature, eagerly where none applies."""

    def __init__(self, fn: Callable, capture: Callable = capture, capacity: int = 2, capture_after: int = 2,
                 signature: Callable = signature, warn=None):
        if capacity < 1 or capture_after < 1:
            raise ValueError("capacity and capture_after must be >= 1")
        self.fn, self.capture, self.capacity, self.capture_after = fn, capture, capacity, capture_after
        self.signature = signature
        self.warn = warn or (lambda msg: print(f"vdeblur: warning: {msg}", file=sys.stderr))
        self.graphs: OrderedDict = OrderedDict()   # signature -> CapturedGraph, least recent first
        self.seen: dict = {}                        # signature -> eager calls so far (not yet captured)
        self.failed: dict = {}                      # signature -> why its capture failed
        self.captures = 0
        self.replays = 0

    def __call__(self, x):
        key = self.signature(x)
        graph = self.graphs.get(key)
        if graph is not None:
            self.graphs.move_to_end(key)
            self.replays += 1
            return graph(x)
        if key in self.failed:
            return self.fn(x)
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] < self.capture_after:
            return self.fn(x)
        try:
            graph = self.capture(self.fn, x)
        except RuntimeError as e:   # an op that cannot be captured: stay eager for this signature
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.failed[key] = reason
            self.warn(f"CUDA graph capture failed for input {tuple(x.shape)}, running it eagerly: {reason}")
            return self.fn(x)
        del self.seen[key]
        self.captures += 1
        self.graphs[key] = graph
        while len(self.graphs) > self.capacity:
            self.graphs.popitem(last=False)
        self.replays += 1
        return graph(x)

    def clear(self) -> None:
        self.graphs.clear()
        self.seen.clear()

    def describe(self) -> dict:
        return {"captured": self.captures, "replays": self.replays, "live": len(self.graphs),
                "failed": [f"{list(k[0])}: {why}" for k, why in self.failed.items()]}
