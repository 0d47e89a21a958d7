"""Resumable runs: deblurred video is kept in finished segments beside the output, so a run stopped
by a crash, a power cut, Ctrl-C or a full disk goes on from the last finished segment.

Each segment is one fresh encoder's packets, stored as they came out of it (timestamps exact in the
source's time base, whatever the container). When the input ends, the segments' packets and the
input's other streams are muxed into the output in one pass, with no re-encoding. The state is keyed
by the input file, the model and every setting that shapes the output: change one and the run
starts over. Nothing here is unpickled: a JSON manifest and length-prefixed packet records.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

from .errors import VdeblurError
from .fileio import atomic_write, file_sha256, fitting

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = "lock"
_OPEN_FILES_STAY = os.name == "nt"   # Windows cannot delete a file while it is open
# One packet: pts, dts (NO_TS when unset), duration, flags (1 = keyframe), payload size; then the payload.
_RECORD = struct.Struct("<qqqII")
_NO_TS = -(2**63)
_KEYFRAME = 1
# A segment ends at the first frame after it holds SEGMENT_FRAMES frames and has been open for
# SEGMENT_SECONDS: a new encoder starts with a keyframe, so segments no shorter than x264's and
# x265's own keyframe interval (250) add at most one keyframe per interval, and a fast run (a GPU
# at 100 fps) checkpoints about once a minute instead of every 2.5 s.
SEGMENT_FRAMES = 250
SEGMENT_SECONDS = 60.0


def state_dir(output: str | os.PathLike) -> Path:
    """Where the kept segments of ``output`` live: a hidden folder beside it (same filesystem)."""
    output = Path(output)
    return output.with_name(f".{fitting(output.name, len('..vdeblur-resume'))}.vdeblur-resume")


def muxer_takes_global_header(path: str | os.PathLike) -> bool:
    """Segments are muxed under a new encoder's stream, which needs the codec's headers out of band
    (mp4, mov, mkv, webm, ...). Formats that repeat them in band (mpegts, avi) are written in one go."""
    import io

    import av

    probe = io.BytesIO()
    probe.name = str(path)   # the muxer the suffix picks
    try:
        with av.open(probe, "w") as container:
            return bool(container.format.flags & av.format.Flags.global_header.value)
    except (ValueError, OSError, av.error.FFmpegError):
        return False


def file_identity(path: str | os.PathLike) -> dict:
    """Size, modification time and a hash of the first and last MiB: a file replaced or edited since
    (even one of the same size) does not match, and reading it costs milliseconds."""
    path = Path(path)
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            digest.update(f.read())
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": digest.hexdigest()}


class ResumeState:
    """The manifest of one output's kept segments, and the segment files beside it."""

    def __init__(self, directory: Path, key: dict):
        self.directory = directory
        self.key = key
        self.segments: list[dict] = []
        self.complete = False          # the input has ended: only the final mux is left
        self.extradata: str | None = None
        self.time_base: str | None = None
        self.dropped_frames = 0
        self._lock_fd: int | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike, key: dict) -> tuple[ResumeState, str | None]:
        """The kept state if it was made with this ``key`` and its files are intact, else a fresh one
        (an old state for other settings is removed); and a note saying which, or None."""
        state = cls(Path(directory), json.loads(json.dumps(key)))
        state._lock()
        manifest = state.directory / MANIFEST
        if not manifest.exists():
            return state, None
        try:
            saved = json.loads(manifest.read_text())
            if not isinstance(saved, dict) or saved.get("format") != FORMAT:
                raise ValueError("unknown format")
        except (OSError, ValueError):
            state.discard()
            return state, f"{state.directory}: unreadable progress from an earlier run, starting over"
        if saved.get("key") != state.key:
            state.discard()
            return state, f"{state.directory}: progress kept for another input, model or encoding, starting over"
        state.extradata, state.time_base = saved.get("extradata"), saved.get("time_base")
        try:
            for n, seg in enumerate(saved.get("segments", [])):
                if not _whole_segment(seg):   # numbers a run trusts for its counts and timestamps
                    raise ValueError("segment entry")
                path = state.directory / seg["file"]
                if seg["file"] != _segment_name(n) or not path.is_file() or path.stat().st_size != seg["bytes"] \
                        or file_sha256(path) != seg["sha256"]:
                    break   # this one and later ones are redone
                state.segments.append(seg)
                state.dropped_frames += int(seg["dropped_frames"])
        except (KeyError, TypeError, ValueError):
            state.discard()
            return state, f"{state.directory}: unreadable progress from an earlier run, starting over"
        state.complete = bool(saved.get("complete")) and len(state.segments) == len(saved.get("segments", [])) \
            and bool(state.segments) and state.segments[-1]["next_pts"] is None   # the last one says it ends there
        if not state.segments:
            state.discard()
            return state, None
        return state, f"resuming after frame {state.frames_done} (kept in {state.directory})"

    def _lock(self) -> None:
        """One run per output: a second one (the same command started twice, a batch run beside it)
        would write into the same segments. An advisory lock, let go when the process ends however
        it ends, so a crash never leaves the output locked."""
        self.directory.mkdir(exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_file(self._lock_fd)
        except OSError:   # held by another process
            os.close(self._lock_fd)
            self._lock_fd = None
            raise VdeblurError(f"{self.directory}: another vdeblur run is writing this output now; "
                               "wait for it or stop it") from None

    def release(self) -> None:
        """End of the run: unlock, and remove the folder if it keeps nothing."""
        if self._lock_fd is None:
            return
        empty = not self.segments and not (self.directory / MANIFEST).exists()
        if empty and not _OPEN_FILES_STAY:
            (self.directory / LOCK).unlink(missing_ok=True)   # while locked: no other run takes it meanwhile
        os.close(self._lock_fd)
        self._lock_fd = None
        if empty and _OPEN_FILES_STAY:
            try:
                (self.directory / LOCK).unlink(missing_ok=True)
            except OSError:   # another run opened it since
                return
        try:
            self.directory.rmdir()   # only if empty: nothing finished leaves nothing behind
        except OSError:
            pass

    @property
    def frames_done(self) -> int:
        return sum(seg["frames"] for seg in self.segments)

    @property
    def next_pts(self) -> int | None:
        return self.segments[-1]["next_pts"] if self.segments else None

    @property
    def last_pts(self) -> int | None:
        return self.segments[-1]["last_pts"] if self.segments else None

    def check_encoder(self, extradata: bytes, time_base: Fraction) -> bool:
        """True if segments kept so far can share a stream with this encoder's; else they are dropped."""
        kept = not self.segments or (self.extradata == extradata.hex() and self.time_base == str(time_base))
        if not kept:
            self.discard()
        # Recorded either way: segments written from here on are this encoder's (after a discard
        # they were saved with none, and the final mux refused them on every rerun).
        self.extradata, self.time_base = extradata.hex(), str(time_base)
        return kept

    def add_segment(self, temp: Path, frames: int, last_pts: int | None, next_pts: int | None,
                    dropped_frames: int) -> None:
        """Adopt a finished segment file (fsynced; renamed into place, then listed: a crash in
        between leaves a stray file, never a listed one that is missing)."""
        name = _segment_name(len(self.segments))
        final = self.directory / name
        os.replace(temp, final)
        self.segments.append({"file": name, "frames": frames, "last_pts": last_pts, "next_pts": next_pts,
                              "dropped_frames": dropped_frames, "bytes": final.stat().st_size,
                              "sha256": file_sha256(final)})
        self.dropped_frames += dropped_frames
        self.complete = next_pts is None
        self.save()

    def save(self) -> None:
        self.directory.mkdir(exist_ok=True)
        atomic_write(self.directory / MANIFEST, json.dumps({
            "format": FORMAT, "key": self.key, "extradata": self.extradata, "time_base": self.time_base,
            "segments": self.segments, "complete": self.complete}, indent=1).encode())

    def packets(self) -> Iterator:
        """Every kept video packet, in order, as PyAV packets in the segments' time base."""
        import av

        time_base = Fraction(self.time_base)
        for seg in self.segments:
            with open(self.directory / seg["file"], "rb") as f:
                while header := f.read(_RECORD.size):
                    pts, dts, duration, flags, size = _RECORD.unpack(header)
                    packet = av.Packet(f.read(size))
                    packet.pts = None if pts == _NO_TS else pts
                    packet.dts = None if dts == _NO_TS else dts
                    packet.duration = duration
                    packet.time_base = time_base
                    packet.is_keyframe = bool(flags & _KEYFRAME)
                    yield packet

    def discard(self) -> None:
        """Delete the kept progress (the files this module wrote, nothing else); the lock stays
        until :meth:`release`."""
        self.segments, self.complete, self.extradata, self.time_base, self.dropped_frames = [], False, None, None, 0
        for pattern in (MANIFEST, f".{MANIFEST}.*.partial", "segment-*.packets", "segment-*.partial"):
            for path in self.directory.glob(pattern):
                path.unlink(missing_ok=True)


def _whole_segment(seg) -> bool:
    count = lambda v: type(v) is int and v >= 0   # noqa: E731 - bool is not a count
    pts = lambda v: v is None or type(v) is int   # noqa: E731
    return isinstance(seg, dict) and isinstance(seg.get("file"), str) and isinstance(seg.get("sha256"), str) \
        and count(seg.get("frames")) and count(seg.get("bytes")) and count(seg.get("dropped_frames")) \
        and pts(seg.get("last_pts")) and pts(seg.get("next_pts"))


def _lock_file(fd: int) -> None:
    """An exclusive lock on ``fd`` without waiting (OSError if another process holds it), let go when
    the file is closed or the process ends: flock on POSIX, a one-byte region lock on Windows."""
    try:
        import fcntl
    except ImportError:
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def kept_frames(output: str | os.PathLike) -> int:
    """Frames of ``output`` finished and kept by an interrupted run (0 if none): for its message."""
    try:
        saved = json.loads((state_dir(output) / MANIFEST).read_text())
        return sum(int(seg["frames"]) for seg in saved["segments"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _segment_name(n: int) -> str:
    return f"segment-{n:06d}.packets"


class SegmentWriter:
    """Stands in for the pipeline's ``VideoWriter``: frames are encoded into segments of the state,
    each by a fresh ``VideoWriter`` in packet-sink mode made by ``new_encoder()``; the other streams'
    packets are left for the final mux. ``first`` is one made already (it checked the encoder
    options before the model loaded)."""

    def __init__(self, state: ResumeState, new_encoder: Callable, first=None, *,
                 segment_frames: int = SEGMENT_FRAMES, segment_seconds: float = SEGMENT_SECONDS):
        self.state = state
        self.new_encoder = new_encoder
        self.segment_frames, self.segment_seconds = segment_frames, segment_seconds
        self.path = str(state.directory)
        self.copied: list[str] = []
        self.skipped: list[str] = []
        self.dropped_packets = 0
        self.dropped_frames = 0                 # in this run (earlier runs' are in the state)
        self._last_pts = state.last_pts
        self.carries_captions = bool(getattr(first, "carries_captions", False))
        self.codec_name = getattr(first, "codec_name", "")
        self._encoder = first
        self._file = None
        self._temp: Path | None = None
        self._opened = 0.0
        if first is not None:
            self._open(first)

    @property
    def frames(self) -> int:
        return self.state.frames_done + (self._encoder.frames if self._file is not None else 0)

    def _open(self, encoder) -> None:
        self.state.directory.mkdir(exist_ok=True)
        self._temp = (self.state.directory / _segment_name(len(self.state.segments))).with_suffix(".partial")
        self._file = open(self._temp, "wb")
        self._encoder = encoder
        self._encoder.packet_sink = self._store
        self._opened = time.monotonic()
        self._segment_dropped = 0
        self._segment_last_pts = self._last_pts

    def _store(self, packets) -> None:
        try:
            for p in packets if isinstance(packets, list) else [packets]:
                data = bytes(p)
                self._file.write(_RECORD.pack(_NO_TS if p.pts is None else p.pts, _NO_TS if p.dts is None else p.dts,
                                              p.duration or 0, _KEYFRAME if p.is_keyframe else 0, len(data)))
                self._file.write(data)
        except OSError as e:   # a full disk: the finished segments stay, and the same command goes on
            raise VdeblurError(f"{self.state.directory}: writing a segment failed ({e.strerror or e})") from None

    def _due(self) -> bool:
        return (self._encoder.frames >= self.segment_frames
                and time.monotonic() - self._opened >= self.segment_seconds)

    def _finish(self, next_pts: int | None) -> None:
        encoder, self._encoder = self._encoder, None
        encoder.close()                      # flushes the encoder's last packets into the file
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise VdeblurError(f"{self.state.directory}: writing a segment failed ({e.strerror or e})") from None
        self._file.close()
        self._file = None
        self.state.add_segment(self._temp, encoder.frames, self._segment_last_pts, next_pts, self._segment_dropped)

    def write_frame(self, image, pts: int, duration: int, time_base, alpha=None, captions=None) -> None:
        if self._last_pts is not None and pts <= self._last_pts:
            self.dropped_frames += 1         # out-of-order timestamps (damaged input), as VideoWriter does
            self._segment_dropped += 1
            return
        if self._file is not None and self._due():
            self._finish(next_pts=pts)
        if self._file is None:
            self._open(self.new_encoder())
        self._encoder.write_frame(image, pts, duration, time_base, alpha, captions)
        self._last_pts = self._segment_last_pts = pts

    def write_packet(self, packet) -> None:
        """Other streams are muxed from the input at the end."""

    def close(self) -> None:
        if self._file is not None:
            self._finish(next_pts=None)
        else:
            self.state.complete = True
            self.state.save()

    def abort(self) -> None:
        """Drop the unfinished segment; the finished ones stay for the next run."""
        if self._encoder is not None:
            self._encoder.abort()
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError:   # its buffer could not be flushed (a full disk): it goes anyway
                pass
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)


def mux(state: ResumeState, reader, writer) -> None:
    """The kept video packets and ``reader``'s other streams into ``writer``, ordered by time."""
    def timed(packets, kind):
        seconds = float("-inf")   # a packet without timestamps goes with the one before it
        for n, packet in enumerate(packets):
            ts = packet.dts if packet.dts is not None else packet.pts
            if ts is not None and packet.time_base:
                seconds = float(ts * packet.time_base)
            yield seconds, kind, n, packet

    video = timed(state.packets(), 0)
    other = timed(reader.passthrough_packets(), 1)
    for _, kind, _, packet in heapq.merge(video, other, key=lambda item: item[:3]):
        if kind == 0:
            writer.write_encoded(packet)
        else:
            writer.write_packet(packet)
