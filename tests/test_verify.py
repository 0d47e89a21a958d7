"""Reading the written file back: what held is reported, and a muxer's silent loss is caught."""

import pytest

from media import IdentityBackend, make_video
from vdeblur.pipeline import deblur_video
from vdeblur.video import VideoWriter


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    make_video(path, vfr=True, audio=True, subtitles=True, frames=12, bt709=True)
    return path


@pytest.mark.parametrize("resume", [True, False])
def test_a_faithful_file_reads_back_clean(clip, tmp_path, resume):
    report = deblur_video(clip, tmp_path / "out.mp4", backend=IdentityBackend(), resume=resume)
    assert report.verified == ["12 frames at the input's timestamps", "#1 audio aac: 43 packets bit-exact",
                               "#2 subtitle mov_text: 2 packets bit-exact", "size, rotation, aspect ratio and colour tags"]
    assert report.verify_problems == [] and report.warnings() == []


def test_a_shift_of_the_whole_file_is_named_not_failed(clip, tmp_path):
    # Matroska moves everything so the AAC priming packet (-21.3 ms in the mp4) starts at 0.
    report = deblur_video(clip, tmp_path / "out.mkv", backend=IdentityBackend())
    assert report.verified[0] == "12 frames at the input's timestamps (the muxer moved the whole file by +21.0 ms)"
    assert report.verified[1] == "#1 audio aac: 43 packets bit-exact" and report.verify_problems == []
    assert report.copied_streams[1] == "#2 subtitle mov_text converted to subrip (mov_text cannot be stored in .mkv)"
    assert "#2 subtitle mov_text: re-encoded, in sync and as long as the input's" in report.verified


def test_a_lost_audio_packet_and_a_moved_frame_are_reported(clip, tmp_path, monkeypatch):
    write_packet, encode_frame = VideoWriter.write_packet, VideoWriter.encode_frame
    seen = {"audio": 0}

    def lossy(self, packet):
        if packet.stream.type == "audio":
            seen["audio"] += 1
            if seen["audio"] == 3:
                return
        write_packet(self, packet)

    def late(self, frame, pts, duration, time_base):
        encode_frame(self, frame, pts + (100 if self.frames == 5 else 0), duration, time_base)

    monkeypatch.setattr(VideoWriter, "write_packet", lossy)
    monkeypatch.setattr(VideoWriter, "encode_frame", late)
    report = deblur_video(clip, tmp_path / "out.mp4", backend=IdentityBackend(), resume=False)
    assert report.verify_problems == ["video: the frames' timestamps differ from the input's",
                                      "#1 audio aac: the copy differs from the input (42 packets, 43 in the input)"]
    assert "read back: #1 audio aac: the copy differs from the input (42 packets, 43 in the input)" in report.warnings()


def test_aac_between_mpeg_ts_and_mp4_is_compared_without_its_adts_headers(tmp_path):
    """The TS muxer frames AAC in ADTS headers and the MP4 muxer strips them: a faithful copy both
    ways was reported as "the copy differs" until the payloads were compared without them."""
    src = tmp_path / "in.mp4"
    make_video(src, audio=True, frames=6)
    ts = tmp_path / "out.ts"
    report = deblur_video(src, ts, backend=IdentityBackend())
    assert report.verify_problems == []
    assert "#1 audio aac: 13 packets bit-exact (ADTS headers are the container's)" in report.verified
    back = deblur_video(ts, tmp_path / "back.mp4", backend=IdentityBackend())
    assert back.verify_problems == []
    assert "#1 audio aac: 13 packets bit-exact (ADTS headers are the container's)" in back.verified


def test_an_adts_header_is_all_that_is_forgiven():
    from vdeblur.verify import _without_adts

    payload = bytes(range(40))
    header = bytes([0xFF, 0xF1, 0x50, 0x80, 0x05, 0x1F, 0xFC])   # protection absent: 7 bytes
    assert _without_adts(header + payload) == payload
    assert _without_adts(bytes([0xFF, 0xF0]) + bytes(7) + payload) == payload   # with a CRC: 9 bytes
    assert _without_adts(payload) == payload
    assert _without_adts(header + payload[:-1] + b"\x00") != payload


def test_no_verify_reads_nothing_back(clip, tmp_path):
    report = deblur_video(clip, tmp_path / "out.mp4", backend=IdentityBackend(), verify=False)
    assert report.verified == [] and report.verify_problems == []


def test_re_encoded_audio_is_judged_by_start_and_end():
    from vdeblur.verify import Verification, _compare_reencoded, _Stream

    def stream(first, last, step=0.02):   # packets of ``step`` seconds, the last one starting at ``last``
        s = _Stream()
        s.times = [first + k * step for k in range(round((last - first) / step) + 1)]
        s.end, s.longest = s.times[-1] + step, step
        return s

    ok, late, short, coarse = Verification(), Verification(), Verification(), Verification()
    _compare_reencoded(ok, "#1 audio aac", stream(0.0, 2.0), stream(-0.0065, 1.99))   # Opus pre-skip: fine
    _compare_reencoded(late, "#1 audio aac", stream(0.0, 2.0), stream(0.3, 2.3))
    _compare_reencoded(short, "#1 audio aac", stream(0.0, 2.0), stream(0.0, 1.0))
    # FLAC's 104 ms packets against AAC's 20 ms with priming: both end at 0.94 s, though measured by where
    # the last packets start, the AAC lasts 105 ms longer
    _compare_reencoded(coarse, "#1 audio flac", stream(0.0, 0.836, 0.1045), stream(-0.021, 0.919, 0.02))
    # AMR at 8 kHz as AAC: 128 ms of priming before the start and a padded last frame; counted as length,
    # both made it "last +142 ms"
    primed = Verification()
    _compare_reencoded(primed, "#1 audio amrnb", stream(0.0, 0.38), stream(-0.128, 0.266, 0.128))
    assert ok.held == ["#1 audio aac: re-encoded, in sync and as long as the input's"] and not ok.problems
    assert coarse.held == ["#1 audio flac: re-encoded, in sync and as long as the input's"]
    assert primed.held == ["#1 audio amrnb: re-encoded, in sync and as long as the input's"]
    assert late.problems == ["#1 audio aac: re-encoded, but it starts +300 ms and ends +300 ms against the input's"]
    assert short.problems == ["#1 audio aac: re-encoded, but it starts +0 ms and ends -1000 ms against the input's"]


def test_an_output_whose_video_cannot_be_read_back_is_a_problem_not_a_crash(tmp_path):
    """FFV1 in MPEG-TS: the muxer takes it but has no stream type for it, so it reads back as data."""
    src = tmp_path / "in.mp4"
    make_video(src, frames=3)
    report = deblur_video(src, tmp_path / "out.ts", backend=IdentityBackend(), codec="ffv1")
    assert "picture: no frame read back" in report.verify_problems


def test_limited_range_tagged_alone_is_not_lost_where_the_codec_cannot_say_it_alone(tmp_path):
    # A camera's ProRes tagged "limited" with no matrix: H.264 signals range only beside a matrix,
    # so the output says neither, which decoders read as limited: the same picture, no problem.
    import av
    import numpy as np

    src = tmp_path / "range_only.mov"
    with av.open(str(src), "w") as c:
        s = c.add_stream("prores_ks", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv422p10le"
        s.codec_context.color_range = 1
        for i in range(2):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24").reformat(format="yuv422p10le")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend())
    assert report.verify_problems == [] and report.verified[-1] == "size, rotation, aspect ratio and colour tags"


def test_repacked_pcm_must_be_the_same_bytes_over_the_same_span():
    from vdeblur.verify import Verification, _compare_copy, _Stream

    def pcm(payload: bytes, packets: int, seconds: float) -> _Stream:
        s = _Stream()
        step = seconds / packets
        s.times, s.end, s.longest, s.step = [k * step for k in range(packets)], seconds, step, 1 / 48000
        s.digest.update(payload)
        return s

    ok, altered, cut = Verification(), Verification(), Verification()
    _compare_copy(ok, "#1 audio pcm_s16le", pcm(b"abcd", 10, 0.4), pcm(b"abcd", 20, 0.4), False, repacked=True)
    _compare_copy(altered, "#1 audio pcm_s16le", pcm(b"abcd", 10, 0.4), pcm(b"abce", 20, 0.4), False, repacked=True)
    _compare_copy(cut, "#1 audio pcm_s16le", pcm(b"abcd", 10, 0.4), pcm(b"abcd", 20, 0.2), False, repacked=True)
    assert ok.held == ["#1 audio pcm_s16le: bit-exact, in 20 packets where the input had 10 (PCM is cut as the "
                       "container likes)"] and not ok.problems
    assert altered.problems == ["#1 audio pcm_s16le: the copy differs from the input (20 packets, 10 in the input)"]
    assert cut.problems == ["#1 audio pcm_s16le: the copy differs from the input (20 packets, 10 in the input)"]


def test_a_video_shift_in_avi_is_a_desync_not_a_moved_file():
    """Matroska or MPEG-TS move every stream when they shift the video; AVI's audio has no timestamps to
    move. A 2-frame slideshow (frames 9 s apart) into AVI started its video 13.56 s late, read back as
    "the muxer moved the whole file"."""
    from vdeblur.verify import Verification, _compare_video, _Stream

    def timed(times):
        s = _Stream()
        s.times, s.packets, s.step = list(times), len(times), 0.001
        return s

    moved, desync = Verification(), Verification()
    _compare_video(moved, timed([0.0, 9.0]), timed([0.0, 9.0]), 2, False, shift=13.56)
    _compare_video(desync, timed([0.0, 9.0]), timed([0.0, 9.0]), 2, False, shift=13.56, alone=False)
    assert moved.held == ["2 frames at the input's timestamps (the muxer moved the whole file by +13560.0 ms)"]
    assert desync.problems == ["video: starts +13560 ms from the input's, and AVI's other streams, timed by "
                               "counting their packets, did not move with it"]


def test_a_track_with_no_packets_that_mp4_leaves_out_is_said_not_a_traceback(tmp_path):
    """MP4 drops a track that got no packet; the read-back indexed it anyway (IndexError, and a
    batch of files stopped there)."""
    import av

    from media import IdentityBackend, pattern
    from vdeblur.pipeline import deblur_video

    src = tmp_path / "silent.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        out.add_stream("aac", rate=48000, layout="stereo")   # declared, never given a packet
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(pattern(i, 48, 64), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode())
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend())
    assert report.verify_problems == []
    assert any("no packets to copy, so the file has no such track" in line for line in report.verified)


def test_a_read_back_that_trips_keeps_the_file(tmp_path, monkeypatch):
    from media import IdentityBackend, make_video
    from vdeblur import verify
    from vdeblur.pipeline import deblur_video

    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=3)

    def trips(*args, **kwargs):
        raise IndexError("list index out of range")

    monkeypatch.setattr(verify, "verify", trips)
    report = deblur_video(src, dst, backend=IdentityBackend())
    assert dst.is_file() and report.frames == 3
    assert report.verify_problems == [f"{dst}: the read-back check failed (IndexError: list index out of range); "
                                      "the file is written"]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_part_past_every_cue_reads_back_clean(tmp_path, suffix):
    """--start after the last cue: MP4's muxer writes an empty mov_text cue (read back as 'the copy
    differs'), and SRT re-encoded for MP4 had 'no input to compare'."""
    from media import IdentityBackend, make_video
    from vdeblur.pipeline import deblur_video

    src = tmp_path / f"in{suffix}"
    make_video(src, frames=12, subtitles=True)   # cues at 0-0.1 s and 0.1-0.2 s
    report = deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), start=0.3)
    assert report.verify_problems == []
    assert any(line.endswith(": none in this part") for line in report.verified), report.verified


@pytest.mark.parametrize("start", [0.4, None])
def test_a_part_of_a_file_that_starts_late_reads_back_at_its_own_timestamps(tmp_path, start):
    """--start and --duration count from the file's start (an MPEG-TS at 1.0 s); the read-back
    counted from 0, compared the wrong frames, and called a faithful audio copy different."""
    from fractions import Fraction

    import av
    import numpy as np

    from media import pattern

    src = tmp_path / "late.ts"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=25, options={"bf": "2", "g": "12"})
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream("mp2", rate=48000)
        a.layout = "stereo"
        done = 0
        for i in range(40):
            f = av.VideoFrame.from_ndarray(pattern(i, 32, 32), format="rgb24")
            f.pts, f.time_base = 25 + i, Fraction(1, 25)   # from 1.0 s
            c.mux(v.encode(f))
            while done < 48000 * (i + 1) / 25:
                noise = np.random.default_rng(done).normal(0, 3000, (1, 2 * 1152)).astype(np.int16)
                af = av.AudioFrame.from_ndarray(noise, format="s16", layout="stereo")
                af.sample_rate, af.pts, af.time_base = 48000, 48000 + done, Fraction(1, 48000)
                c.mux(a.encode(af))
                done += 1152
        c.mux(v.encode(None))
        c.mux(a.encode(None))
    report = deblur_video(src, tmp_path / "part.mkv", backend=IdentityBackend(), start=start, duration=0.8)
    assert report.frames == 20 and report.verify_problems == []
    assert report.verified[0] == "20 frames at the input's timestamps"
    assert report.verified[1].startswith("#1 audio mp2:") and report.verified[1].endswith("packets bit-exact")


def test_grey_h264_reads_back_without_a_false_matrix_change(tmp_path):
    """x264's 4:0:0 decodes as yuvj420p tagged with no matrix: the read-back said "colour matrix 1 -> 2"."""
    src = tmp_path / "in.mp4"
    make_video(src, frames=3, bt709=True, width=32, height=32)
    report = deblur_video(src, tmp_path / "grey.mp4", backend=IdentityBackend(), pix_fmt="gray")
    assert report.verify_problems == [] and "size, rotation, aspect ratio and colour tags" in report.verified
