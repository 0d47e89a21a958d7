"""Streams a container takes without complaint but players would not find: re-encoded, skipped, or
caught by the read-back; and audio the fallback encoders could not open before."""

from fractions import Fraction

import av
import numpy as np
import pytest

import vdeblur.video
from media import IdentityBackend, make_video, pattern
from vdeblur.errors import VdeblurError
from vdeblur.pipeline import deblur_video
from vdeblur.verify import verify


def make_clip(path, audio=(), subtitles=None, frames=10):
    """64x48 H.264 at 25 fps with one stream per (encoder, sample format, layout, rate) of ``audio``,
    and a text subtitle stream of codec ``subtitles``."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        streams = [(c.add_stream(enc, rate=rate, layout=layout), fmt, layout, rate) for enc, fmt, layout, rate in audio]
        s = c.add_mux_stream(subtitles) if subtitles else None
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(pattern(i, 48, 64), format="rgb24").reformat(format="yuv420p")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        for a, fmt, layout, rate in streams:
            size = a.codec_context.frame_size or 1024
            channels = len(av.AudioLayout(layout).channels)
            for k in range(rate * frames // 25 // size + 1):
                tone = 0.3 * np.sin(np.arange(k * size, (k + 1) * size) * 2 * np.pi * 440 / rate)
                planes = np.tile(tone, (channels, 1))
                data = planes.astype(np.float32) if fmt == "fltp" else \
                    (planes * 32767).astype(np.int16).reshape(1, -1, order="F")
                af = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
                af.sample_rate, af.pts = rate, k * size
                c.mux(a.encode(af))
            c.mux(a.encode(None))
        if s is not None:
            for k, text in enumerate(["hello", "world"]):
                p = av.Packet(text.encode())
                p.stream, p.time_base, p.pts, p.dts, p.duration = s, Fraction(1, 1000), k * 100, k * 100, 100
                c.mux(p)
    return path


def _camera_clip(path, video, audio):
    """A clip from one video encoder (codec, fps, width, height, pixel format, frames) and one mono audio
    encoder (codec, rate, samples per packet, packets) of a tone, the way a camera or phone writes it."""
    codec, fps, width, height, pix_fmt, frames = video
    audio_codec, rate, size, packets = audio
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        a = c.add_stream(audio_codec, rate=rate, layout="mono")
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(pattern(i, height, width), format="rgb24").reformat(format=pix_fmt)
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        for k in range(packets):
            tone = (3000 * np.sin(np.arange(k * size, (k + 1) * size) / 20)).astype(np.int16)
            af = av.AudioFrame.from_ndarray(tone[None], format="s16", layout="mono")
            af.sample_rate, af.pts = rate, k * size
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    return path


def stream_kinds(path):
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name if s.codec_context else None) for s in c.streams]


def test_pcm_and_text_subtitles_into_mpeg_ts_are_re_encoded_or_named(tmp_path):
    # MPEG-TS's muxer takes both, and its demuxer reads them back as "data": lost to every player.
    src = make_clip(tmp_path / "in.mkv", audio=[("pcm_s16le", "s16", "stereo", 48000)], subtitles="subrip")
    report = deblur_video(src, tmp_path / "out.ts", backend=IdentityBackend())
    assert report.copied_streams == ["#1 audio pcm_s16le re-encoded as aac 256k (pcm_s16le cannot be stored in .ts)"]
    assert report.warnings() == ["stream #2 subtitle srt (srt cannot be stored in .ts so that players find it; "
                                 "try .mkv) not copied"]
    assert stream_kinds(tmp_path / "out.ts") == [("video", "h264"), ("audio", "aac")]
    assert report.verified[1] == "#1 audio pcm_s16le: re-encoded, in sync and as long as the input's"


def test_a_stream_read_back_as_another_kind_is_a_problem(tmp_path):
    # The safety net under the writer's table: what a muxer turns into "data" is caught on read-back.
    src = make_clip(tmp_path / "in.mkv", audio=[("pcm_s16le", "s16", "stereo", 48000)])
    dst = tmp_path / "raw.ts"
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.size:
                p.stream = streams[p.stream_index]
                o.mux(p)
    result = verify(src, dst, {1: 1}, start=None, duration=None, frames=10, damaged=False)
    assert "#1 audio pcm_s16le: reads back as a data stream (unknown codec), which players will not use as audio" \
        in result.problems


def test_small_frames_in_mpeg_ps_are_counted_not_timed(tmp_path):
    # MPEG-PS packs several small frames into one PES packet, timed once: count them, compare no times.
    src = tmp_path / "in.mp4"
    make_video(src, frames=10)
    report = deblur_video(src, tmp_path / "out.mpg", backend=IdentityBackend())
    assert report.warnings() == []
    assert report.verified[0] == "10 frames read back (the container times only some of them)"


def test_audio_with_no_speaker_order_and_a_low_rate_is_re_encoded(tmp_path):
    # An AVI's mono 8 kHz PCM ("1 channels"): AC-3 takes 32-48 kHz and named layouts only.
    src = make_clip(tmp_path / "phone.avi", audio=[("pcm_s16le", "s16", "mono", 8000)])
    with av.open(str(src)) as c:
        assert c.streams.audio[0].codec_context.layout.name == "1 channels"
    for suffix, became in ((".mpg", "ac3 448k"), (".ts", "aac 256k")):
        report = deblur_video(src, tmp_path / f"out{suffix}", backend=IdentityBackend())
        assert report.copied_streams == [f"#1 audio pcm_s16le re-encoded as {became} (pcm_s16le cannot be stored in {suffix})"]
        # AAC primes 1024 samples: 128 ms at 8 kHz, timed before the start in MPEG-TS.
        assert report.warnings() == [] and "#1 audio pcm_s16le: re-encoded, in sync and as long as the input's" in report.verified


def test_side_surround_into_webm_becomes_opus_surround(tmp_path):
    src = make_clip(tmp_path / "in.mkv", audio=[("ac3", "fltp", "5.1(side)", 48000)])
    report = deblur_video(src, tmp_path / "out.webm", backend=IdentityBackend(), codec="libvpx-vp9")
    assert report.copied_streams == ["#1 audio ac3 re-encoded as libopus 192k (ac3 cannot be stored in .webm)"]
    with av.open(str(tmp_path / "out.webm")) as c:
        assert c.streams.audio[0].codec_context.channels == 6


def test_audio_copied_into_avi_is_compared_bit_for_bit_not_by_time(tmp_path):
    # AVI keeps no audio timestamps (they come back counted from 0, an AAC priming packet's -23 ms lost).
    src = tmp_path / "in.mkv"
    make_video(src, frames=10, audio=True)
    report = deblur_video(src, tmp_path / "out.avi", backend=IdentityBackend())
    assert report.warnings() == []
    assert report.verified[1] == "#1 audio aac: 20 packets bit-exact (AVI keeps no timestamps for them)"


def test_an_ass_track_without_its_header_is_left_out_not_the_job(tmp_path):
    # Its events cannot become mov_text without the header's styles; it failed the whole job before.
    src = make_clip(tmp_path / "in.mkv", audio=[("aac", "fltp", "stereo", 48000)], subtitles="ass")
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend())
    assert report.copied_streams == ["#1 audio aac"]
    assert report.warnings() == ["stream #2 subtitle ssa (ssa cannot be stored in .mp4; try .mkv) not copied"]


def test_pcm_naming_no_speakers_is_copied_into_mp4_bit_exact(tmp_path, monkeypatch):
    """NUT (like AVI and WAV) keeps PCM's channel count, not its speakers: "2 channels". MP4's muxer took
    the stream and refused it only when writing its index, after the last frame, with a traceback."""
    src = make_clip(tmp_path / "in.nut", audio=[("pcm_s16le", "s16", "stereo", 48000)])
    with av.open(str(src)) as c:
        assert c.streams.audio[0].codec_context.layout.name == "2 channels"
    out = tmp_path / "out.mp4"
    report = deblur_video(src, out, backend=IdentityBackend())
    assert report.copied_streams == ["#1 audio pcm_s16le"] and report.warnings() == []
    assert any("bit-exact" in line for line in report.verified)
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.layout.name == "stereo"

    monkeypatch.setattr(vdeblur.video, "_USUAL_LAYOUTS", {})   # as before: the muxer's refusal at the end
    with pytest.raises(VdeblurError, match=r"out2.mp4: cannot finish writing \(Invalid argument\); copied streams: "
                                           r"#1 audio pcm_s16le; try .mkv"):
        deblur_video(src, tmp_path / "out2.mp4", backend=IdentityBackend(), resume=False)
    assert not (tmp_path / "out2.mp4").exists()


def test_audio_matroska_and_avi_cannot_hold_is_re_encoded_not_lost(tmp_path):
    """A 3GP phone clip's AMR has no Matroska codec ID, and AVI has none for Opus: both were skipped."""
    src = make_clip(tmp_path / "in.mkv", audio=[("libopus", "fltp", "stereo", 48000)])
    report = deblur_video(src, tmp_path / "out.avi", backend=IdentityBackend())
    assert report.copied_streams == ["#1 audio opus re-encoded as libmp3lame 320k (opus cannot be stored in .avi)"]
    assert report.warnings() == []
    phone = _camera_clip(tmp_path / "phone.3gp", ("h263", 15, 176, 144, "yuv420p", 6),
                         ("libopencore_amrnb", 8000, 160, 16))   # 0.4 s of 8 kHz in AMR's 20 ms frames
    for suffix in (".mkv", ".mp4"):
        report = deblur_video(phone, tmp_path / f"phone{suffix}", backend=IdentityBackend())
        assert report.copied_streams == [f"#1 audio amrnb re-encoded as aac 256k (amrnb cannot be stored in {suffix})"]
        assert report.warnings() == []   # AAC's 128 ms of priming at 8 kHz is no desync


def test_pcm_cut_into_other_packets_by_the_container_is_still_a_bit_exact_copy(tmp_path):
    """MXF holds a video frame's worth of PCM per packet and MOV twice as many smaller ones: the same
    bytes at the same times were reported as "the copy differs from the input (20 packets, 10 in the input)"."""
    src = _camera_clip(tmp_path / "camera.mxf", ("mpeg2video", 25, 64, 48, "yuv422p", 10), ("pcm_s16le", 48000, 1920, 10))
    for suffix in (".mov", ".mkv"):
        report = deblur_video(src, tmp_path / f"out{suffix}", backend=IdentityBackend())
        assert report.warnings() == [], suffix
        assert any(line.startswith("#1 audio pcm_s16le: ") and "bit-exact" in line for line in report.verified)
