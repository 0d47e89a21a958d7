"""Pipes and URLs: `vdeblur deblur - -o -` between ffmpeg, players and other tools."""

import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from media import IdentityBackend, make_video, packets, video_pts
from vdeblur.cli import main
from vdeblur.pipeline import deblur_video


@pytest.fixture(scope="module")
def mkv(tmp_path_factory):
    """Matroska with audio and subtitles: what `ffmpeg ... -f matroska -` sends down a pipe."""
    path = tmp_path_factory.mktemp("src") / "in.mkv"
    make_video(path, frames=6, audio=True, subtitles=True, vfr=True)
    return path


def frames_of(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.mark.parametrize("container,suffix", [(None, ".mkv"), ("nut", ".nut"), ("mpegts", ".ts")])
def test_standard_output_carries_every_frame_and_stream(mkv, tmp_path, capfdbinary, container, suffix):
    codec = "libx264" if container == "mpegts" else "ffv1"   # MPEG-TS has no tag for FFV1
    report = deblur_video(mkv, "-", backend=IdentityBackend(), codec=codec, container=container)
    data = capfdbinary.readouterr().out
    assert report.output == "standard output" and report.frames == 6 and report.verified == []
    assert list(tmp_path.iterdir()) == []   # nothing kept beside, no resume folder
    piped, written = tmp_path / f"piped{suffix}", tmp_path / f"written{suffix}"
    piped.write_bytes(data)
    deblur_video(mkv, written, backend=IdentityBackend(), codec=codec)   # the same job into a file
    got, want = frames_of(piped), frames_of(written)
    assert len(got) == 6 and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert video_pts(piped) == video_pts(written)
    assert packets(piped, "audio") == packets(written, "audio")


def test_a_url_is_read_as_a_stream_not_resumed_or_read_back(mkv, tmp_path):
    out = tmp_path / "out.mkv"
    report = deblur_video(f"file://{mkv}", out, backend=IdentityBackend(), codec="ffv1")
    assert report.frames == 6 and report.verified == [] and report.resumed_frames == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv"]
    deblur_video(mkv, tmp_path / "from-file.mkv", backend=IdentityBackend(), codec="ffv1")
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), frames_of(tmp_path / "from-file.mkv"), strict=True))


def test_the_command_reads_standard_input_and_writes_standard_output(mkv, tmp_path):
    """The real thing, end to end through two processes: vdeblur ... -o - | vdeblur - -o OUT."""
    out = tmp_path / "out.mp4"
    first = subprocess.Popen([sys.executable, "-m", "vdeblur", "deblur", str(mkv), "-o", "-", "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = subprocess.run([sys.executable, "-m", "vdeblur", "deblur", "-", "-o", str(out), "--start", "0.1"],
                            stdin=first.stdout, capture_output=True, text=True)
    first.stdout.close()
    assert first.wait() == 0 and first.stderr.read() == b""
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr and "read back" not in second.stderr
    with av.open(str(mkv)) as c:
        stream = c.streams.video[0]
        times = sorted(float(p.pts * stream.time_base) for p in c.demux(stream) if p.size)
    kept = [t for t in times if t >= 0.1 - 1e-6]   # a pipe cannot seek: earlier frames are decoded and dropped
    with av.open(str(out)) as c:
        assert len(list(c.decode(video=0))) == len(kept) and len(kept) < len(times)
        assert [s.type for s in c.streams] == ["video", "audio", "subtitle"]   # .mp4 holds no srt: converted
        assert c.streams.subtitles[0].codec_context.name == "mov_text"
    assert "#2 subtitle srt converted to mov_text" in second.stderr


@pytest.mark.parametrize("argv,message", [
    (["IN", "IN", "-o", "-"], "-o - (standard output) takes one INPUT, not 2"),
    (["IN", "-o", "-", "--format", "mp4"], "--format mp4: standard output takes matroska, nut, mpegts, webm (MP4 and MOV"),
    (["IN", "-o", "OUT/x.mkv", "--format", "nut"], "--format nut is for -o - (standard output)"),
    (["-", "IN", "-o", "OUT/"], "standard input: a stream has no file name to write under"),
])
def test_misused_pipes_are_one_line(mkv, tmp_path, capsys, argv, message):
    (tmp_path / "OUT").mkdir()
    argv = [str(mkv) if a == "IN" else a.replace("OUT", str(tmp_path / "OUT")) for a in argv]
    assert main(["deblur", *argv, "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vdeblur: error: ") and err.count("\n") == 1 and message in err, err
    assert list((tmp_path / "OUT").iterdir()) == []


def test_garbage_on_standard_input_says_what_a_pipe_takes(tmp_path):
    run = subprocess.run([sys.executable, "-m", "vdeblur", "deblur", "-", "-o", str(tmp_path / "o.mp4")],
                         input=b"not a video\n" * 100, capture_output=True)
    err = run.stderr.decode()
    assert run.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("vdeblur: error: standard input: not a readable video file") and "Matroska, MPEG-TS" in err
    assert list(tmp_path.iterdir()) == []


def test_reencoded_audio_starts_where_the_primed_input_plays(tmp_path):
    """MP3 in MP4 keeps its encoder priming (1105 samples) before 0; the decoder drops it from the
    first frame but left that frame at the packet's time. Re-encoded to Opus for .webm, the first
    30 ms played 25 ms early, then a 25 ms gap; and the muxer moved the video 25 ms late for it."""
    src, dst = tmp_path / "in.mp4", tmp_path / "out.webm"
    _clip_with_mp3(src, "libx264", frames=10, packets=16)
    with av.open(str(src)) as c:
        assert next(p for p in c.demux(audio=0) if p.pts is not None).pts < 0   # primed, as the case needs
    deblur_video(src, dst, backend=IdentityBackend(), resume=False)
    with av.open(str(dst)) as c:
        video_start = next(c.decode(video=0)).time
    with av.open(str(dst)) as c:
        frames = [(f.time, f.samples / f.sample_rate) for f in c.decode(audio=0)]
    assert abs(video_start) < 1e-3
    assert abs(frames[0][0] - video_start) < 2e-3
    for (t, length), (t_next, _) in zip(frames, frames[1:]):
        assert abs(t + length - t_next) < 2e-3, frames[:4]


def _clip_with_mp3(path, video_codec: str, frames: int, packets: int) -> None:
    """25 fps video and stereo MP3 (1152 samples a packet at 44.1 kHz), as cameras and phones wrote
    them: in an AVI the video's time base is 1/25 and the audio's 32/1225 s (one packet)."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream(video_codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        mp3 = c.add_stream("libmp3lame", rate=44100, layout="stereo")
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
        noise = np.random.RandomState(0).standard_normal((2, 1152 * packets)).astype(np.float32) * 0.3
        for k in range(packets):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(noise[:, 1152 * k:1152 * (k + 1)]), format="fltp",
                                            layout="stereo")
            af.sample_rate, af.pts = 44100, 1152 * k
            c.mux(mp3.encode(af))
        c.mux(mp3.encode())


def _first_times(path) -> dict:
    out = {}
    for kind in ("video", "audio"):
        with av.open(str(path)) as c:
            out[kind] = min(float(p.pts * p.time_base) for p in c.demux(**{kind: 0}) if p.size and p.pts is not None)
    return out


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_part_moves_every_stream_by_the_same_time(tmp_path, suffix):
    """--start 0.1 on 1/25 video and 26 ms MP3 packets: each stream rounded the start to its own
    ticks (video by 0.08 s, audio by 0.1045 s), 24.5 ms out of sync; MP4 then lost the audio's own
    start to a movie timescale of 25. Now one shift, and sync within the MP3's 1/44100 grid."""
    src, dst = tmp_path / "in.avi", tmp_path / f"out{suffix}"
    _clip_with_mp3(src, "mpeg4", frames=12, packets=14)
    with av.open(str(src)) as c:
        assert c.streams.video[0].time_base == Fraction(1, 25) and c.streams.audio[0].time_base > Fraction(1, 100)
    src_times = _first_times(src)
    assert src_times == {"video": 0.0, "audio": 0.0}
    report = deblur_video(src, dst, backend=IdentityBackend(), start=0.1, resume=False)
    assert report.verified and not report.verify_problems and not report.warnings()
    got = _first_times(dst)
    # input: video frames at 0.12, 0.16 ...; MP3 packets at 0.1045, 0.1306 ... (those at or after 0.1)
    shift_video = 0.12 - got["video"]
    shift_audio = 4 * 1152 / 44100 - got["audio"]
    assert abs(shift_video - shift_audio) < 1e-3, got
    assert 0 <= got["audio"] < got["video"] <= 0.04 + 1e-9


def test_movie_timescale_holds_every_copied_clock():
    from vdeblur.video import movie_timescale

    assert movie_timescale(12800, (48000, 48000)) == 192000   # aac's 640/48000 s start in whole ticks
    assert movie_timescale(25, (1225, 44100)) == 44100
    assert movie_timescale(90000) == 90000
    assert movie_timescale(12800, (2**31 - 1,)) == 12800       # one that would overflow the field is left out


def _with_cover_art(path):
    """An MP4 as iTunes and phones write it: the movie, and a JPEG cover as a one-picture stream."""
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
    cover = out.add_stream("mjpeg")
    cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
    cover.disposition = av.stream.Disposition.attached_pic
    picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24").reformat(format="yuvj420p")
    jpeg = [p for p in [*cover.encode(picture), *cover.encode()]]
    for p in jpeg:
        p.pts = p.dts = 0
        out.mux(p)
    for i in range(3):
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * i, np.uint8), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 25)
        out.mux(video.encode(frame))
    out.mux(video.encode())
    out.close()
    return bytes(jpeg[0])


def test_cover_art_is_attached_to_matroska_not_made_a_second_video_track(tmp_path):
    """FFmpeg's Matroska muxer wrote a copied cover as a one-frame video track (read back: "the copy
    differs"); Matroska keeps cover art as an attached cover.jpg, which readers show as cover art."""
    src = tmp_path / "song.mp4"
    jpeg = _with_cover_art(src)
    report = deblur_video(src, tmp_path / "out.mkv", backend=IdentityBackend())
    assert report.frames == 3 and not report.verify_problems and not report.skipped_streams
    assert "#1 video mjpeg (cover art, attached as cover.jpg)" in report.copied_streams
    with av.open(str(tmp_path / "out.mkv")) as c:
        covers = [s for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]
        assert len(c.streams.video) == 2 and len(covers) == 1 and covers[0].metadata["filename"] == "cover.jpg"
        assert [bytes(p) for p in c.demux(covers[0]) if p.size] == [jpeg]
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend())   # MP4 keeps it as a stream
    assert not report.verify_problems and "#1 video mjpeg" in report.copied_streams


def test_an_mpeg_ts_whose_timestamps_restart_is_refused_not_half_written(tmp_path):
    """Two recordings joined end to end: every frame of the second came out of order, was dropped
    after the model had run on it, and the run ended with half the video and exit status 0."""
    for name in ("a.ts", "b.ts"):
        make_video(tmp_path / name, frames=5, audio=True)
    joined = tmp_path / "joined.ts"
    joined.write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    backend = IdentityBackend()
    with pytest.raises(Exception, match=r"joined.ts: its timestamps restart \(from 0\.\d+ s back to 0\.\d+ s\): joined"):
        deblur_video(joined, tmp_path / "out.mkv", backend=backend)
    assert not (tmp_path / "out.mkv").exists()
    report = deblur_video(tmp_path / "a.ts", tmp_path / "one.mkv", backend=IdentityBackend())
    assert report.frames == 5 and not report.warnings()


def test_a_matroska_input_s_picture_attachments_keep_their_names(tmp_path):
    """FFmpeg shows a Matroska file's image attachments as cover-art streams: each came out as cover.jpg."""
    src = tmp_path / "in.mkv"
    jpeg = _with_cover_art(tmp_path / "song.mp4")
    make_video(src, frames=2, attachment=("small_cover.jpg", "image/jpeg", jpeg))
    report = deblur_video(src, tmp_path / "out.mkv", backend=IdentityBackend())
    assert not report.verify_problems and any("attached as small_cover.jpg" in c for c in report.copied_streams)
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [s.metadata.get("filename") for s in c.streams.video][1:] == ["small_cover.jpg"]
