"""One video on several GPUs: batches go to the devices in turn and come back in order.

Each device has its own backend (its own copy of the model) and a lock, so one device's work never
interleaves with itself; a short-lived thread per batch starts it, so a device whose ``submit``
computes synchronously (the CPU-style path, ONNX Runtime, a tiled or out-of-memory fallback run)
still runs beside the others. The pipeline keeps two batches in flight per device, so each device
overlaps one batch's upload with another's compute, as it does alone. Decoding and encoding stay
single: with enough GPUs the encoder becomes the bound, which `vdeblur bench` names.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import VdeblurError
from .base import Backend, Pending


class MultiDevice(Backend):
    """Round-robin over ``backends`` (one per device, named in ``devices``)."""

    def __init__(self, backends: list[Backend], devices: list[str]):
        if len(backends) < 2 or len(backends) != len(devices):
            raise VdeblurError("MultiDevice needs one backend per device, two or more")
        self.backends, self.devices = backends, devices
        self.name = backends[0].name
        self.accepts_uint16 = all(b.accepts_uint16 for b in backends)
        self.batches_in_flight = 2 * len(backends)
        self._locks = [threading.Lock() for _ in backends]
        self._last: list[threading.Thread | None] = [None] * len(backends)   # each device's latest batch
        self._turn = 0

    def each(self, wrap) -> MultiDevice:
        """The same devices, each backend wrapped by ``wrap(backend, device)`` (nothing new to close)."""
        return MultiDevice([wrap(b, d) for b, d in zip(self.backends, self.devices)], self.devices)

    def run(self, frames: np.ndarray) -> np.ndarray:
        return self.submit(frames).result()

    def submit(self, frames: np.ndarray) -> Pending:
        turn = self._turn
        self._turn = (turn + 1) % len(self.backends)
        pending = _OnDevice(self.backends[turn], self._locks[turn], frames, after=self._last[turn])
        self._last[turn] = pending.thread
        return pending

    def release_memory(self) -> None:
        for backend in self.backends:
            backend.release_memory()

    def describe(self) -> dict:
        facts = [b.describe() for b in self.backends]
        merged = dict(facts[0])
        merged["device"] = ", ".join(str(f.get("device")) for f in facts)
        merged["devices"] = len(facts)
        for counter in ("bad_frames", "nonfinite_frames"):
            if counter in merged:
                merged[counter] = sum(f.get(counter) or 0 for f in facts)
        steps = [f"{device}: {step}" for device, f in zip(self.devices, facts) for step in f.get("out_of_memory", [])]
        merged.pop("out_of_memory", None)
        if steps:
            merged["out_of_memory"] = steps
        tiles = [f.get("tile") for f in facts]
        if any(tile != tiles[0] for tile in tiles):   # a device with less memory may have had to tile
            merged["tile"] = tiles
        return merged

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


class _OnDevice(Pending):
    """A batch started on its device by its own thread; ``result`` waits for that, then for the batch."""

    def __init__(self, backend: Backend, lock: threading.Lock, frames: np.ndarray, after: threading.Thread | None):
        self._backend, self._lock = backend, lock
        self._handle: Pending | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, args=(frames, after), daemon=True)
        self.thread.start()

    def _start(self, frames: np.ndarray, after: threading.Thread | None) -> None:
        if after is not None:
            after.join()   # a device takes its batches in the order they came
        try:
            with self._lock:
                self._handle = self._backend.submit(frames)
        except BaseException as e:  # noqa: BLE001 - raised again in the collecting thread
            self._error = e

    def result(self) -> np.ndarray:
        self.thread.join()
        if self._error is not None:
            raise self._error
        with self._lock:   # collecting may redo work on this device (an out-of-memory fallback)
            return self._handle.result()
