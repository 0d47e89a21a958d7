"""Small test videos made on the fly with PyAV (nothing binary is committed)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from vdeblur.backends.base import Backend
from vdeblur.video import repair_dts


class IdentityBackend(Backend):
    """Returns its input: measures what the video path alone does to the pictures."""

    name = "identity"

    def __init__(self, uint16: bool = False):
        self.accepts_uint16 = uint16
        self.calls = 0
        self.dtypes: set = set()

    def run(self, frames):
        self.calls += 1
        self.dtypes.add(frames.dtype)
        return frames.copy()

    def describe(self):
        return {"backend": "identity", "device": "cpu", "precision": "n/a"}


def pattern(i: int, height: int, width: int, high: bool = False) -> np.ndarray:
    """Saturated colour ramps plus a moving square: colour-matrix mistakes show up in every channel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = x / max(width - 1, 1)
    g = y / max(height - 1, 1)
    b = 0.5 + 0.5 * np.sin((x + y + 7 * i) / 9.0)
    img = np.stack([r, g, b], -1)
    s = (3 * i) % max(width - 16, 1)
    img[8:20, s:s + 12] = (1.0, 0.1, 0.2)
    if high:
        return np.round(img * 65535).astype(np.uint16)
    return np.round(img * 255).astype(np.uint8)


def make_video(path, *, width=64, height=48, frames=8, rate=25, codec="libx264", pix_fmt="yuv420p",
               audio=False, subtitles=False, vfr=False, rotation=None, bt709=False, full_range=False,
               untagged=False, sar=None, options=None, metadata=None, chapters=None, attachment=None,
               cues=((0, 100, "hello"), (100, 100, "world"))):
    """Write a test clip; returns the list of video pts written. ``cues``: the subtitles' (start ms, duration ms, text)."""
    high = "10" in pix_fmt
    out = av.open(str(path), "w")
    if metadata:
        out.metadata.update(metadata)
    if attachment:   # (name, mimetype, data)
        out.add_attachment(*attachment)
    if chapters:   # [(start_s, end_s, title)]
        out.set_chapters([{"id": k + 1, "start": round(a * 1000), "end": round(b * 1000), "time_base": Fraction(1, 1000),
                           "metadata": {"title": t}} for k, (a, b, t) in enumerate(chapters)])
    v = out.add_stream(codec, rate=rate, options=options or {"preset": "ultrafast", "crf": "10"})
    v.width, v.height, v.pix_fmt = width, height, pix_fmt
    tb = Fraction(1, 90000) if vfr else Fraction(1, rate * 512)
    v.codec_context.time_base = tb
    v.time_base = tb
    cs, rng = (1, 1) if bt709 else (6, 1)
    if full_range:
        rng = 2
    cc = v.codec_context
    if not untagged:
        cc.colorspace, cc.color_range = cs, rng
    if bt709:
        cc.color_primaries, cc.color_trc = 1, 1
    if sar:
        cc.sample_aspect_ratio = sar
    if rotation is not None:
        v.set_display_rotation(rotation)
    a = out.add_stream("aac", rate=48000, layout="stereo") if audio else None
    s = out.add_mux_stream("mov_text" if str(path).endswith((".mp4", ".mov")) else "subrip") if subtitles else None
    rng_gen = np.random.default_rng(0)
    pts_list, t = [], 0
    for i in range(frames):
        img = pattern(i, height, width, high)
        f = av.VideoFrame.from_ndarray(img, format="rgb48le" if high else "rgb24")
        if untagged:   # swscale's defaults (BT.601, limited), no tags in the stream
            f = f.reformat(format=pix_fmt)
        else:
            f = f.reformat(format=pix_fmt, dst_colorspace=cs if cs == 1 else 5, dst_color_range=rng)
        step = int(90000 / rate * rng_gen.choice([1, 1, 2, 3])) + int(rng_gen.integers(-900, 900)) if vfr else 512
        f.pts, f.time_base = t, tb
        pts_list.append(t)
        t += step
        out.mux(_repaired(v.encode(f)))
    out.mux(_repaired(v.encode(None)))
    if a is not None:
        n = int(48000 * float(t * tb)) // 1024 + 1
        for k in range(n):
            tone = np.sin(np.arange(k * 1024, (k + 1) * 1024) * 2 * np.pi * 440 / 48000).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, k * 1024
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    if s is not None:
        for begin, length, text in cues:
            payload = text.encode()
            data = len(payload).to_bytes(2, "big") + payload if str(path).endswith((".mp4", ".mov")) else payload
            p = av.Packet(data)
            p.stream = s
            p.time_base = Fraction(1, 1000)
            p.pts = p.dts = begin
            p.duration = length
            out.mux(p)
    out.close()
    return pts_list


def _repaired(packets: list) -> list:
    """libx265 gives one in five encodes of exactly two frames a garbage DTS, which the muxer refuses:
    the fix vdeblur's writer uses (a test clip of two frames failed now and then)."""
    for packet in packets:
        repair_dts(packet)
    return packets


def video_pts(path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def packets(path, kind: str) -> list[tuple[int, int, bytes]]:
    """(pts, duration, payload) of every packet of the first stream of ``kind`` (audio/subtitle)."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        st = streams[0]
        return [(float(p.pts * p.time_base), float(p.duration * p.time_base), bytes(p))
                for p in c.demux(st) if p.size]


def yuv_planes(path) -> list[list[np.ndarray]]:
    with av.open(str(path)) as c:
        return [[np.frombuffer(pl, np.uint16 if "10" in f.format.name else np.uint8)
                 .reshape(pl.height, -1)[:, :pl.width].copy() for pl in f.planes]
                for f in c.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


class TwoSlotBackend(IdentityBackend):
    """Like torch on CUDA: submit() returns at once, with page-locked buffers for two batches, and a
    third submitted before the oldest is collected is refused. The result inverts the frames."""

    batches_in_flight = 2

    def __init__(self):
        super().__init__()
        self.outstanding = self.most = 0

    def submit(self, frames):
        from vdeblur.backends.base import Pending

        if self.outstanding >= 2:
            raise RuntimeError("torch backend: two batches are already in flight; collect the oldest first")
        self.outstanding += 1
        self.most = max(self.most, self.outstanding)
        backend, done = self, 255 - frames

        class Later(Pending):
            def result(self):
                backend.outstanding -= 1
                return done

        return Later(None)
