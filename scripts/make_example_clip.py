#!/usr/bin/env python3
"""Write a short clip with real camera-shake blur and an audio track, to try `vdeblur deblur` on.

Each video frame is the average, in linear light, of sub-frames taken along a smooth random camera
path over a procedural scene (or a photo you pass), the way GoPro-style blur is made. Needs nothing
but vdeblur's own dependencies.

    python scripts/make_example_clip.py example.mp4 [--photo PATH] [--size 320x192] [--frames 24]
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction

import av
import numpy as np

from vdeblur.synthetic import dead_leaves

GAMMA = 2.2


def camera_path(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """A smooth shaky path: random accelerations integrated twice, scaled to +-amplitude pixels."""
    acc = rng.normal(size=(n, 2))
    vel = np.cumsum(acc, axis=0)
    pos = np.cumsum(vel - vel.mean(axis=0), axis=0)
    pos -= pos.mean(axis=0)
    return pos * (amplitude / max(np.abs(pos).max(), 1e-6))


def render(scene: np.ndarray, size: tuple[int, int], frames: int, subframes: int, seed: int):
    """Yield blurred uint8 frames: each averages ``subframes`` crops in linear light."""
    w, h = size
    rng = np.random.default_rng(seed)
    margin = min((scene.shape[1] - w) // 2, (scene.shape[0] - h) // 2)
    path = camera_path(rng, frames * subframes, 0.9 * margin)
    linear = (scene.astype(np.float32) / 255.0) ** GAMMA
    cy, cx = (scene.shape[0] - h) / 2, (scene.shape[1] - w) / 2
    for f in range(frames):
        acc = np.zeros((h, w, 3), np.float32)
        for dx, dy in path[f * subframes:(f + 1) * subframes]:
            x0, y0 = int(round(cx + dx)), int(round(cy + dy))
            acc += linear[y0:y0 + h, x0:x0 + w]
        yield ((acc / subframes) ** (1 / GAMMA) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output")
    p.add_argument("--photo", help="sharp picture to shake over (default: a procedural scene)")
    p.add_argument("--size", default="320x192", help="WxH (default 320x192)")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--subframes", type=int, default=9, help="sub-frames averaged per frame: more = longer blur")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.photo:
        with av.open(args.photo) as c:
            scene = next(c.decode(video=0)).to_ndarray(format="rgb24")
        if scene.shape[0] < h * 1.2 or scene.shape[1] < w * 1.2:
            sys.exit(f"make_example_clip: {args.photo} must be at least 20% larger than {w}x{h}")
    else:
        scene = dead_leaves(np.random.default_rng(args.seed), int(h * 1.5), int(w * 1.5))

    rate = 48000
    with av.open(args.output, "w") as out:
        video = out.add_stream("libx264", rate=args.fps, options={"crf": "16"})
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="mono")
        for i, img in enumerate(render(scene, (w, h), args.frames, args.subframes, args.seed)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, args.fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        t = np.arange(int(rate * args.frames / args.fps)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        chunk = 1024
        for start in range(0, len(tone), chunk):
            af = av.AudioFrame.from_ndarray(tone[None, start:start + chunk], format="fltp", layout="mono")
            af.sample_rate, af.pts = rate, start
            out.mux(audio.encode(af))
        out.mux(audio.encode())
    print(f"wrote {args.output}: {args.frames} frames {w}x{h} at {args.fps} fps with camera-shake blur, AAC audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
