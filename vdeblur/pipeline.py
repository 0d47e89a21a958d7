"""`vdeblur deblur`: decode -> model -> encode as three overlapping stages with constant memory.

A decode thread fills a bounded queue with RGB frames and pass-through packets; the calling thread
runs the backend on batches (torch and the GPU runtimes release the GIL while they compute); an
encode thread re-encodes and muxes. Bounded queues keep memory flat whatever the video length.
The output is written under a temporary name beside the target and renamed only when complete.
PyAV is imported on first use, so the other commands (train, eval, ...) work on a machine without it.
"""

from __future__ import annotations

import collections
import glob
import json
import math
import os
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import resume as resume_mod
from . import sequence
from .backends import BACKENDS, Backend, BackendOptions, add_torch_arguments, auto_order, open_backend, torch_options
from .backends.multi_device import MultiDevice
from .compare import MODES as COMPARE_MODES
from .compare import MAX_STRENGTH, AsStored, View, check_strength, output_size
from .deinterlace import FIRST_FIELD, MODES as DEINTERLACE_MODES
from .ensemble import FlipEnsemble, check_copies
from .errors import VdeblurError, require_pyav
from .fileio import IMAGE_SUFFIXES, PIPE_DEFAULT, PIPE_FORMATS, STDIO, check_not_special, check_output, describe_os_error, file_sha256, fitting, is_stream
from .hardware import check_threads
from .signals import deferred, describe, exit_status, raise_if_signalled
from .region import RegionBackend, describe_regions, parse_regions, stored_region
from .tiling import DEFAULT_OVERLAP, OutOfMemoryFallback, check_tiling, fitted_overlap

if TYPE_CHECKING:
    from .video import DecodedFrame, VideoReader, VideoWriter

_END = object()          # sentinel closing a queue
#: Said before the first frame of an OpenEXR input.
LINEAR_LIGHT = ("the input is OpenEXR, in linear light: it is read through the sRGB curve (values above 1.0 "
                "clip), and the output is sRGB-coded pictures, not linear light")
#: Said before the first frame of an interlaced input, deinterlaced or (--deinterlace off) not.
#: ({found}: the field order idet found, where it did.)
DEINTERLACING = "the input is interlaced{found}: each frame is deinterlaced (FFmpeg's bwdif, same frame rate) before the model"
DOUBLING = ("the input is interlaced{found}: each field is made a frame (FFmpeg's bwdif, twice the frame rate) before "
            "the model, so there are twice the frames to deblur")
WEAVING = ("the input is interlaced{found}: each field is made a frame (FFmpeg's bwdif) for the model, and the "
           "results are woven back into interlaced frames, {order} field first, at the input's frame rate")
#: Said when --double-rate (or --reinterlace) has nothing to double.
PROGRESSIVE = "{option}: the input's first frame is not interlaced, so frames are not made one per field"
INTERLACED = ("the input is interlaced and --deinterlace is off: the model takes each frame as one picture, so "
              "its two fields (moments 1/50 or 1/60 s apart) are mixed and moving edges come out combed")
_STUCK_READ_SECONDS = 3.0   # a stopped decoder finishes its frame within this, unless a read blocks
_QUEUE_FRAMES = 8        # frames buffered between stages (beyond one batch), ~22 MB at 720p


@dataclass
class Report:
    """What a finished run did; returned by :func:`deblur_video` and printed by the CLI."""

    output: str
    frames: int
    expected_frames: int | None
    seconds: float
    corrupt_packets: int      # unreadable, or timestamps out of order: skipped
    corrupt_frames: int       # decoded with errors (concealed by the decoder) and kept
    dropped_frames: int       # decoded, but timestamps out of order: not encoded
    copied_streams: list[str]
    skipped_streams: list[str]
    backend: dict = field(default_factory=dict)
    resumed_frames: int = 0   # of ``frames``, kept from an earlier, interrupted run
    resized: str | None = None   # how frames of another size than the first were made to fit
    transparency_lost: str | None = None   # transparency dropped that the warning before the first frame missed
    frames_counted: bool = True   # expected_frames is the container's count; else an estimate from its length
    expected_seconds: float | None = None   # the length announced, and how much video was read (estimated counts)
    seconds_read: float | None = None
    held_frames: int = 0   # counted by the container, but only as "the last picture again" (AVI)
    deinterlaced_frames: int = 0   # interlaced frames rebuilt by bwdif before the model (this run's)
    repeated_frames: int = 0   # identical to the frame before, so given its result without the model (this run's)
    captions_kept: int = 0   # frames whose closed captions (CEA-608/708) went into the output's video (this run's)
    captions_lost: str | None = None   # why the input's closed captions are not in the output
    not_woven: str | None = None   # --reinterlace met interlaced frames only after a progressive start
    verified: list[str] = field(default_factory=list)          # what reading the file back confirmed
    verify_problems: list[str] = field(default_factory=list)   # and what it did not

    @property
    def fps(self) -> float:
        return (self.frames - self.resumed_frames) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """Every field, plus ``fps`` and ``warnings``: what `deblur --json` prints."""
        return {**asdict(self), "fps": round(self.fps, 4), "warnings": self.warnings()}

    def warnings(self) -> list[str]:
        out = [f"stream {s} not copied" for s in self.skipped_streams]
        out += [f"read back: {problem}" for problem in self.verify_problems]
        if self.corrupt_packets or self.corrupt_frames or self.dropped_frames:
            out.append(f"damaged input: {self.corrupt_packets} packet(s) skipped, {self.corrupt_frames} frame(s) "
                       f"decoded with errors, {self.dropped_frames} frame(s) with out-of-order timestamps dropped")
        bad, fallback = self.backend.get("bad_frames"), self.backend.get("bad_frame_fallback")
        if bad:
            out.append(f"{bad} frame(s) came out NaN/inf (or black) in {self.backend.get('precision')}"
                       + (f" and were redone in {fallback}" if fallback else " and were written as they came"))
        out += self.backend.get("out_of_memory", [])   # each step the run took to fit, named
        if self.resized:
            out.append(self.resized)
        if self.transparency_lost:
            out.append(self.transparency_lost)
        if self.captions_lost:
            out.append(self.captions_lost)
        if self.not_woven:
            out.append(self.not_woven)
        if self.backend.get("nonfinite_frames"):
            out.append(f"{self.backend['nonfinite_frames']} frame(s) had NaN/inf output even in fp32: damaged weights?")
        expected = self.expected_frames
        if self.frames_counted:
            if expected and self.frames + self.dropped_frames + self.held_frames < expected - max(2, expected // 20):
                out.append(f"the input ended after {self.frames} frames but announced {expected} (truncated file?)")
        elif self.expected_seconds and self.seconds_read is not None \
                and self.seconds_read < self.expected_seconds - max(0.25, self.expected_seconds / 20):
            # A frame count estimated from length x rate is wrong for variable frame rate: compare times
            # (the container's length may include an audio tail, hence the quarter second).
            out.append(f"the input's video ended after {self.seconds_read:.1f} s but it announced "
                       f"{self.expected_seconds:.1f} s (truncated file?)")
        return out


class _Failure:
    """An exception raised in a worker thread, carried through the queue to the main thread."""

    def __init__(self, error: BaseException):
        self.error = error


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless the run is being stopped (a full queue must not hang a cancelled run)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END


def _check_paths(src: Path | str, dst: Path, overwrite: bool, models: tuple = ()) -> None:
    """``models``: the weights, ONNX or engine files the run reads, which no output may replace either."""
    if str(dst) == STDIO:
        return
    hint = "give an output file name"
    src_is_sequence, dst_is_sequence = sequence.is_sequence(src), sequence.is_sequence(dst)
    if src_is_sequence:
        sequence.check_input(src)
    elif not is_stream(src):
        if not src.exists():
            raise VdeblurError(f"{src}: no such file")
        check_not_special(src)
        hint += f" such as {dst / src.name}"
    read = [] if is_stream(src) or src_is_sequence else [Path(src)]
    inputs = (*read, *(Path(m) for m in models if m and Path(m).exists()))
    if src_is_sequence and not dst_is_sequence and sequence.first_named(src, [dst]) is not None:
        raise VdeblurError(f"{dst}: the output would overwrite the input (it is a name of the sequence {src}); "
                           "choose another name")
    if dst_is_sequence:
        require_pyav()
        from .video import check_sequence_suffix

        check_sequence_suffix(dst, dst.suffix)   # before "files of this sequence exist", which would mislead
        check_output(dst, True, inputs=inputs)   # the pattern itself; its numbered files are checked next
        files_read = (*inputs, *(sequence.files(src) if src_is_sequence else ()))
        if (hit := sequence.first_named(dst, files_read)) is not None:   # --overwrite would replace it, or publishing delete it
            raise VdeblurError(f"{dst}: the output would overwrite the input (its name for a frame is {hit.name}, "
                               "which this run reads); choose another name")
        sequence.check_output(dst, overwrite)
    else:
        check_output(dst, overwrite, dir_hint=hint, inputs=inputs)
    if not dst.suffix:   # (a missing or wrong output folder is check_output's to say, above)
        raise VdeblurError(f"{dst}: give the output a container suffix such as .mp4 or .mkv")


def check_container(container: str | None, to_stdout: bool) -> str | None:
    """--format: the muxer of standard output (a file's suffix picks its own)."""
    if container is None:
        return PIPE_DEFAULT if to_stdout else None
    if not to_stdout:
        raise VdeblurError(f"--format {container} is for -o - (standard output); a file's suffix picks its format")
    if container not in PIPE_FORMATS:
        why = " (MP4 and MOV seek back to write their index)" if container in ("mp4", "mov") else ""
        raise VdeblurError(f"--format {container}: standard output takes {', '.join(PIPE_FORMATS)}{why}")
    return container


def _temp_path(dst: Path) -> Path:
    """Beside the target (same filesystem, so the final rename is atomic), same suffix (same muxer);
    a sequence's in a hidden folder of its own."""
    if sequence.is_sequence(dst):
        return sequence.temp_pattern(dst)
    return dst.with_name(f".{_temp_stem(dst)}.vdeblur-{os.getpid()}.partial{dst.suffix}")


def _temp_stem(dst: Path) -> str:
    """The output's stem in its temp files' names, shortened where they would be too long."""
    return fitting(dst.stem, len(f"..vdeblur-{2**22}.partial{dst.suffix}".encode()))


#: A temp file whose run is gone is left alone this long after its last change all the same (a run
#: on another machine writing to a shared folder has a PID that means nothing here).
STALE_PARTIAL_S = 600


def _stale_partials(dst: Path) -> list[Path]:
    """Temp files (see :func:`_temp_path`) of runs of ``dst`` that were killed outright (kill -9, a
    crash, a power cut), which no ``finally`` could remove: their process is gone and they have not
    changed for :data:`STALE_PARTIAL_S`. None on Windows, where no signal-free liveness test is safe."""
    if os.name == "nt" or sequence.is_sequence(dst):
        return []
    head, tail = f".{_temp_stem(dst)}.vdeblur-", f".partial{dst.suffix}"
    stale = []
    for path in dst.parent.glob(glob.escape(head) + "*" + glob.escape(tail)):
        pid = path.name[len(head):len(path.name) - len(tail)]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            if time.time() - path.stat().st_mtime >= STALE_PARTIAL_S:
                stale.append(path)
        except OSError:
            continue
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # EPERM: another user's process
        return True
    return True


def _publish(tmp: Path, dst: Path, overwrite: bool) -> Path:
    """The finished file takes its name, which is returned. Without ``overwrite``, a file that appeared there
    while the run worked (another program, a second run onto the same name) is left alone, and the result takes
    a free name beside it (the caller says so), so hours of work are neither lost nor silently written over."""
    if sequence.is_sequence(dst):
        if not overwrite and (there := sequence.numbers(dst)):
            raise VdeblurError(f"{sequence.file_name(dst, there[0])}: appeared while this run was writing {dst}; "
                               f"it was left alone (--overwrite replaces it)")
        sequence.publish(tmp, dst)
        return dst
    if overwrite:
        os.replace(tmp, dst)
        return dst
    for n in range(1000):
        name = dst if n == 0 else dst.with_name(f"{dst.stem}.vdeblur-{n}{dst.suffix}")
        if _link_new(tmp, name):
            tmp.unlink(missing_ok=True)
            return name
    raise VdeblurError(f"{dst}: appeared while this run was writing it, and was left alone")


def _link_new(tmp: Path, name: Path) -> bool:
    """Give ``tmp`` the new name ``name`` unless a file has it: False then. A hard link fails where the name
    exists, in one step; filesystems without hard links (FAT, exFAT, some network shares) are checked first,
    then renamed, which leaves a moment between the two."""
    try:
        os.link(tmp, name)
        return True
    except FileExistsError:
        return False
    except OSError:
        if name.exists():
            return False
        os.replace(tmp, name)
        return True


def _discard(tmp: Path) -> None:
    if sequence.is_sequence(tmp):
        sequence.discard(tmp)
    else:
        tmp.unlink(missing_ok=True)


def _decode_stage(reader: VideoReader, q: queue.Queue, stop: threading.Event) -> None:
    import av

    try:
        for item in reader.items():
            if not _put(q, item, stop):
                return
        _put(q, _END, stop)
    except (av.error.FFmpegError, OSError) as e:
        _put(q, _Failure(VdeblurError(f"{reader.path}: reading failed ({getattr(e, 'strerror', None) or e})")), stop)
    except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
        _put(q, _Failure(e), stop)


def _encode_stage(writer: VideoWriter, q: queue.Queue, stop: threading.Event, progress, errors: list) -> None:
    from .video import DecodedFrame

    try:
        while True:
            item = _get(q, stop)
            if item is _END:
                return
            if isinstance(item, DecodedFrame):
                before = writer.frames   # frames written: --reinterlace writes one for two given
                writer.write_frame(item.image, item.pts, item.duration, item.time_base, item.alpha, item.captions)
                if writer.frames != before:
                    progress.update(writer.frames - before)
            else:
                writer.write_packet(item)
    except BaseException as e:  # noqa: BLE001
        errors.append(e)
        stop.set()


def _process_batches(backend: Backend, batch: int, inq: queue.Queue, outq: queue.Queue,
                     stop: threading.Event, errors: list, view: View = View(), reuse: bool = True) -> int:
    """Main-thread stage: frames through the backend in batches, packets straight on to the writer.

    Up to ``backend.batches_in_flight`` batches are submitted before the oldest is collected, so a backend that
    returns from ``submit`` early (torch on CUDA) computes one batch while this thread stacks and
    uploads the next; a synchronous backend just hands its result over one batch later. With ``reuse``,
    a frame identical to the one before it (a repeated frame: frame-rate conversion, a static shot,
    a screen recording) is not given to the backend: it gets that frame's result. Returns how many were.
    """
    from .video import DecodedFrame

    pending: list[tuple[DecodedFrame, bool]] = []   # each frame, and whether it repeats the frame before
    in_flight: collections.deque = collections.deque()   # (frames, repeats, input shape, input dtype, Pending)
    last_input: np.ndarray | None = None
    last_result: np.ndarray | None = None   # of the last frame collected
    repeated = 0

    def submit():
        if not pending:
            return
        frames, repeats = [f for f, _ in pending], [r for _, r in pending]
        computed = np.stack([f.image for f, r in pending if not r]) if not all(repeats) else None
        handle = backend.submit(computed) if computed is not None else None
        in_flight.append((frames, repeats, None if computed is None else computed.shape, frames[0].image.dtype, handle))
        pending.clear()

    def collect() -> bool:
        nonlocal last_result
        timing, repeats, shape, dtype, handle = in_flight.popleft()
        computed = iter(_checked(backend, handle.result(), shape, dtype) if handle is not None else ())
        results = []
        for repeat in repeats:
            last_result = last_result if repeat else next(computed)
            results.append(last_result)
        images = np.stack(results)
        if not view.plain:
            images = view.frames(np.stack([f.image for f in timing]), images)
        return all(_put(outq, DecodedFrame(image, f.pts, f.duration, f.time_base, view.alpha(f.alpha), f.captions), stop)
                   for f, image in zip(timing, images))

    while not errors:
        item = _get(inq, stop)
        if item is _END:
            break
        if isinstance(item, _Failure):
            raise item.error
        if isinstance(item, DecodedFrame):
            repeat = reuse and last_input is not None and _same_picture(item.image, last_input)
            repeated += repeat
            last_input = item.image
            pending.append((item, repeat))
            if len(pending) >= batch:
                submit()
                if len(in_flight) >= backend.batches_in_flight and not collect():
                    break
        elif not _put(outq, item, stop):
            break
    if not errors and not stop.is_set():
        submit()
        while in_flight and collect():
            pass
    return repeated


def _checked(backend: Backend, images: np.ndarray, shape, dtype) -> np.ndarray:
    if images.shape != shape or images.dtype != dtype:
        raise VdeblurError(f"backend {backend.name} returned {images.dtype} {images.shape} for {dtype} {shape} frames")
    return images


def _same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two decoded frames are identical: one row first, which tells most different frames apart
    at a fraction of the cost of comparing every pixel."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    middle = a.shape[0] // 2
    return np.array_equal(a[middle], b[middle]) and np.array_equal(a, b)


class _Progress:
    """Each frame written, told to the bar on standard error and to the caller's ``progress`` callback."""

    def __init__(self, total: int | None, quiet: bool, done: int = 0, callback=None):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, unit="frame", disable=quiet, dynamic_ncols=True, file=sys.stderr,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}, {rate_fmt}]"
                        if total else None)
        self.total, self.done, self.callback = total, done, callback

    def update(self, frames: int) -> None:
        self.bar.update(frames)
        self.done += frames
        if self.callback is not None:
            self.callback(self.done, self.total)

    def finish(self) -> None:
        """All frames are written: a total that was unknown (a pipe) or estimated (a header's count) is now
        known, and the callback hears it, so its last call is always the last frame."""
        if self.callback is not None and self.total != self.done:
            self.total = self.done
            self.callback(self.done, self.total)

    def close(self) -> None:
        self.bar.close()


def deblur_video(src: str | os.PathLike, dst: str | os.PathLike, *, backend: str | Backend = "auto",
                 weights: str | None = None, device: str = "auto", precision: str = "auto", batch: int = 1,
                 threads: int = 0, compile: bool = False, compile_mode: str | None = None, fused_attention: bool | None = None,
                 cuda_graphs: bool | None = None, engine: str | None = None, onnx: str | None = None,
                 tile: int | str | tuple[int, int] | None = 0, tile_overlap: int | None = None, codec: str | None = None, crf: float | None = None,
                 preset: str | None = None, pix_fmt: str | None = None, start: float | None = None,
                 duration: float | None = None, overwrite: bool = False, quiet: bool = True,
                 resume: bool = True, notify=None, segment_frames: int = resume_mod.SEGMENT_FRAMES,
                 segment_seconds: float = resume_mod.SEGMENT_SECONDS, verify: bool = True,
                 compare: str | None = None, container: str | None = None, fps: Fraction | None = None,
                 deinterlace: str = "auto", double_rate: bool = False, strength: float = 1.0,
                 region=None, progress=None, dedup: bool = True, reinterlace: bool = False,
                 ensemble: int = 1) -> Report:
    """Deblur every frame of ``src`` into ``dst``, keeping timestamps, other streams and tags.

    ``backend`` is a name from ``vdeblur.backends.BACKENDS`` (or "auto"), or a ready
    :class:`~vdeblur.backends.Backend` (not closed here). Raises VdeblurError on bad input; on
    any failure or Ctrl-C nothing is left under ``dst``. With ``resume``, and an output container
    that keeps codec headers apart (mp4, mov, mkv, webm), finished segments are kept beside ``dst``
    (:func:`vdeblur.resume.state_dir`) until the file is written, and the same call after a crash
    or Ctrl-C continues after them; ``notify`` is given a line when it does, or when kept progress
    does not fit these settings and is dropped. With ``verify`` the written file is read back and
    compared with the input (:mod:`vdeblur.verify`); what held and what did not is in the report.
    ``strength`` keeps that share of the model's change (1: the result as it is; 0.5: halfway from the
    input). ``ensemble`` (1, 2 or 4) averages the model's results on the frame and its mirror images
    (:mod:`vdeblur.ensemble`). ``compare`` ("side" or "split", :mod:`vdeblur.compare`) writes input and result side by side.
    ``src`` "-" is standard input and a URL is read as one; ``dst`` "-" is standard output, in
    ``container`` (a name from :data:`vdeblur.fileio.PIPE_FORMATS`, default Matroska). Neither can be
    resumed or read back, and what reached standard output before an error stays there. Either may
    be an image sequence (``frames/%04d.png``, :mod:`vdeblur.sequence`); an input one is read at ``fps``.
    ``deinterlace`` is a mode of :mod:`vdeblur.deinterlace` (auto: as the frames are flagged, unless
    FFmpeg's idet clearly finds otherwise), and ``double_rate`` makes each field of interlaced video a frame;
    ``reinterlace`` does too, and weaves the results back into interlaced frames (the input's rate and field order).
    ``region`` (left, top, width, height, as the picture is shown), or a list of them, deblurs only those
    rectangles (:mod:`vdeblur.region`); every other pixel is left as decoded (through the same RGB round trip). ``progress(done, total)`` is called
    from the encoding thread after each frame written: frames done (those resumed included) and the
    frames expected (None where the input does not say); an exception it raises stops the run. With
    ``dedup`` a frame identical to the one before it gets that frame's result without the model.
    """
    from_stream, to_stdout = is_stream(src), str(dst) == STDIO
    src, dst = (str(src) if from_stream else Path(src)), Path(dst)
    _check_paths(src, dst, overwrite, models=(weights, engine, onnx))
    container = check_container(container, to_stdout)
    if batch < 1:
        raise VdeblurError(f"--batch must be >= 1, got {batch}")
    tile_size = check_tiling(tile, tile_overlap)   # (width, height) or None
    tile_overlap = fitted_overlap(tile_size, tile_overlap)
    regions = parse_regions(region)
    check_copies(ensemble)
    view = View(compare, strength)
    require_pyav()
    from .video import VideoReader, VideoWriter, alpha_not_kept, check_part, codec_for_suffix, keeps_no_rotation

    check_part(start, duration)
    if crf is not None and not math.isfinite(crf):
        raise VdeblurError(f"--crf must be a number, got {crf}")
    # Cheap checks first (input, encoder options), then the backend, which may take long to load.
    if double_rate and reinterlace:
        raise VdeblurError("--reinterlace and --double-rate: give one; both deblur each field as a frame, and "
                           "--reinterlace weaves them back into interlaced frames where --double-rate keeps them as frames")
    if (double_rate or reinterlace) and deinterlace == "off":
        option = "--reinterlace" if reinterlace else "--double-rate"
        raise VdeblurError(f"{option} makes one frame per field: it needs --deinterlace auto, tff or bff")
    double_rate = double_rate or reinterlace
    deinterlace, detected, order = _interlacing(src, start, duration, fps, deinterlace, from_stream)
    # Image files keep no rotation, and a before/after picture is built as shown: both get upright pixels.
    upright = compare is not None or (not to_stdout and keeps_no_rotation(dst))
    reader = VideoReader(src, start=start, duration=duration, rate=fps, deinterlace=deinterlace, double_rate=double_rate,
                         field_order=order, weaving=reinterlace, upright=upright)
    fields = _woven_order(reader, deinterlace) if reader.woven else None
    if fields and deinterlace == "auto" and order is None and not from_stream:
        # bwdif must take the fields in the order they are woven back in: left to the frames' own flags,
        # it can take them in another order than the stream's (a file whose flags disagree), and each
        # field's lines would be woven onto the other field's.
        reader.close()
        reader = VideoReader(src, start=start, duration=duration, rate=fps, deinterlace=deinterlace, double_rate=True,
                             field_order=fields, weaving=True, upright=upright)
    if regions is not None:
        try:
            regions = [_stored_region(reader, r) for r in regions]
        except VdeblurError:
            reader.close()
            raise
    suffix = PIPE_FORMATS[container] if to_stdout else dst.suffix.lower()
    encoding = dict(codec=codec or codec_for_suffix(suffix), crf=crf, preset=preset, pix_fmt=pix_fmt)
    if fields:
        encoding["fields"] = fields
    if compare == "side":
        encoding["size"] = output_size(compare, reader.info.width, reader.info.height)
    # An image sequence's frames are whole files, so its segments are too: every format resumes that is
    # a sequence or keeps codec headers apart from the packets.
    # Woven output is written in one pass: its frames are pairs of the reader's, which segments do not count.
    resumable = resume and not from_stream and not to_stdout and not fields \
        and (sequence.is_sequence(dst) or resume_mod.muxer_takes_global_header(dst))
    if not to_stdout:
        for stale in _stale_partials(dst):
            stale.unlink(missing_ok=True)
            if notify:
                notify(f"removed {stale}, the unfinished output of a run of this command that was killed")
    tmp = None if to_stdout else _temp_path(dst)
    published = dst
    writer = None
    state = None
    owned_backend = None   # opened here, so closed here; a Backend passed in is the caller's
    finished = False
    try:
        # A resumable run encodes into segments first (packet_sink), and writes the file at the end.
        writer = VideoWriter(STDIO if to_stdout else dst if resumable else tmp, reader, **encoding, label=dst,
                             packet_sink=_segment_sink if resumable else None, container=container)
        if resumable:   # the other streams join the file only at the end: its header must work now, not then
            VideoWriter(tmp, reader, **encoding, label=dst).abort()
            _discard(tmp)
        warnings = writer.metadata_lost + _interlacing_lines(reader, deinterlace, double_rate, detected, order, fields) \
            + ([LINEAR_LIGHT] if reader.info.linear_light else []) + _caption_lines(reader, writer)
        drops_alpha = not reader.info.transparent and not writer.keeps_alpha
        pix_fmt = writer.pix_fmt
        for line in warnings if notify else ():
            notify(line)
        if not isinstance(backend, Backend):
            backend = owned_backend = open_backend(backend, BackendOptions(
                weights=weights, device=device, precision=precision, batch=batch, threads=threads,
                compile=compile, compile_mode=compile_mode,
                fused_attention=fused_attention, cuda_graphs=cuda_graphs, engine=engine, onnx=onnx,
                deep_input=reader.info.high_bit_depth))
        backend = _fit_in_memory(backend, tile_size, tile_overlap, notify)
        if ensemble > 1:
            backend = FlipEnsemble(backend, ensemble)
        if reader.turned_on_request and (to_stdout or not keeps_no_rotation(dst)):   # turned for --compare alone
            backend = AsStored(backend, reader.orientation)
        if regions is not None:
            backend = RegionBackend(backend, regions)
        reader.use_rgb16(backend.accepts_uint16)
        if reader.info.high_bit_depth and not backend.accepts_uint16 and notify:
            notify(f"{backend.describe().get('backend', 'this backend')} takes 8-bit frames: this {reader.info.bit_depth}-bit "
                   f"video is deblurred at 8 bits and written as {pix_fmt} (--backend torch keeps the depth)")
        if not resumable:
            report = _run(reader, writer, backend, batch=batch, quiet=quiet, view=view, on_frame=progress, dedup=dedup)
            written = writer
        else:
            state, note = resume_mod.ResumeState.open(resume_mod.state_dir(dst), _resume_key(
                src, dst, backend, reader, encoding, start, duration, view, deinterlace, regions))
            if not state.check_encoder(writer.extradata, writer.time_base):
                note = f"{state.directory}: progress kept by another encoder version, starting over"
            if note and notify:
                notify(note)
            first, writer = writer, None   # the segments own it now
            report, written = _run_in_segments(state, reader, first, backend, src=src, dst=dst, tmp=tmp,
                                               encoding=encoding, start=start, duration=duration, batch=batch,
                                               quiet=quiet, view=view, segment_frames=segment_frames,
                                               segment_seconds=segment_seconds, fps=fps,
                                               deinterlace=(deinterlace, double_rate), on_frame=progress,
                                               dedup=dedup)
        if reinterlace and not reader.doubling and report.deinterlaced_frames:
            report.not_woven = (f"--reinterlace: the input starts progressive, so it was written progressive; its "
                                f"{report.deinterlaced_frames} interlaced frame(s) after that were deinterlaced at the "
                                f"frame rate (--deinterlace tff or bff treats every frame as interlaced)")
        if drops_alpha and reader.transparent_frames:   # an opaque first frame, transparent ones later
            report.transparency_lost = alpha_not_kept(pix_fmt, reader.transparent_frames) if reader.info.alpha else (
                f"the source's transparency (alpha) of {reader.transparent_frames} frame(s) is not kept: the first "
                "frame has none, so the output was set up without it; save the first picture with an alpha channel "
                "too to keep it")
        with deferred():   # the output takes its name and the kept progress goes, both or neither
            if tmp is not None:
                published = _publish(tmp, dst, overwrite)
            finished = True
            if state is not None:
                state.discard()
        if state is None and notify and not to_stdout and (kept := resume_mod.kept_frames(dst)):
            # An earlier, interrupted run's progress, unused by this one-pass run: said, not deleted
            # (it may be hours of another command's work).
            notify(f"{resume_mod.state_dir(dst)} still keeps {kept} finished frames of an earlier run of this output, "
                   f"which this run did not use; delete it if that run is not to go on")
        report.output = "standard output" if to_stdout else str(published)
        if verify and not (from_stream or to_stdout):   # neither can be read again
            try:
                _read_back(report, src, published, written, start, duration, encoding.get("size"), fps,
                           reader.doubling and not fields, fields, upright=upright)
            except KeyboardInterrupt as e:
                e.written = str(published)   # stopped while checking: the output is complete, unchecked
                raise
        if not to_stdout and published != dst:
            raise VdeblurError(f"{dst}: appeared while this run was writing it, and was left alone; the result is "
                               f"{published}")
        return report
    finally:
        if not finished:
            if writer is not None:
                writer.abort()
            if tmp is not None:
                _discard(tmp)
        if state is not None:
            state.release()
        reader.close()
        if owned_backend is not None:
            owned_backend.close()


def _interlacing(src, start, duration, fps, mode: str, from_stream: bool) -> tuple[str, str | None, str | None]:
    """The --deinterlace mode to run: "auto" is settled by FFmpeg's idet on the first frames where the
    pictures clearly contradict the flags (a stream, read once, and a sequence keep the flags); the
    line that says so; and the field order the pictures clearly show, for bwdif in auto mode."""
    from .deinterlace import detect
    from .video import VideoReader

    if mode != "auto" or from_stream or sequence.is_sequence(src):
        return mode, None, None
    reader = VideoReader(src, start=start, duration=duration, rate=fps, deinterlace="off")
    try:
        detection = detect(reader.video_frames())
    finally:
        reader.close()
    if detection is None:
        return mode, None, None
    return (*detection.resolve(), detection.order)


def _interlacing_lines(reader: VideoReader, mode: str, double_rate: bool, detected: str | None,
                       order: str | None = None, woven: str | None = None) -> list[str]:
    """What is said before the first frame about interlacing: what was found, or what is done
    (``woven``: the field order the output is woven back in, under --reinterlace)."""
    if detected:
        return [detected]
    if not reader.info.interlaced:
        option = "--reinterlace" if reader.weaving else "--double-rate"
        return [PROGRESSIVE.format(option=option)] if double_rate and not reader.doubling else []
    if mode == "off":
        return [INTERLACED]
    found = f", {FIRST_FIELD[order]} field first as FFmpeg's idet finds" if order in FIRST_FIELD else ""
    if woven:
        return [WEAVING.format(found=found, order=FIRST_FIELD[woven])]
    return [(DOUBLING if reader.doubling else DEINTERLACING).format(found=found)]


def _woven_order(reader: VideoReader, mode: str) -> str:
    """The field order to weave --reinterlace's output in: the one bwdif took the fields in (the mode
    given, what idet found, or the stream's), top first where nothing says."""
    from .deinterlace import field_order_of

    if mode in ("tff", "bff"):
        return mode
    return reader.field_order or field_order_of(reader.stream.codec_context.field_order) or "tff"


def _run_in_segments(state, reader: VideoReader, first: VideoWriter, backend: Backend, *, src, dst: Path, tmp: Path,
                     encoding: dict, start, duration, batch: int, quiet: bool, view: View,
                     segment_frames: int, segment_seconds: float, fps: Fraction | None = None,
                     deinterlace: tuple[str, bool] = ("auto", False), on_frame=None,
                     dedup: bool = True) -> tuple[Report, VideoWriter]:
    """A resumable run: the frames after those ``state`` kept, into segments (``first`` is the first
    one's encoder), then every kept segment and the input's other streams into ``tmp`` in one pass."""
    from .video import VideoWriter

    kept = state.frames_done
    if state.complete:   # stopped while writing the file: every frame is kept already
        first.abort()
        report = Report(output="", frames=0, expected_frames=reader.info.frames, seconds=0.0,
                        corrupt_packets=0, corrupt_frames=0, dropped_frames=0, copied_streams=[],
                        skipped_streams=[], backend=backend.describe())
    else:
        segments = None
        try:
            if state.segments:
                reader.skip_to(state.frames_done, state.next_pts)
            segments = resume_mod.SegmentWriter(
                state, lambda: VideoWriter(dst, reader, **encoding, packet_sink=_segment_sink), first,
                segment_frames=segment_frames, segment_seconds=segment_seconds)
            report = _run(reader, segments, backend, batch=batch, quiet=quiet, done=state.frames_done, view=view,
                          on_frame=on_frame, dedup=dedup)
        except BaseException:
            (segments or first).abort()   # the unfinished segment goes; the finished ones stay for the next run
            raise
    report.resumed_frames, report.frames = kept, state.frames_done
    muxing = time.perf_counter()   # the user waits for this too: it counts in the run's time
    final = _write_kept(state, src, tmp, dst, start=start, duration=duration, encoding=encoding, fps=fps,
                        deinterlace=deinterlace, upright=reader.upright)
    report.copied_streams, report.skipped_streams = final.copied, final.skipped
    report.corrupt_packets += final.dropped_packets
    report.dropped_frames = state.dropped_frames
    report.seconds += time.perf_counter() - muxing
    return report, final


def _stored_region(reader: VideoReader, region):
    """``--region`` as given (the picture as shown) in the stored frame's pixels, which the model gets."""
    from .video import orientation

    matrix = reader.info.display_matrix
    steps = orientation(matrix) if matrix is not None else None
    size = (reader.info.width, reader.info.height)
    return stored_region(region, size[::-1] if steps and steps[0] else size, steps)


def _fit_in_memory(backend: Backend, tile, overlap: int, notify) -> Backend:
    """An out-of-memory fallback for each device apart: GPUs may differ in memory, and one that tiles
    must not make the others wait."""
    if isinstance(backend, MultiDevice):
        return backend.each(lambda inner, device: OutOfMemoryFallback(
            inner, tile, overlap, notify=(lambda line: notify(f"{device}: {line}")) if notify else None))
    return OutOfMemoryFallback(backend, tile, overlap, notify=notify)


def _read_back(report: Report, src: Path, dst: Path, written: VideoWriter, start, duration, size=None,
               rate: Fraction | None = None, fields: bool = False, woven: str | None = None,
               upright: bool = False) -> None:
    """Fill the report's verification; a file that cannot be read back is a problem, not a crash."""
    import av

    from .verify import verify
    from .video import is_gray

    try:
        result = verify(src, dst, {i: s.index for i, s in written.stream_map.items()}, start=start, duration=duration,
                        frames=report.frames, damaged=bool(report.corrupt_packets or report.dropped_frames), size=size,
                        reencoded={i: t.stream.index for i, t in written.transcoders.items()}, rate=rate, fields=fields,
                        interlaced=woven, upright=upright, gray=is_gray(written.pix_fmt))
    except (av.error.FFmpegError, OSError, VdeblurError) as e:
        report.verify_problems = [f"{dst} could not be read back ({getattr(e, 'strerror', None) or e})"]
        return
    except Exception as e:  # noqa: BLE001 - the file is written; a check that trips must not lose it or a batch
        report.verify_problems = [f"{dst}: the read-back check failed ({type(e).__name__}: {e}); the file is written"]
        return
    report.verified, report.verify_problems = result.held, result.problems


def _write_kept(state, src: Path, tmp: Path, dst: Path, *, start, duration, encoding: dict,
                fps: Fraction | None = None, deinterlace: tuple[str, bool] = ("auto", False),
                upright: bool = False) -> VideoWriter:
    """``tmp`` from the kept video segments and the input's other streams, in one pass (no decoding
    beyond the first frames; ``deinterlace``, the mode and double rate, gives the video's timing)."""
    from .video import VideoReader, VideoWriter

    _check_unchanged(src, state)   # reopened by name: the other streams must come from the same file
    reader = VideoReader(src, start=start, duration=duration, rate=fps, deinterlace=deinterlace[0], double_rate=deinterlace[1],
                         upright=upright)
    try:
        writer = VideoWriter(tmp, reader, **encoding, label=dst)
        try:
            if writer.extradata.hex() != state.extradata:
                raise VdeblurError(f"the encoder's headers differ from those of the segments kept in "
                                   f"{state.directory}; delete it and start over")
            resume_mod.mux(state, reader, writer)
            writer.close()
            _check_unchanged(src, state)
        except BaseException:
            writer.abort()
            raise
        return writer
    finally:
        reader.close()


def _check_unchanged(src: Path, state) -> None:
    """The input must still be the file the kept frames came from (size, modification time, the
    hash of its ends), or its audio and subtitles would be another file's."""
    try:
        now = sequence.identity(src) if sequence.is_sequence(src) else resume_mod.file_identity(src)
    except OSError as e:
        raise VdeblurError(f"{src}: cannot be read again for its other streams ({e.strerror or e}); not written") from None
    then = state.key.get("input", {})
    if any(then.get(name) != value for name, value in now.items()):
        raise VdeblurError(f"{src} changed while it was being deblurred (replaced or edited); not written. "
                           "Run again to start over from the file as it is now")


def _segment_sink(packets) -> None:
    """A segment encoder's sink until its segment takes it over (before its first frame)."""
    raise AssertionError("a segment encoder produced packets before its segment took it")


def _resume_key(src: Path, dst: Path, backend: Backend, reader: VideoReader, encoding: dict,
                start, duration, view: View = View(), deinterlace: str = "auto", regions=None) -> dict:
    """Everything that shapes the output's video: kept segments are used only under the same key.
    Device, precision, batch, compile and tile settings are left out (they change pixels by rounding
    at most): a run stopped on one machine goes on on another, or with --tile after running out of
    memory. Nor is torch against ONNX Runtime's in-memory export of the same weights (the same network,
    rounding apart): `--backend auto` may pick either, and installing onnxruntime mid-job loses nothing."""
    described = backend.describe()
    in_memory = described.get("onnx") == "exported in memory"
    model = {"backend": "torch" if in_memory else described.get("backend")}
    for name in ("weights", "engine", "onnx"):
        value = None if in_memory and name == "onnx" else described.get(name)
        if value == "shipped default":
            from .weights import default_weights_path

            value = default_weights_path()
        if value is not None and Path(value).is_file():
            value = file_sha256(value)
        model[name] = None if value is None else str(value)
    identity = {**sequence.identity(src), "rate": str(reader.info.rate)} if sequence.is_sequence(src) \
        else resume_mod.file_identity(src)
    return {"input": {"path": str(src.resolve()), **identity},
            "output": {"suffix": dst.suffix.lower(), **encoding},
            "part": [start, duration], "model": model, "rgb": reader.rgb_format,
            **view.key(), **({"deinterlace": deinterlace} if deinterlace != "auto" else {}),
            **({"ensemble": described["ensemble"]} if described.get("ensemble", 1) > 1 else {}),
            **({"regions": [list(r) for r in regions]} if regions is not None else {}),
            **({"double_rate": True} if reader.doubling else {}),
            **({"field_order": reader.field_order} if reader.field_order and deinterlace == "auto" else {})}


def _run(reader: VideoReader, writer: VideoWriter, backend: Backend, *, batch: int, quiet: bool, done: int = 0,
         view: View = View(), on_frame=None, dedup: bool = True) -> Report:
    stop = threading.Event()
    errors: list[BaseException] = []
    inq: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES + batch)
    outq: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES + batch)
    expected = reader.info.frames // reader.per_input_frame if reader.info.frames else reader.info.frames
    progress = _Progress(expected, quiet, done, on_frame)
    decoder = threading.Thread(target=_decode_stage, args=(reader, inq, stop), name="vdeblur-decode", daemon=True)
    encoder = threading.Thread(target=_encode_stage, args=(writer, outq, stop, progress, errors),
                               name="vdeblur-encode", daemon=True)
    started = time.perf_counter()
    try:
        decoder.start()
        encoder.start()
        repeated = _process_batches(backend, batch, inq, outq, stop, errors, view, dedup)
        if not errors:
            _put(outq, _END, stop)
        encoder.join()
        if errors:
            raise errors[0]
        writer.close()
        progress.finish()
    finally:
        stop.set()
        if decoder.ident is not None:   # a signal can land while start() runs: never started, nothing to join
            decoder.join(_STUCK_READ_SECONDS)
            if decoder.is_alive():   # blocked reading a pipe that sends nothing: a signal must not wait for it
                reader.abandon()
        if encoder.ident is not None:
            encoder.join()
        progress.close()
    return Report(output=writer.path, frames=writer.frames, expected_frames=expected,
                  frames_counted=reader.info.frames_counted, expected_seconds=reader.seconds_expected,
                  seconds_read=reader.seconds_read, held_frames=reader.held_frames,
                  deinterlaced_frames=reader.deinterlaced_frames, repeated_frames=repeated,
                  seconds=time.perf_counter() - started,
                  corrupt_packets=reader.corrupt_packets + writer.dropped_packets,
                  corrupt_frames=reader.corrupt_frames, dropped_frames=writer.dropped_frames,
                  copied_streams=writer.copied, skipped_streams=writer.skipped, backend=backend.describe(),
                  resized=_resized(reader), **_captions(reader, writer))


def _captions_dropped(reader: VideoReader, writer) -> str | None:
    """Why the output cannot keep the input's closed captions, or None where it keeps them."""
    from .video import CAPTION_ENCODERS

    if reader.doubling and not reader.woven:
        return "at --double-rate each frame's would be shown twice"
    if not writer.carries_captions:
        return f"{writer.codec_name} cannot carry them ({', '.join(CAPTION_ENCODERS)} can)"
    return None


def _caption_lines(reader: VideoReader, writer) -> list[str]:
    """Said before the first frame where the input's first frame has closed captions the output will lose."""
    why = _captions_dropped(reader, writer) if reader.captioned else None
    return [f"the input's video carries closed captions (CEA-608/708), which will not be kept: {why}"] if why else []


def _captions(reader: VideoReader, writer) -> dict:
    """Closed captions in the input's video: kept (frames), or why not."""
    found = reader.caption_frames // reader.per_input_frame
    if not found:
        return {}
    why = _captions_dropped(reader, writer)
    if why is None:
        return {"captions_kept": found}
    return {"captions_lost": f"closed captions (CEA-608/708) in {found} frame(s) were not kept: {why}"}


def _resized(reader: VideoReader) -> str | None:
    if not reader.resized_frames:
        return None
    (w, h, index), info = reader.other_size, reader.info
    per = reader.per_input_frame
    stretched = ", which stretches them" if w * info.height != h * info.width else ""
    separately = "; give the pictures as separate INPUTs to keep each one's size" \
        if reader.sequence_start is not None else ""
    return (f"the input changes size mid-stream ({w}x{h} from frame {index // per}): "
            f"{reader.resized_frames // per} frame(s) were "
            f"scaled to {info.width}x{info.height}, the first frame's size{stretched}{separately}")


# -- the `deblur` subcommand ---------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "deblur", help="deblur video files (audio, subtitles, timestamps and colour tags kept)",
        description="Deblur every frame of INPUT into OUTPUT. Audio, subtitle and data streams are copied "
                    "bit-exact (converted where OUTPUT's container cannot hold them); timestamps (VFR too), "
                    "rotation, aspect ratio and colour tags are kept. "
                    "Several INPUTs (or a directory as OUTPUT) write OUTPUT/<input's name> each, with the "
                    "model loaded once; every input and output is checked first, and a file that fails while it runs "
                    "is reported and the others go on.")
    p.add_argument("input", metavar="INPUT", nargs="+", help="video file(s) to read, or directories of videos; "
                   "an image sequence such as frames/%%04d.png (see --fps); "
                   "- reads standard input, and a URL (http://, rtsp://, srt://, ...) a stream")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="file to write, its suffix picking the container (.mp4, .mkv, .mov); or a directory; "
                        "an image sequence such as out/%%04d.png (.png, .tif, .dpx, .jpg, .webp; numbered as an input "
                        "sequence's frames, else from 1); - writes standard output (Matroska, or --format)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="a directory INPUT gives the videos in its subdirectories too, written to the same "
                        "subdirectories of OUTPUT (which is itself passed over if it lies inside INPUT)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave outputs that exist alone and go on with the rest (to finish an interrupted batch)")
    m = p.add_argument_group("model")
    m.add_argument("--weights", metavar="PATH", help="checkpoint to use (default: the shipped weights)")
    m.add_argument("--strength", type=float, default=1.0, metavar="S",
                   help="how much of the model's change to keep: 1 = all of it (default), 0.5 = halfway between "
                        f"input and result, up to {MAX_STRENGTH:g} to exaggerate it")
    m.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="average the model's results on the frame and its mirror images: 2 (left-right) or 4 "
                        "(upside down too), for N times the model's time; measured on real blur: +0.09 and "
                        "+0.12 dB over 1 (default: 1)")
    m.add_argument("--no-dedup", dest="dedup", action="store_false",
                   help="run the model on every frame; by default a frame identical to the one before it (repeated "
                        "by frame-rate conversion, a still shot, a screen recording) gets that frame's result for free")
    m.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="inference backend (default: auto)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N; several GPUs: cuda:0,cuda:1 or cuda:all "
                   "(batches go to each in turn; torch backend) (default: auto)")
    m.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto = fp16 on CUDA, bf16 on a CPU with AMX/AVX-512-BF16, else fp32")
    m.add_argument("--batch", type=int, default=1, metavar="N", help="frames per model call (default: 1)")
    m.add_argument("--threads", type=int, default=0, metavar="T",
                   help="CPU threads for the model (default: one per core); fewer leave cores to other jobs")
    add_torch_arguments(m)
    # Options of backends that are registered only (a backend added to BACKENDS brings its option).
    if "tensorrt" in BACKENDS:
        m.add_argument("--engine", metavar="PATH", help="TensorRT engine file (tensorrt backend)")
    if "onnxruntime" in BACKENDS:
        m.add_argument("--onnx", metavar="PATH", help="ONNX model file (onnxruntime backend)")
    m.add_argument("--tile", metavar="N|WxH", help="process frames in N x N or W x H tiles to save memory; "
                   "multiples of 16 waste nothing on padding (default: whole frames, tiled on their own "
                   "if memory runs out)")
    m.add_argument("--tile-overlap", type=int, metavar="M", help="pixels shared by neighbouring tiles, blended (default: "
                   f"{DEFAULT_OVERLAP}, or less where a tile under {2 * DEFAULT_OVERLAP + 2} pixels has no room for it)")
    e = p.add_argument_group("output encoding")
    e.add_argument("--codec", help="video encoder: libx265, libsvtav1, ffv1, ... any PyAV has "
                   "(default: libx264; libsvtav1 for .webm, rawvideo for .y4m, libx265 for .265 and .hevc)")
    e.add_argument("--crf", type=float, help="constant rate factor (default: 18 x264, 20 x265, 30 SVT-AV1)")
    e.add_argument("--preset", help="encoder preset, e.g. veryfast, medium, slow (x264/x265) or 0-13 (SVT-AV1)")
    e.add_argument("--pix-fmt", help="output pixel format (default: the input's; 10-bit stays 10-bit)")
    e.add_argument("--format", metavar="NAME", help=f"container of -o - (standard output): {', '.join(PIPE_FORMATS)} "
                   f"(default: {PIPE_DEFAULT})")
    e.add_argument("--compare", choices=COMPARE_MODES, help="write a before/after video: side = input | result "
                   "(twice the width), split = the input's left half beside the result's right half")
    s = p.add_argument_group("part of the input")
    s.add_argument("--start", type=float, metavar="SEC", help="start this many seconds into the file (counted from its start, as FFmpeg's -ss: an MPEG-TS that starts at 1.4 s starts at 0)")
    s.add_argument("--duration", type=float, metavar="SEC", help="process this many seconds")
    s.add_argument("--region", metavar="X,Y,W,H", action="append",
                   help="deblur only this rectangle of each frame (left, top, width, height in pixels, as the picture "
                   "is shown) and keep the rest as it is: a plate or a face costs a fraction of the whole frame; "
                   "give it again for more rectangles")
    s.add_argument("--deinterlace", choices=DEINTERLACE_MODES, default="auto",
                   help="auto: frames the decoder flags interlaced are deinterlaced (FFmpeg's bwdif, one frame per "
                   "frame) before the model; tff/bff: every frame, with that field first (interlaced video flagged "
                   "progressive); off: each frame as one picture (default: auto)")
    s.add_argument("--double-rate", action="store_true",
                   help="deinterlace each field into a frame: 50i becomes 50p and 59.94i 59.94p, every field's "
                   "motion kept, at twice the frames to deblur (default: one frame per frame)")
    s.add_argument("--reinterlace", action="store_true",
                   help="deblur each field as a frame (as --double-rate), then weave the results back: the output is "
                   "interlaced like the input (same frames, rate and field order, closed captions kept), for "
                   "broadcast delivery; libx264, mpeg2video, prores_ks or ffv1; written in one pass (not resumable)")
    s.add_argument("--fps", metavar="RATE", help="frames per second of an image-sequence INPUT such as frames/%%04d.png "
                   "(25, 23.976, 24000/1001; default 25, as FFmpeg)")
    r = p.add_argument_group("resuming", "By default finished segments of video are kept in a hidden folder "
                             "beside OUTPUT until OUTPUT is written: the same command after a crash, a power cut "
                             "or Ctrl-C goes on from the last one (mp4, mov, mkv and webm outputs).")
    r.add_argument("--no-resume", dest="resume", action="store_false",
                   help="write OUTPUT in one pass, keeping nothing beside it")
    r.add_argument("--checkpoint-minutes", type=float, default=resume_mod.SEGMENT_SECONDS / 60, metavar="M",
                   help=f"end a segment once it is M minutes old and has {resume_mod.SEGMENT_FRAMES} frames "
                        "(each starts with a keyframe); a crash loses only the segment being written (default: 1)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not read OUTPUT back to compare its frames' timestamps, copied streams and tags with INPUT")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--json", action="store_true", help="print one JSON object per input on standard output as it "
                   "finishes: its report (frames, fps, backend, warnings, what the read-back confirmed), or "
                   "the error or skip (for scripts; the progress bar and summary stay on standard error)")
    p.add_argument("--json-progress", action="store_true",
                   help="--json, and while each input runs a progress object at most once a second: "
                   '{"input", "output", "progress": {"frames", "total", "fraction", "fps", "eta_seconds"}} '
                   "(for front-ends; total, fraction and eta_seconds are null where the input gives no length)")
    p.set_defaults(func=run)


#: What a directory given as INPUT is searched for (hidden files, such as vdeblur's own temporary ones, are not).
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".mxf", ".wmv",
                  ".flv", ".3gp", ".mpg", ".mpeg", ".y4m", ".h264", ".264", ".hevc", ".265")


def expand_inputs(inputs: list[str], recursive: bool = False, skip: str | None = None) -> list[str]:
    """INPUTs as files: a directory gives the videos in it (sorted; with ``recursive``, those of its
    subdirectories too, but not of ``skip``, the output directory), and a pattern the shell left alone
    (Windows does not expand *) gives what it matches. Hidden files and folders, such as vdeblur's own
    temporary ones, are passed over."""
    files = []
    for name in inputs:
        path = Path(name)
        if is_stream(name):
            files.append(name)
        elif path.is_dir():
            found = _videos_in(path, recursive, Path(skip) if skip and skip != STDIO else None)
            if not found:
                guess = sequence.guess_pattern(path)
                if guess and guess[1] > 1:   # a folder of frames: say how to read it as one video
                    raise VdeblurError(f"{path}: no video files in it, but {guess[1]} numbered images; to read them "
                                       f"as one video, give the sequence: {guess[0]}")
                where = "in it or its subdirectories" if recursive else "in it"
                raise VdeblurError(f"{path}: no video files {where} (looked for {', '.join(VIDEO_SUFFIXES)})")
            files += found
        elif not path.exists() and glob.has_magic(name):
            matches = sorted(glob.glob(name))
            if not matches:
                raise VdeblurError(f"{name}: matches no file")
            files += matches
        else:
            files.append(name)
    return files


def _videos_in(folder: Path, recursive: bool, skip: Path | None) -> list[str]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if recursive and not d.startswith(".")
                         and not (skip is not None and skip.exists() and (Path(root) / d).samefile(skip)))
        found += [str(Path(root) / n) for n in sorted(names)
                  if Path(n).suffix.lower() in VIDEO_SUFFIXES and not n.startswith(".") and (Path(root) / n).is_file()]
    return found


def plan_outputs(inputs: list[str], output: str, to_directory: bool = False,
                 folders: list[str] = ()) -> list[tuple[Path | str, Path]]:
    """(input, output) pairs: one INPUT and a file name (or "-") -> that file; several INPUTs, or a
    directory (existing, written with a trailing slash, or ``to_directory``) -> OUTPUT/<input's name>,
    the directory to be made (:func:`make_folders`) if its parent exists; an input found inside one of ``folders`` (a recursive
    search) -> OUTPUT/<its path inside that folder>. Two inputs written under the same name would
    collide there: refused. Standard input and URLs stay strings (a Path would fold the "//" of a URL)."""
    out = Path(output)
    if output == STDIO and len(inputs) > 1:
        raise VdeblurError(f"-o - (standard output) takes one INPUT, not {len(inputs)}")
    if len(inputs) == 1 and (output == STDIO or not to_directory and not out.is_dir()
                             and not output.endswith(("/", os.sep))):
        return [(inputs[0] if is_stream(inputs[0]) else Path(inputs[0]), out)]
    streams = [name for name in inputs if is_stream(name)]
    if streams:
        shown = "standard input" if streams[0] == STDIO else streams[0]
        raise VdeblurError(f"{shown}: a stream has no file name to write under {out}; give -o a file name and one INPUT")
    if not out.is_dir():
        if out.exists():
            raise VdeblurError(f"{out}: not a directory; several inputs need a directory as OUTPUT")
        if not out.parent.is_dir():
            raise VdeblurError(f"{out.parent}: output directory does not exist")
        if out.suffix.lower() in (*VIDEO_SUFFIXES, *IMAGE_SUFFIXES) and not output.endswith(("/", os.sep)):
            raise VdeblurError(f"{out}: {len(inputs)} inputs need a directory as OUTPUT, not a file name; "
                               f"give -o {out.parent / out.stem}{os.sep}, or one INPUT")
    pairs, seen = [], {}
    for name in inputs:
        src = Path(name)
        inside = next((src.relative_to(f) for f in map(Path, folders) if src.is_relative_to(f)), None)
        relative = inside if inside is not None else Path(src.name)
        if relative in seen:
            raise VdeblurError(f"{seen[relative]} and {src} would both be written as {out / relative}")
        seen[relative] = src
        pairs.append((src, out / relative))
    return pairs


def make_folders(pairs, root: Path) -> list[Path]:
    """The folders ``pairs`` need inside the output directory ``root`` (itself included) that do not
    exist yet, made; returns them, outermost first, so a run refused before it starts can take them
    away again (:func:`remove_folders`). Nothing outside ``root`` is made."""
    made = []
    for _, dst in pairs:
        missing = [p for p in [dst.parent, *dst.parent.parents]
                   if not p.exists() and (p == root or root in p.parents)][::-1]
        for folder in missing:
            folder.mkdir()
            made.append(folder)
    return made


def remove_folders(made: list[Path]) -> None:
    for folder in reversed(made):
        try:
            folder.rmdir()   # only while still empty
        except OSError:
            pass


def run(args) -> int:
    args.json = args.json or args.json_progress
    try:
        jobs, todo = _planned(args)
    except VdeblurError as e:
        _print_json_error(args, e)
        raise
    options = dict(weights=args.weights, device=args.device, precision=args.precision, batch=args.batch,
                   threads=args.threads, **torch_options(args), engine=getattr(args, "engine", None),
                   onnx=getattr(args, "onnx", None))
    refused = []   # every path checked before hours of work on the first file, and each refusal said
    made = make_folders(todo, Path(args.output))   # one file's OUTPUT is no folder: nothing made for it
    for src, dst in todo:
        try:
            _check_paths(src, dst, args.overwrite, models=(options["weights"], options["engine"], options["onnx"]))
        except VdeblurError as e:
            _print_json(args, src, dst, error=str(e))
            refused.append(str(e))
    if refused:
        remove_folders(made)   # a refused run leaves nothing behind, an empty output folder included
        more = f" (and {len(refused) - 1} more of the {len(todo)} inputs; none was started)" if len(refused) > 1 else ""
        raise VdeblurError(refused[0] + more)
    if not todo:
        return 0
    if len(jobs) == 1:
        src, dst = todo[0]
        return _deblur_one(args, src, dst, args.backend, options)
    require_pyav()
    failed = []
    chosen = BackendOptions(**options)
    if args.backend == "auto" and auto_order(chosen) != auto_order(replace(chosen, deep_input=True)):
        # Only where 10-bit input would change auto's pick is every input opened to see.
        chosen = replace(chosen, deep_input=_any_deep(todo, sequence.parse_rate(args.fps)))
    try:
        backend = open_backend(args.backend, chosen)   # loaded (and compiled) once
    except VdeblurError as e:
        _print_json_error(args, e)
        raise
    with backend:
        for i, (src, dst) in enumerate(todo, 1):
            if not args.quiet:
                print(f"vdeblur: [{i}/{len(todo)}] {src}", file=sys.stderr)
            try:
                status = _deblur_one(args, src, dst, backend, options)
            except VdeblurError as e:
                raise_if_signalled()   # FFmpeg may have dropped the signal that caused this error: stop, as asked
                print(f"vdeblur: error: {e}", file=sys.stderr)
                failed.append(src)
                continue
            if status:   # interrupted: the files already written stay
                return status
    done = len(todo) - len(failed)
    if not args.quiet or failed:   # -q keeps the line only where it reports a failure
        print(f"vdeblur: {done} of {len(jobs)} file(s) written"
              + (f", {len(jobs) - len(todo)} skipped (existed)" if len(jobs) > len(todo) else "")
              + (f", {len(failed)} failed: {', '.join(map(str, failed))}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _planned(args) -> tuple[list, list]:
    """Every (input, output) pair, and those to do (not skipped), after checking the options that
    do not depend on a file."""
    folders = [name for name in args.input if Path(name).is_dir()]
    jobs = plan_outputs(expand_inputs(args.input, args.recursive, skip=args.output), args.output,
                        to_directory=bool(folders), folders=folders if args.recursive else [])
    if args.skip_existing and args.overwrite:
        raise VdeblurError("--skip-existing and --overwrite contradict each other; use one")
    if args.json and args.output == STDIO:
        raise VdeblurError("--json prints on standard output, which -o - fills with video; write to a file")
    if args.batch < 1:
        raise VdeblurError(f"--batch must be >= 1, got {args.batch}")
    check_threads(args.threads)   # more than the CPUs only thrash (999 took minutes on 30 tiny frames)
    check_tiling(args.tile, args.tile_overlap)
    check_strength(args.strength)
    check_copies(args.ensemble)
    parse_regions(args.region)
    if not args.checkpoint_minutes >= 0:   # NaN too
        raise VdeblurError(f"--checkpoint-minutes must be >= 0, got {args.checkpoint_minutes:g}")
    check_container(args.format, args.output == STDIO)
    skipped = [(src, dst) for src, dst in jobs if args.skip_existing and str(dst) != STDIO
               and (sequence.numbers(dst) if sequence.is_sequence(dst) else dst.exists())]
    for src, dst in skipped:
        print(f"vdeblur: {dst} exists, skipped", file=sys.stderr)
        _print_json(args, src, dst, skipped="the output exists")
    return jobs, [job for job in jobs if job not in skipped]


def _any_deep(jobs, rate) -> bool:
    """Whether any input has more than 8 bits (the backend, loaded once for all, must keep them)."""
    from .video import VideoReader

    for src, _ in jobs:
        try:
            reader = VideoReader(src, rate=rate if sequence.is_sequence(src) else None)
        except VdeblurError:   # reported when its turn comes
            raise_if_signalled()
            continue
        try:
            if reader.info.high_bit_depth:
                return True
        finally:
            reader.close()
    return False


def _deblur_one(args, src: Path, dst: Path, backend: str | Backend, options: dict) -> int:
    """One file through :func:`deblur_video` with the CLI's messages; the exit status (0, or 128 + N on a signal)."""
    notes: list[str] = []   # what was said before and during the run (losses, interlacing, resuming), for --json too

    def notify(line: str) -> None:
        notes.append(line)
        print(f"vdeblur: {line}", file=sys.stderr)

    try:
        report = deblur_video(
            src, dst, backend=backend, **(options if isinstance(backend, str) else {}),
            tile=args.tile, tile_overlap=args.tile_overlap, codec=args.codec, crf=args.crf, preset=args.preset,
            pix_fmt=args.pix_fmt, start=args.start, duration=args.duration, overwrite=args.overwrite,
            quiet=args.quiet, resume=args.resume, notify=notify, segment_seconds=args.checkpoint_minutes * 60,
            verify=args.verify, compare=args.compare, container=args.format, fps=sequence.parse_rate(args.fps),
            deinterlace=args.deinterlace, double_rate=args.double_rate, reinterlace=args.reinterlace,
            strength=args.strength, region=args.region, ensemble=args.ensemble,
            progress=JsonProgress(src, dst) if args.json_progress else None, dedup=args.dedup)
    except KeyboardInterrupt as e:   # Ctrl-C, or SIGTERM/SIGHUP under the CLI
        if getattr(e, "written", None):
            what = f"{e.written} is written, but was not read back to check it"
        else:
            what = "standard output ends early" if str(dst) == STDIO else f"{dst} was not written{_kept_hint(dst)}"
        _print_json(args, src, dst, error=f"{describe(e)}; {what}", notes=notes)
        print(f"vdeblur: {describe(e)}; {what}", file=sys.stderr)
        return exit_status(e)
    except (VdeblurError, OSError) as e:   # OSError: a full disk or a vanished folder, wherever it struck
        message = describe_os_error(e) if isinstance(e, OSError) else str(e)
        if str(dst) != STDIO and not sequence.is_sequence(dst):   # the output, not its hidden temp file
            message = message.replace(str(_temp_path(dst)), str(dst))
        _print_json(args, src, dst, error=f"{message}{_kept_hint(dst)}", notes=notes)
        raise VdeblurError(f"{message}{_kept_hint(dst)}") from None
    _print_json(args, src, dst, **report.to_dict(), notes=notes)
    for warning in report.warnings():
        print(f"vdeblur: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        b = report.backend
        copied = f", copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
        copied += f", {report.deinterlaced_frames} deinterlaced" if report.deinterlaced_frames else ""
        copied += f", {report.repeated_frames} repeated frames reused" if report.repeated_frames else ""
        copied += f", closed captions of {report.captions_kept} frames" if report.captions_kept else ""
        strength = f" at strength {args.strength:g}" if args.strength != 1 else ""
        strength += f", an ensemble of {args.ensemble} mirror images" if args.ensemble > 1 else ""
        if args.region:
            strength += f", {describe_regions(parse_regions(args.region))}"
        frames = f"{report.frames} frame{'s' if report.frames != 1 else ''}"
        print(f"vdeblur: {report.output}: {frames} in {report.seconds:.1f} s ({report.fps:.2f} fps) "
              f"with {b.get('backend', '?')} on {b.get('device', '?')} {b.get('precision', '')}{strength}{copied}",
              file=sys.stderr)
        if report.verified:
            print(f"vdeblur: read back: {'; '.join(report.verified)}", file=sys.stderr)
    return 0


def _print_json(args, src, dst, **fields) -> None:
    """One line of `deblur --json`: the input and output, then a report, an error or a skip."""
    if args.json:
        print(json.dumps({"input": str(src), **fields, "output": str(dst)}, default=str), flush=True)


class JsonProgress:
    """A ``progress`` callback of :func:`deblur_video` printing `deblur --json-progress`'s lines: the
    first frame, then at most one line per ``every`` seconds, and the last frame. Speed counts from the
    first frame written, so that loading the model does not make the first minutes look slow."""

    def __init__(self, src, dst, every: float = 1.0, clock=time.monotonic):
        self.src, self.dst, self.every, self.clock = str(src), str(dst), every, clock
        self.first: tuple[float, int] | None = None
        self.last = -math.inf

    def __call__(self, done: int, total: int | None) -> None:
        now = self.clock()
        if self.first is None:
            self.first = (now, done)
        elif done != total and now - self.last < self.every:
            return
        self.last = now
        seconds, frames = now - self.first[0], done - self.first[1]
        fps = frames / seconds if frames and seconds > 0 else None
        left = max(total - done, 0) if total else None
        print(json.dumps({"input": self.src, "output": self.dst, "progress": {
            "frames": done, "total": total, "fraction": round(min(done / total, 1.0), 4) if total else None,
            "fps": round(fps, 4) if fps else None,
            "eta_seconds": round(left / fps, 1) if fps and left is not None else None}}), flush=True)


def _print_json_error(args, e: VdeblurError) -> None:
    """`deblur --json`'s line for a refusal that is not about one input (options, the backend): the
    same keys as every other line, so a script reads them all alike; no input is named."""
    if args.json and args.output != STDIO:
        print(json.dumps({"input": None, "error": str(e), "output": args.output}), flush=True)


def _kept_hint(dst: Path) -> str:
    kept = resume_mod.kept_frames(dst)
    if not kept:
        return ""
    return f" ({kept} finished frames kept in {resume_mod.state_dir(dst)}; the same command goes on from there)"
