"""Nothing lost: frames, timestamps, other streams, tags and colours survive the video path."""

from fractions import Fraction
from pathlib import Path
import io

import av
import numpy as np
import pytest

from media import IdentityBackend, make_video, packets, pattern, psnr, video_pts, yuv_planes
from vdeblur.errors import VdeblurError
from vdeblur.pipeline import deblur_video
from vdeblur.video import DEFAULT_CRF, VideoReader, choose_pix_fmt, constant_quality, hardware_needed


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    spec = {
        "av.mp4": dict(audio=True, subtitles=True, bt709=True, metadata={"title": "vdeblur test", "comment": "kept"}),
        "vfr.mp4": dict(vfr=True, audio=True, frames=12),
        "rot.mp4": dict(rotation=90, width=130, height=74, sar=Fraction(4, 3)),
        "10bit.mp4": dict(pix_fmt="yuv420p10le", bt709=True),
        "srt.mkv": dict(audio=True, subtitles=True, attachment=("font.ttf", "font/ttf", b"\x00\x01not a real font")),
        "full.mp4": dict(full_range=True),
        "long.mp4": dict(frames=25, audio=True, chapters=[(0, 0.6, "one"), (0.6, 1.0, "two")]),
        "untagged.mkv": dict(untagged=True),
    }
    return {name: (d / name, make_video(d / name, **kw)) for name, kw in spec.items()}


def identity(src, dst, **kw):
    return deblur_video(src, dst, backend=kw.pop("backend", IdentityBackend()), **kw)


def test_audio_subtitles_pts_tags_and_metadata_kept(clips, tmp_path):
    src, pts = clips["av.mp4"]
    out = tmp_path / "out.mp4"
    report = identity(src, out)
    assert report.frames == len(pts) == report.expected_frames
    assert video_pts(out) == pts
    for kind in ("audio", "subtitle"):
        assert packets(out, kind) == packets(src, kind)   # pts, duration and payload, bit-exact
    assert len(packets(src, "subtitle")) == 2 and report.copied_streams == ["#1 audio aac", "#2 subtitle mov_text"]
    with av.open(str(src)) as a, av.open(str(out)) as b:
        ca, cb = a.streams.video[0].codec_context, b.streams.video[0].codec_context
        assert (cb.color_range, cb.colorspace, cb.color_primaries, cb.color_trc) == (1, 1, 1, 1)
        assert (cb.color_range, cb.colorspace, cb.color_primaries, cb.color_trc) == \
               (ca.color_range, ca.colorspace, ca.color_primaries, ca.color_trc)
        assert b.metadata["title"] == "vdeblur test" and b.metadata["comment"] == "kept"
        assert b.streams.audio[0].metadata.get("language") == a.streams.audio[0].metadata.get("language")


def test_vfr_timestamps_and_audio_priming_kept(clips, tmp_path):
    src, pts = clips["vfr.mp4"]
    assert len(set(np.diff(pts))) > 2   # really variable frame rate
    out = tmp_path / "vfr.mp4"
    identity(src, out)
    assert video_pts(out) == pts
    audio = packets(src, "audio")
    assert audio[0][0] < 0 and packets(out, "audio") == audio   # the AAC priming packet before 0 too


def test_odd_size_rotation_and_aspect_ratio_kept(clips, tmp_path):
    src, pts = clips["rot.mp4"]
    out = tmp_path / "rot.mp4"
    identity(src, out)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (130, 74)
        assert v.sample_aspect_ratio == Fraction(4, 3)
        frame = next(c.decode(v))
        assert frame.rotation == 90 and (frame.width, frame.height) == (130, 74)
    assert len(video_pts(out)) == len(pts)


def test_pixel_aspect_ratio_where_only_the_container_can_carry_it(tmp_path):
    """AV1, VP9, VP8 and FFV1 have no aspect-ratio field: MP4's muxer writes its pasp box from the codec
    parameters (the read-back, looking at the codec only, called it lost), while Matroska's takes the
    stream's, which PyAV cannot set: that is said before the first frame, with what keeps it."""
    src = tmp_path / "anamorphic.mkv"
    make_video(src, frames=2, sar=Fraction(4, 3))
    for codec, suffix, kept in (("libsvtav1", ".mp4", True), ("libvpx-vp9", ".mp4", True), ("libx265", ".mkv", True),
                                ("libsvtav1", ".webm", False), ("ffv1", ".mkv", False)):
        notes = []
        report = identity(src, tmp_path / f"{codec}{suffix}", codec=codec, notify=notes.append)
        if kept:
            assert notes == [] and report.warnings() == [], (codec, suffix)
            with av.open(str(tmp_path / f"{codec}{suffix}")) as c:
                assert c.streams.video[0].sample_aspect_ratio == Fraction(4, 3)
        else:
            assert notes == [f"the source's pixel aspect ratio 4:3 is not kept: {codec} has no field for it, and PyAV "
                             f"cannot set {suffix}'s own, so players will show the picture squeezed; write .mp4 or "
                             f".mov, or use --codec libx264 or libx265"], (codec, suffix)


@pytest.mark.parametrize("codec,suffix", [("prores_ks", ".mov"), ("libvpx", ".webm")])
def test_bt601_stays_bt601_whichever_code_the_encoder_writes_for_it(tmp_path, codec, suffix):
    """ProRes wrote SMPTE 170M as "unspecified" (it takes BT.601 as BT.470BG), and VP8 reads back as
    BT.470BG what went in as SMPTE 170M: the same matrix under two codes, not a colour change."""
    src = tmp_path / "sd.mp4"
    make_video(src, frames=2)   # BT.601 as SMPTE 170M
    out = tmp_path / f"out{suffix}"
    report = identity(src, out, codec=codec)
    assert report.warnings() == []
    with av.open(str(out)) as c:
        assert int(next(c.decode(video=0)).colorspace) in (5, 6)


def test_mkv_with_srt_subtitles(clips, tmp_path):
    src, pts = clips["srt.mkv"]
    out = tmp_path / "out.mkv"
    identity(src, out)
    assert video_pts(out) == video_pts(src) and len(pts) == 8   # mkv counts in ms
    assert packets(out, "subtitle") == packets(src, "subtitle")
    assert packets(out, "audio") == packets(src, "audio")
    with av.open(str(out)) as c:
        (att,) = [s for s in c.streams if s.type == "attachment"]
        assert (att.name, att.mimetype, bytes(att.data)) == ("font.ttf", "font/ttf", b"\x00\x01not a real font")
    report = identity(src, tmp_path / "out.mp4")   # mp4 holds neither srt nor attachments: converted / said
    assert report.skipped_streams == ["#3 attachment font.ttf (attachments need an .mkv output)"]
    assert "#2 subtitle srt converted to mov_text (srt cannot be stored in .mp4)" in report.copied_streams
    assert not report.verify_problems
    converted, original = packets(tmp_path / "out.mp4", "subtitle"), packets(src, "subtitle")
    assert [p[:2] for p in converted] == [p[:2] for p in original]   # same times and durations
    assert [p[2] for p in converted] == [b"\x00\x05hello", b"\x00\x05world"]   # mov_text: length, then the text
    # mkv counts in ms, mp4 in samples: same packets, times within the source's 1 ms rounding
    moved, original = packets(tmp_path / "out.mp4", "audio"), packets(src, "audio")
    assert [p[2] for p in moved] == [p[2] for p in original]
    assert max(abs(a[0] - b[0]) for a, b in zip(moved, original)) < 0.001


# BT.709 limited, BT.601 full, BT.601 limited, no tags at all
@pytest.mark.parametrize("name", ["av.mp4", "full.mp4", "rot.mp4", "untagged.mkv"])
def test_colour_round_trip_uses_the_source_matrix_and_range(clips, tmp_path, name):
    """Identity model + lossless encode: what is left is the YUV->RGB->YUV round trip. A wrong matrix
    (BT.601 for BT.709) measured Y 27 dB, a wrong range 30 dB. The right ones gave ~46 dB while
    reading rounded down, and now give Y 67-72, U/V 51-74 dB (chroma repeated, then averaged back)."""
    src, _ = clips[name]
    out = tmp_path / "lossless.mp4"
    identity(src, out, crf=0)
    a, b = yuv_planes(src), yuv_planes(out)
    assert len(a) == len(b)
    y, u, v = (min(psnr(fa[k], fb[k]) for fa, fb in zip(a, b)) for k in range(3))
    assert y > 60 and u > 48 and v > 48, (y, u, v)


def test_10bit_stays_10bit_through_16bit_rgb(clips, tmp_path):
    src, _ = clips["10bit.mp4"]
    results = {}
    for wide in (True, False):
        backend = IdentityBackend(uint16=wide)
        out = tmp_path / f"10bit-{wide}.mkv"
        identity(src, out, codec="ffv1", backend=backend)
        assert backend.dtypes == {np.dtype(np.uint16) if wide else np.dtype(np.uint8)}
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
        a, b = yuv_planes(src), yuv_planes(out)
        results[wide] = min(psnr(fa[0], fb[0], 1023) for fa, fb in zip(a, b))
    # 16-bit RGB keeps the luma that an 8-bit RGB detour rounds away (lossless FFV1, measured 74 vs 61 dB).
    assert results[True] > 68 and results[True] > results[False] + 8


def test_pix_fmt_and_codec_options(clips, tmp_path):
    src, pts = clips["10bit.mp4"]
    out = tmp_path / "8bit.mkv"
    identity(src, out, pix_fmt="yuv420p", codec="libx265", preset="ultrafast", crf=30)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.pix_fmt) == ("hevc", "yuv420p")
    assert len(video_pts(out)) == len(pts)


@pytest.mark.parametrize("suffix,resume", [(".mp4", True), (".mov", False), (".mkv", True)])
def test_hevc_in_mp4_and_mov_is_tagged_hvc1_for_apple_players(clips, tmp_path, suffix, resume):
    """FFmpeg's own tag, hev1, makes QuickTime, Safari and iPhones refuse the file; Matroska has no such tag."""
    src, pts = clips["av.mp4"]
    out = tmp_path / f"hevc{suffix}"
    identity(src, out, codec="libx265", preset="ultrafast", resume=resume)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.codec_tag.strip("\x00")) == ("hevc", "hvc1" if suffix != ".mkv" else "")
        assert sum(1 for _ in c.decode(video=0)) == len(pts)


def _options_of(encoder: str) -> set[str]:
    out = io.BytesIO()
    out.name = "x.mp4"
    with av.open(out, "w", format="mp4") as c:
        opts = c.add_stream(encoder, rate=25).codec_context.supported_options
        return {o.name for o in (*opts.generic, *opts.private)}


@pytest.mark.parametrize("encoder", ["h264_nvenc", "hevc_nvenc", "av1_nvenc"])
def test_nvenc_gets_constant_quality_not_its_2_mbps_default(encoder):
    """Every option set is one this FFmpeg's encoder has (an unknown one would fail only on a GPU)."""
    if encoder not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {encoder}")
    supported = _options_of(encoder)
    options = constant_quality(encoder, supported, DEFAULT_CRF[encoder])
    assert options == {"rc": "vbr", "cq": str(DEFAULT_CRF[encoder]), "b": "0"} and set(options) <= supported
    assert constant_quality("libx264", _options_of("libx264"), 17.5) == {"crf": "17.5"}
    with pytest.raises(VdeblurError, match="no crf option"):
        constant_quality("ffv1", _options_of("ffv1"), 10)


def test_10bit_into_nvenc_is_p010_not_8bit(clips):
    if "hevc_nvenc" not in av.codecs_available:
        pytest.skip("this FFmpeg has no hevc_nvenc")
    reader = VideoReader(clips["10bit.mp4"][0])
    try:
        assert choose_pix_fmt(av.Codec("hevc_nvenc", "w"), reader.info, None) == "p010le"
    finally:
        reader.close()


def test_a_hardware_encoder_without_its_hardware_is_one_line_naming_it(clips, tmp_path):
    if "h264_nvenc" not in av.codecs_available:
        pytest.skip("this FFmpeg has no h264_nvenc")
    src, pts = clips["av.mp4"]
    out = tmp_path / "nv.mp4"
    try:
        identity(src, out, codec="h264_nvenc")
    except VdeblurError as e:   # no NVENC here: say what it needs, leave nothing behind
        assert "needs an NVIDIA GPU with NVENC" in str(e) and "\n" not in str(e), e
        assert list(tmp_path.iterdir()) == []
    else:   # a machine with NVENC: the file is whole
        assert video_pts(out) == pts
    assert hardware_needed(av.Codec("h264_nvenc", "w")) and hardware_needed(av.Codec("libx264", "w")) is None


def test_start_and_duration_select_a_part_starting_at_zero(clips, tmp_path):
    src, pts = clips["long.mp4"]    # 25 frames at 25 fps + audio
    out = tmp_path / "part.mp4"
    report = identity(src, out, start=0.4, duration=0.4)
    got = video_pts(out)
    assert report.frames == len(got) == 10
    assert got[0] == 0 and np.all(np.diff(got) == pts[1] - pts[0])
    audio = packets(out, "audio")
    assert audio and 0 <= audio[0][0] < 0.05 and audio[-1][0] < 0.4
    with av.open(str(out)) as c:   # chapters clipped to the part and shifted with it
        assert [(float(ch["start"] * ch["time_base"]), float(ch["end"] * ch["time_base"]), ch["metadata"]["title"])
                for ch in c.chapters()] == [(0.0, 0.2, "one"), (0.2, 0.4, "two")]


@pytest.mark.parametrize("suffix", [".ts", ".mp4"])
def test_start_and_duration_count_from_the_files_start(tmp_path, suffix):
    """An MPEG-TS starts at 1.4 s or later, and --start 0.12 took the first 0.12 s of its timeline,
    before any frame (0.88 s of nothing at the head), as FFmpeg's -ss would not."""
    src = tmp_path / f"late{suffix}"
    pictures = [pattern(i, 48, 64) for i in range(12)]
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"bf": "2", "g": "4"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i, p in enumerate(pictures):
            f = av.VideoFrame.from_ndarray(p, format="rgb24")
            f.pts, f.time_base = 25 + i, Fraction(1, 25)   # from 1.0 s
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    out = tmp_path / "part.mkv"
    report = identity(src, out, start=0.12, duration=0.12, codec="ffv1")
    with av.open(str(out)) as c:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert report.frames == len(frames) == 3
    assert [round(t, 2) for t, _ in frames] == [0.0, 0.04, 0.08]
    for k, (_, got) in enumerate(frames):   # frames 3-5 of the file
        assert max(range(12), key=lambda i: psnr(got, pictures[i])) == 3 + k
    with pytest.raises(VdeblurError, match=r"between 0\.3 and 0\.31 s"):   # said on the same clock
        identity(src, tmp_path / "none.mkv", start=0.3, duration=0.01)


def test_chapters_kept(clips, tmp_path):
    src, _ = clips["long.mp4"]
    out = tmp_path / "chapters.mkv"
    identity(src, out)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        titles = [[ch["metadata"]["title"] for ch in c.chapters()] for c in (a, b)]
        assert titles == [["one", "two"]] * 2


def test_reader_reports_source_facts(clips):
    src, pts = clips["rot.mp4"]
    reader = VideoReader(src)
    try:
        info = reader.info
        assert (info.width, info.height, info.bit_depth, info.frames) == (130, 74, 8, len(pts))
        assert info.display_matrix is not None and info.sample_aspect_ratio == Fraction(4, 3)
        assert reader.rgb_format == "rgb24"
    finally:
        reader.close()


def _damage(src, dst, at: float, span: int = 3000):
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    start = int(len(data) * at)
    for k in range(start, start + span, 7):
        data[k] = int(rng.integers(0, 256))
    dst.write_bytes(bytes(data))


def test_damaged_and_truncated_streams_are_counted_not_fatal(tmp_path):
    src = tmp_path / "src.mkv"
    make_video(src, frames=30, width=128, height=96, audio=True)
    damaged, truncated = tmp_path / "damaged.mkv", tmp_path / "truncated.mkv"
    _damage(src, damaged, 0.4)
    truncated.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])

    report = identity(damaged, tmp_path / "d.mkv")
    assert 20 < report.frames <= 30
    assert any("damaged input" in w for w in report.warnings())
    report = identity(truncated, tmp_path / "t.mkv")
    assert report.frames < 25 and any("truncated" in w for w in report.warnings())


def test_variable_frame_rate_in_matroska_is_not_taken_for_truncation(tmp_path):
    """Matroska counts no frames, and length x nominal rate overestimates VFR: 12 frames "announced
    about 21" was a false alarm. Times are compared instead."""
    src = tmp_path / "vfr.mkv"
    make_video(src, frames=12, vfr=True)
    report = identity(src, tmp_path / "out.mkv")
    assert report.frames == 12 and report.expected_frames > 12 and not report.frames_counted
    assert report.warnings() == []


def test_matroska_announcing_its_time_base_as_frame_rate_gets_the_frames_own_rate(tmp_path):
    """An MP4 remuxed into Matroska by a tool that copies the codec's time base (1/12800 s) as the frame
    duration announces 12800 fps. SVT-AV1 refused it (at most 240 fps), and AVI wrote a frame per
    1/12800 s tick. The rate FFmpeg guesses from the timestamps (25) is taken instead."""
    mp4, src = tmp_path / "in.mp4", tmp_path / "remuxed.mkv"
    make_video(mp4, frames=10)
    with av.open(str(mp4)) as i, av.open(str(src), "w") as o:
        t = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(video=0):
            if packet.dts is not None:
                packet.stream = t
                o.mux(packet)
    with av.open(str(src)) as c:
        assert c.streams.video[0].average_rate == 12800 and c.streams.video[0].guessed_rate == 25
    reader = VideoReader(str(src))
    assert reader.info.rate == 25
    reader.close()
    for suffix in (".webm", ".avi"):
        report = identity(src, tmp_path / f"out{suffix}")
        assert report.frames == 10 and report.warnings() == [], suffix
        assert "10 frames at the input's timestamps" in report.verified


def _avi_with_gaps(path, pictures_at):
    """An AVI whose muxer fills each timestamp gap with empty chunks, as capture cards write dropped frames."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("mjpeg", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuvj420p"
        for t in pictures_at:
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 6 * t % 256, np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 25)
            c.mux(v.encode(f))
        c.mux(v.encode(None))


def test_avi_empty_chunks_are_held_frames_not_truncation(tmp_path):
    """The header counts the empty chunks (12 here) that the demuxer drops: "ended after 8 frames but
    announced 12 (truncated file?)" was a false alarm. A really cut AVI still warns."""
    src = tmp_path / "gaps.avi"
    _avi_with_gaps(src, [0, 1, 2, 5, 6, 9, 10, 11])
    with av.open(str(src)) as c:
        assert c.streams.video[0].frames == 12
    out = tmp_path / "gaps.mp4"
    report = identity(src, out)
    assert report.frames == 8 and report.frames_counted and report.warnings() == []
    assert video_pts(out) == [t * video_pts(out)[1] for t in (0, 1, 2, 5, 6, 9, 10, 11)]   # held as long as before

    cut = tmp_path / "cut.avi"
    _avi_with_gaps(src, range(40))
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    report = identity(cut, tmp_path / "cut.mp4")
    assert report.frames < 30 and any("truncated" in w for w in report.warnings())


@pytest.mark.parametrize("codec,suffix", [("libx264", ".avi"), ("mpeg2video", ".mkv"), ("mpeg2video", ".mpg"),
                                          ("mpeg2video", ".ts"), ("libx264", ".mxf")])
def test_containers_and_encoders_that_count_frames_get_the_input_s_times(clips, tmp_path, codec, suffix):
    """AVI stores a frame per tick of 1/rate and MPEG-2 takes only standard rates: frames written in the
    source's 1/12800 units came out at 0.042, 0.083, 0.085 s (AVI) or all at 0.021 s (MPEG-2 segments)."""
    src, pts = clips["long.mp4"]   # 25 fps with AAC
    out = tmp_path / f"o{suffix}"
    try:
        report = identity(src, out, codec=codec)
    except VdeblurError as e:
        if suffix != ".mxf":
            raise
        pytest.skip(f"MXF takes H.264 only in some FFmpeg builds: {e}")
    assert report.verify_problems == [] and report.verified[0].startswith(f"{len(pts)} frames at the input's timestamps")
    with av.open(str(src)) as a, av.open(str(out)) as b:
        times = [sorted(float(f.time) for f in c.decode(video=0)) for c in (a, b)]
    shift = times[1][0] - times[0][0]   # MPEG-PS and -TS start later, the whole file alike
    assert [t + shift for t in times[0]] == pytest.approx(times[1], abs=1e-3)
    if suffix in (".ts", ".avi", ".mkv"):   # AAC fits these
        assert "#1 audio aac" in report.copied_streams
    if suffix == ".mpg":   # MPEG-PS does not: DVD's AC-3, checked in sync on read-back
        assert report.copied_streams == ["#1 audio aac re-encoded as ac3 448k (aac cannot be stored in .mpg)"]
        assert "#1 audio aac: re-encoded, in sync and as long as the input's" in report.verified


@pytest.mark.parametrize("suffix", [".m4v", ".3gp", ".mov"])
def test_the_mov_family_keeps_variable_frame_rate_though_its_muxers_do_not_all_say_so(clips, tmp_path, suffix):
    """FFmpeg flags only its mp4 and mov muxers as timing each frame: .m4v (the ipod muxer) was
    written at a fixed rate and lost a VFR source's timestamps."""
    src, pts = clips["vfr.mp4"]
    report = identity(src, tmp_path / f"o{suffix}")
    assert report.verify_problems == [] and report.verified[0] == f"{len(pts)} frames at the input's timestamps"


def test_dnxhd_is_written_as_dnxhr_at_any_size_and_10_bit_stays_10_bit(clips, tmp_path):
    """DNxHD's own default profile takes only broadcast sizes: "cannot start writing (Invalid argument)"."""
    for pix_fmt, written, profile in (("yuv420p", "yuv422p", "DNXHR HQ"), ("yuv420p10le", "yuv422p10le", "DNXHR HQX")):
        src = tmp_path / f"{pix_fmt}.mp4"
        make_video(src, width=320, height=180, frames=3, pix_fmt=pix_fmt)
        out = tmp_path / f"{pix_fmt}.mov"
        assert identity(src, out, codec="dnxhd", backend=IdentityBackend(uint16=True)).frames == 3
        with av.open(str(out)) as c:
            cc = c.streams.video[0].codec_context
            assert (cc.name, cc.pix_fmt, cc.profile) == ("dnxhd", written, profile)
    # Untagged source: DNxHR's decoder says BT.709, so that is what the pixels are converted with;
    # Ut Video says BT.601, which is what "unspecified" was converted with anyway.
    src = tmp_path / "untagged.mkv"
    make_video(src, width=320, height=180, frames=2, untagged=True)
    for codec, suffix, matrix in (("dnxhd", ".mov", 1), ("utvideo", ".avi", 5)):
        report = identity(src, tmp_path / f"untagged-{codec}{suffix}", codec=codec)
        assert report.verify_problems == [], (codec, report.verify_problems)
        with av.open(str(tmp_path / f"untagged-{codec}{suffix}")) as c:
            assert next(c.decode(video=0)).colorspace == matrix
    with pytest.raises(VdeblurError, match="DNxHR takes frames of at least 256x120, not 64x48"):
        identity(clips["av.mp4"][0], tmp_path / "small.mov", codec="dnxhd")


def test_elementary_stream_without_timestamps_gets_its_frame_rate(tmp_path):
    src = tmp_path / "raw.h264"
    make_video(src, frames=10, rate=25)
    out = tmp_path / "raw.mp4"
    assert identity(src, out).frames == 10
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.average_rate == 25 and [float(f.time) for f in c.decode(v)] == pytest.approx([i / 25 for i in range(10)])


def test_second_video_stream_is_copied_untouched(tmp_path):
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as c:
        main, other = c.add_stream("libx264", rate=25), c.add_stream("libx264", rate=25)
        main.width, main.height, other.width, other.height = 64, 48, 32, 32
        for i in range(5):
            for s in (main, other):
                f = av.VideoFrame.from_ndarray(np.full((s.height, s.width, 3), 10 * i, np.uint8), format="rgb24")
                f.pts = i
                c.mux(s.encode(f))
        c.mux(main.encode(None))
        c.mux(other.encode(None))
    out = tmp_path / "out.mkv"
    report = identity(src, out)
    assert report.frames == 5 and report.copied_streams == ["#1 video h264"]

    def second(path):
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(video=1) if p.size]
    assert second(out) == second(src) and len(second(src)) == 5


def test_video_starting_late_keeps_its_offset_against_audio(tmp_path):
    src = tmp_path / "late.mp4"
    tb = Fraction(1, 90000)
    with av.open(str(src), "w") as c:
        v, a = c.add_stream("libx264", rate=25), c.add_stream("aac", rate=48000)
        v.width, v.height = 64, 48
        v.codec_context.time_base = v.time_base = tb
        for i in range(10):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = 45000 + 3600 * i, tb   # video starts at 0.5 s, audio at 0
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        for k in range(30):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 48000, 1024 * k
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    out = tmp_path / "out.mp4"
    identity(src, out)

    def times(path):
        with av.open(str(path)) as c:
            return [float(f.time) for f in c.decode(video=0)]
    assert times(out) == times(src) and times(src)[0] == 0.5
    assert packets(out, "audio") == packets(src, "audio")


def test_webm_gets_an_encoder_it_takes_and_a_mismatch_is_one_line(tmp_path, capsys):
    from vdeblur.cli import main

    src = tmp_path / "in.mp4"
    make_video(src, frames=3)
    out = tmp_path / "out.webm"
    assert main(["deblur", str(src), "-o", str(out), "-q", "--backend", "torch", "--device", "cpu"]) == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name in ("libdav1d", "av1")   # libsvtav1 wrote it
        assert len(list(c.decode(video=0))) == 3
    gif = tmp_path / "out.gif"
    assert main(["deblur", str(src), "-o", str(tmp_path / "x.webm"), "--codec", "libx264"]) == 1
    err = capsys.readouterr().err
    assert err == (f"vdeblur: error: {tmp_path / 'x.webm'}: a .webm file cannot hold libx264 video; choose another "
                   f"--codec (e.g. libsvtav1) or output suffix\n")
    assert main(["deblur", str(src), "-o", str(gif)]) == 1
    assert "vdeblur does not write GIF (256 colours would undo the deblurring)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.webm"]


def test_interlaced_input_is_named_before_the_first_frame(tmp_path):
    from vdeblur.pipeline import DEINTERLACING

    src = tmp_path / "tv.mp4"   # too short for idet to overrule the flags
    make_video(src, width=128, height=96, frames=3, options={"preset": "ultrafast", "x264-params": "interlaced=1"})
    notes = []
    deblur_video(src, tmp_path / "out.mp4", backend=IdentityBackend(), notify=notes.append)
    assert notes == [DEINTERLACING.format(found="")]
    notes.clear()
    progressive = tmp_path / "p.mp4"
    make_video(progressive, frames=3)
    report = deblur_video(progressive, tmp_path / "out2.mp4", backend=IdentityBackend(), notify=notes.append)
    assert notes == [] and report.verified[0] == "3 frames at the input's timestamps"


def test_a_stream_that_changes_size_is_scaled_to_the_first_size_and_said(tmp_path):
    a, b, joined = tmp_path / "a.h264", tmp_path / "b.h264", tmp_path / "ab.h264"
    make_video(a, width=64, height=48, frames=3)
    make_video(b, width=96, height=64, frames=3)
    joined.write_bytes(a.read_bytes() + b.read_bytes())   # a new SPS mid-stream, as concatenated clips have
    out = tmp_path / "out.mp4"
    report = deblur_video(joined, out, backend=IdentityBackend())
    with av.open(str(out)) as c:
        assert [(f.width, f.height) for f in c.decode(video=0)] == [(64, 48)] * 6
    assert report.warnings() == ["the input changes size mid-stream (96x64 from frame 3): 3 frame(s) were scaled to "
                                 "64x48, the first frame's size, which stretches them"]


def test_a_phones_location_and_make_survive(tmp_path):
    src = tmp_path / "phone.mov"
    tags = {"com.apple.quicktime.location.ISO6709": "+48.8584+002.2945/", "com.apple.quicktime.make": "Apple",
            "com.apple.quicktime.model": "iPhone 15"}
    with av.open(str(src), "w", container_options={"movflags": "use_metadata_tags"}) as c:
        c.metadata.update(tags)
        s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode())
    for suffix in (".mov", ".mp4"):
        out = tmp_path / f"out{suffix}"
        deblur_video(src, out, backend=IdentityBackend())
        with av.open(str(out)) as c:
            assert {k: c.metadata.get(k) for k in tags} == tags, suffix


def test_encoders_do_not_fill_the_terminal(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "in.mp4"
    make_video(src, width=64, height=48, frames=2)
    env = {k: v for k, v in __import__("os").environ.items() if k != "SVT_LOG"}
    for out, extra in ((tmp_path / "o.webm", []), (tmp_path / "o.mkv", ["--codec", "libx265"])):
        run = subprocess.run([sys.executable, "-m", "vdeblur", "deblur", str(src), "-o", str(out), "-q", *extra],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0 and run.stderr == "", run.stderr[-3000:]


def test_audio_a_container_cannot_hold_is_re_encoded_not_lost(tmp_path):
    """AAC (every phone's audio) into .webm, which holds only Opus and Vorbis: Opus at 192k, same length."""
    src = tmp_path / "phone.mp4"
    make_video(src, width=64, height=48, frames=25, audio=True, subtitles=True)
    for out, part in ((tmp_path / "out.webm", {}), (tmp_path / "part.webm", dict(start=0.2, duration=0.6))):
        report = deblur_video(src, out, backend=IdentityBackend(), **part)
        assert report.copied_streams == ["#1 audio aac re-encoded as libopus 192k (aac cannot be stored in .webm)",
                                         "#2 subtitle mov_text converted to webvtt (mov_text cannot be stored in .webm)"]
        assert "#1 audio aac: re-encoded, in sync and as long as the input's" in report.verified
        assert report.skipped_streams == []
        assert not report.verify_problems
        with av.open(str(src)) as a, av.open(str(out)) as b:
            assert b.streams.audio[0].codec_context.name == "opus"
            seconds = [sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].sample_rate for c in (a, b)]
        expected = part.get("duration", seconds[0])
        assert abs(seconds[1] - expected) < 0.05, (seconds, part)


def _mux_grey_frames(out, video, count):
    """``count`` flat frames, each brighter, at 25 fps into H.264 ``video`` of ``out`` (64x48)."""
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = i, Fraction(1, 25)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))


def test_a_cameras_timecode_track_track_names_and_dispositions_come_through(tmp_path):
    """iPhone and camera .mov files carry a timecode (tmcd) track: it was reported as an unknown
    stream not copied, while its time lives on as the video's tag. Track names ("Commentary") read
    back as QuickTime's "name" and were lost; Matroska dropped the video's default flag."""
    src = tmp_path / "camera.mov"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.metadata["timecode"] = "01:02:03:04"
        audio = out.add_stream("aac", rate=48000, layout="mono")
        audio.metadata.update(language="fra", title="Commentary")
        _mux_grey_frames(out, video, 5)
        for k in range(5):
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 48000, k * 1024
            out.mux(audio.encode(sound))
        out.mux(audio.encode(None))
    with av.open(str(src)) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "data"]   # the muxer added the tmcd track
    for suffix, title in ((".mov", "name"), (".mkv", "title")):
        out = tmp_path / f"out{suffix}"
        report = identity(src, out)
        assert report.copied_streams == ["#1 audio aac [fra]", "timecode 01:02:03:04 (rewritten from the video's tag)"]
        assert report.warnings() == []
        with av.open(str(out)) as c:
            video, audio = c.streams.video[0], c.streams.audio[0]
            assert video.metadata.get("timecode", video.metadata.get("TIMECODE")) == "01:02:03:04"
            assert audio.metadata.get(title) == "Commentary"
            assert video.disposition & av.stream.Disposition.default


def _clip_with_audio(path, codec):
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(codec, rate=48000, layout="stereo")
        _mux_grey_frames(out, video, 5)
        size, fmt = audio.codec_context.frame_size or 1024, audio.codec_context.format.name
        dtype = np.int16 if fmt.startswith("s16") else np.float32
        for k in range(10):
            samples = np.zeros((2, size) if fmt.endswith("p") else (1, 2 * size), dtype)
            sound = av.AudioFrame.from_ndarray(samples, format=fmt, layout="stereo")
            sound.sample_rate, sound.pts = 48000, k * size
            out.mux(audio.encode(sound))
        out.mux(audio.encode(None))


@pytest.mark.parametrize("codec", ["libopus", "flac"])
def test_audio_a_muxer_lists_but_refuses_is_re_encoded(tmp_path, codec):
    """QuickTime's codec table names Opus and FLAC, but its muxer refuses them in .mov: the run used to
    fail at the very end, after every frame was deblurred. Now a trial header finds out first. FLAC's
    100 ms packets once made the read-back say the AAC copy ran 107 ms long."""
    src = tmp_path / "in.mkv"
    _clip_with_audio(src, codec)
    report = identity(src, tmp_path / "out.mov")
    name = "opus" if codec == "libopus" else "flac"
    assert report.copied_streams == [f"#1 audio {name} re-encoded as aac 256k ({name} cannot be stored in .mov)"]
    assert report.verify_problems == [] and f"#1 audio {name}: re-encoded, in sync and as long as the input's" in report.verified
    assert identity(src, tmp_path / "out.mp4").copied_streams == [f"#1 audio {name}"]   # MP4 takes both


def test_a_header_the_muxer_refuses_fails_before_the_first_frame_in_a_resumable_run(tmp_path, monkeypatch):
    from vdeblur.video import VideoWriter

    src = tmp_path / "in.mkv"
    _clip_with_audio(src, "flac")
    monkeypatch.setattr(VideoWriter, "_header_takes", lambda self, stream: True)   # a muxer that says yes, then no
    backend = IdentityBackend()
    with pytest.raises(VdeblurError, match="cannot start writing"):
        deblur_video(src, tmp_path / "out.mov", backend=backend, resume=True)
    assert backend.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_styled_ass_subtitles_keep_their_words_and_italics_in_webvtt(tmp_path):
    src = tmp_path / "styled.mkv"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        header = av.CodecContext.create("subrip", "r")
        header.open()   # a text decoder makes the default ASS header
        subtitles = out.add_stream("ass")
        subtitles.codec_context.subtitle_header = header.subtitle_header
        out.start_encoding()
        _mux_grey_frames(out, video, 5)
        lines = [b"0,0,Default,,0,0,0,,{\\i1}hello{\\i0} there", b"1,0,Default,,0,0,0,,line one\\Nline two"]
        for k, line in enumerate(lines):
            packet = subtitles.codec_context.encode_subtitle(av.subtitles.subtitle.SubtitleSet.create(line, 0, 80, 0))
            packet.stream, packet.time_base = subtitles, Fraction(1, 1000)
            packet.pts = packet.dts = 80 * k
            packet.duration = 80
            out.mux(packet)
    report = identity(src, tmp_path / "out.webm")
    assert report.copied_streams == ["#1 subtitle ssa converted to webvtt (ssa cannot be stored in .webm)"]
    assert not report.verify_problems
    assert packets(tmp_path / "out.webm", "subtitle") == [(0.0, 0.08, b"<i>hello</i> there"),
                                                          (0.08, 0.08, b"line one\nline two")]


def test_an_encoder_s_garbage_dts_is_repaired_before_the_muxer_sees_it(tmp_path):
    """libx265 gives about one in five encodes of exactly two frames a DTS 1e17 off its PTS; a resumable
    run's last segment can hold two frames, and the final mux failed ("writing failed") after all the work."""
    from types import SimpleNamespace

    from vdeblur.video import VideoWriter

    src = tmp_path / "in.mp4"
    make_video(src, frames=2)
    reader = VideoReader(str(src))
    writer = VideoWriter(str(tmp_path / "out.mkv"), reader, codec="libx265")
    packets = []
    for pts, dts in ((0, 8608480567731124088), (512, 512 - 1024), (1024, 2048)):
        packet = av.Packet(b"\x00")
        packet.pts, packet.dts, packet.time_base = pts, dts, Fraction(1, 12800)
        packets.append(packet)
    writer.video = SimpleNamespace(encode=lambda frame: packets)
    assert [(p.pts, p.dts) for p in writer._encode(None)] == [(0, 0), (512, -512), (1024, 1024)]
    writer.abort()
    reader.close()
    for k in range(6):   # the real thing: without the repair, all six pass about one time in four
        out = tmp_path / f"two{k}.mkv"
        report = identity(src, out, codec="libx265")
        assert report.frames == 2 and report.warnings() == []


def test_crf_is_checked_against_the_encoders_range():
    from vdeblur.video import check_crf

    x264 = _avoptions("libx264")
    check_crf("libx264", x264, 0)
    check_crf("libx264", x264, -12, bit_depth=10)   # x264's scale reaches below 0 at 10 bits
    for crf, depth in ((-1, 8), (51.5, 8), (-13, 10)):
        with pytest.raises(VdeblurError, match=f"--crf {crf:g}: libx264 takes"):
            check_crf("libx264", x264, crf, bit_depth=depth)
    check_crf("libsvtav1", _avoptions("libsvtav1"), 63)
    check_crf("ffv1", _avoptions("ffv1"), 1e9)   # no crf option: constant_quality says so


def _avoptions(name):
    import av

    opts = av.codec.CodecContext.create(name, "w").supported_options
    return (*opts.generic, *opts.private)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_a_file_that_cannot_be_made_is_named_without_encoder_hints(tmp_path, capsys):
    from vdeblur.cli import main

    src = tmp_path / "in.mp4"
    make_video(src, frames=2)
    assert main(["deblur", str(src), "-o", "/proc/vdeblur-test.mp4", "--no-resume", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vdeblur: error: /proc/vdeblur-test.mp4: cannot write (") and "crf" not in err, err


def test_a_pixel_format_the_encoder_lacks_is_said_before_the_first_frame(tmp_path):
    from vdeblur.video import pix_fmt_loss

    assert pix_fmt_loss("yuv422p10le", "yuv420p", "libsvtav1") == (
        "libsvtav1 does not take the source's yuv422p10le, so it is written as yuv420p: 4:2:2 chroma becomes 4:2:0 "
        "and 10-bit becomes 8-bit; --pix-fmt or another --codec (ffv1, prores_ks) keeps more")
    for same in (("yuv420p", "yuv420p"), ("yuvj420p", "yuv420p"), ("rgb24", "yuv420p"), ("gray", "yuv420p"),
                 ("yuv420p", "yuv444p")):
        assert pix_fmt_loss(*same, "libx264") is None
    src = tmp_path / "in.mkv"
    make_video(src, width=64, height=48, frames=2, codec="ffv1", pix_fmt="yuv444p", options={})
    notes = []
    deblur_video(src, tmp_path / "o.mkv", backend=IdentityBackend(), codec="mpeg2video", notify=notes.append)
    assert notes == [pix_fmt_loss("yuv444p", "yuv420p", "mpeg2video")]
    notes.clear()
    deblur_video(src, tmp_path / "p.mkv", backend=IdentityBackend(), codec="mpeg2video", pix_fmt="yuv420p",
                 notify=notes.append)
    assert notes == []   # asked for


@pytest.mark.parametrize("name", ["subs.mkv", "subs.mp4"])   # SubRip and mov_text
def test_a_subtitle_on_screen_where_the_part_starts_is_kept_from_the_start(tmp_path, name):
    src, out = tmp_path / name, tmp_path / f"part-{name}"
    make_video(src, frames=6, subtitles=True, audio=True)   # "hello" 0-0.1 s, "world" 0.1-0.2 s
    report = deblur_video(src, out, backend=IdentityBackend(), start=0.04)
    cues = packets(out, "subtitle")
    assert [(round(t, 3), round(d, 3)) for t, d, _ in cues] == [(0.0, 0.06), (0.06, 0.1)]
    assert [data[-5:] for _, _, data in cues] == [b"hello", b"world"]   # the text unchanged
    assert report.warnings() == [] and any("2 packets bit-exact" in line for line in report.verified), report.verified


@pytest.mark.parametrize("name", ["part.mkv", "part.mp4"])
def test_two_subtitles_on_screen_where_the_part_starts_are_both_kept(tmp_path, name):
    """Both would begin at the start; MP4 drops a packet with its predecessor's dts, so the second begins a tick
    later. (An MP4 cannot hold cues that overlap, so the source is Matroska's SubRip.)"""
    src, out = tmp_path / "subs.mkv", tmp_path / name
    make_video(src, frames=6, subtitles=True, cues=((0, 200, "first"), (20, 180, "second"), (150, 50, "third")))
    report = deblur_video(src, out, backend=IdentityBackend(), start=0.1)
    cues = packets(out, "subtitle")
    assert [data.lstrip(b"\x00\x05\x06") for _, _, data in cues] == [b"first", b"second", b"third"]
    timing = [(0.0, 0.1), (0.001, 0.099), (0.05, 0.05)]
    if name.endswith(".mp4"):   # an MP4 text track shows one cue at a time: each ends where the next begins
        timing = [(0.0, 0.001), (0.001, 0.049), (0.05, 0.05)]
    assert [(round(t, 3), round(d, 3)) for t, d, _ in cues] == timing
    assert report.warnings() == [] and any(line.startswith("#1 subtitle") for line in report.verified), report.verified


@pytest.mark.parametrize("start, duration, frames", [(0.1, None, 5), (0.1, 0.1, 2), (0.0, 0.1, 3), (0.12, 0.08, 2)])
def test_a_part_between_frames_expects_the_frames_it_gets(tmp_path, start, duration, frames):
    """8 frames at 25 fps from 0: --start 0.1 holds 0.12 ... 0.28, five; the estimate said 6 (the span
    counted from 0.1), and 0.1 s from 0 holds three (0, 0.04, 0.08) where rounding 2.5 said 2."""
    make_video(tmp_path / "a.mkv", frames=8)   # Matroska: no frame count, so the span is counted
    reader = VideoReader(tmp_path / "a.mkv", start=start, duration=duration)
    assert reader.info.frames == frames == sum(1 for _ in reader.items())


def test_a_photo_with_a_duration_is_still_one_picture(tmp_path):
    """--duration 0.1 on a photo expected "about 2 frames" (refused for an image output), and 5 s
    expected 125 frames and warned of a truncated file."""
    from PIL import Image

    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "p.png")
    deblur_video(tmp_path / "p.png", tmp_path / "o.png", backend=IdentityBackend(), duration=0.1)
    report = deblur_video(tmp_path / "p.png", tmp_path / "o.mp4", backend=IdentityBackend(), duration=5)
    assert report.frames == report.expected_frames == 1 and report.warnings() == []


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv410p"])
def test_subsampled_8bit_yuv_is_read_rounded_not_darkened(tmp_path, pix_fmt):
    """swscale's fast YUV->RGB path rounds down: flat greys came out up to one code value dark, and
    every 8-bit 4:2:0 picture about 1.1 darker on average. Each level must read as its exact value."""
    levels = [20, 60, 100, 140, 180, 220]
    src = tmp_path / "flat.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 32, 16, pix_fmt
        s.codec_context.colorspace, s.codec_context.color_range = 1, 1   # BT.709, limited
        for y in levels:
            f = av.VideoFrame(32, 16, pix_fmt)
            f.planes[0].update(bytes([y]) * f.planes[0].buffer_size)
            for plane in f.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            f.colorspace, f.color_range = 1, 1
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    reader = VideoReader(str(src))
    try:
        got = [item.image for item in reader.items() if not isinstance(item, av.Packet)]
    finally:
        reader.close()
    want = [round((y - 16) * 255 / 219) for y in levels]
    assert [int(np.median(g)) for g in got] == want
    assert all(np.abs(g.astype(int) - w).max() == 0 for g, w in zip(got, want))


def test_lossless_encoder_keeps_an_rgb_source_rgb(tmp_path):
    """FFV1 lacks rgb24, and an RGB picture fell to yuv420p without a word (29.8 dB 'lossless').
    A lossless encoder takes the nearest format it has: RGB for RGB, no chroma dropped."""
    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(3)]
    src = tmp_path / "rgb.mov"
    with av.open(str(src), "w") as c:
        s = c.add_stream("png", rate=25)
        s.width, s.height, s.pix_fmt = 40, 24, "rgb24"
        for p in pictures:
            c.mux(s.encode(av.VideoFrame.from_ndarray(p, format="rgb24")))
        c.mux(s.encode(None))
    out = tmp_path / "out.mkv"
    identity(src, out, codec="ffv1")
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "bgr0"
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert all(np.array_equal(g, p) for g, p in zip(got, pictures)) and len(got) == 3
    info = lambda fmt, alpha=False: type("Info", (), {"pix_fmt": fmt, "alpha": alpha, "high_bit_depth": False})()  # noqa: E731
    assert choose_pix_fmt(av.Codec("ffv1", "w"), info("pal8"), None) == "bgr0"
    assert choose_pix_fmt(av.Codec("utvideo", "w"), info("rgb24"), None) == "gbrp"
    assert choose_pix_fmt(av.Codec("huffyuv", "w"), info("yuv420p"), None) == "yuv422p"   # chroma kept, not RGB
    assert choose_pix_fmt(av.Codec("ffv1", "w"), info("rgba", True), None) == "bgra"
    assert choose_pix_fmt(av.Codec("libx264", "w"), info("rgb24"), None) == "yuv420p"   # players' format, as before


def test_h264_with_b_frames_in_avi_keeps_every_frame_in_order(tmp_path):
    """AVI has no presentation times: each frame took its packet's, in decode order, so H.264 with
    B-frames (what FFmpeg and vdeblur itself write into .avi) lost frames and shuffled the rest."""
    src = tmp_path / "bf.avi"
    pictures = [pattern(i, 48, 64) for i in range(10)]
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"bf": "2", "crf": "12"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for p in pictures:
            c.mux(s.encode(av.VideoFrame.from_ndarray(p, format="rgb24")))
        c.mux(s.encode(None))
    out = tmp_path / "out.mkv"
    report = identity(src, out, codec="ffv1")
    assert report.frames == 10 and report.warnings() == []
    with av.open(str(out)) as c:
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    times = [t for t, _ in frames]
    assert times == sorted(times) and len(set(times)) == 10
    assert [max(range(10), key=lambda i: psnr(got, pictures[i])) for _, got in frames] == list(range(10))
    for suffix in (".avi", ".wmv"):   # libx264 with B-frames, as vdeblur writes them: they read back whole
        own = tmp_path / f"own{suffix}"
        assert identity(src, own).frames == 10
        report = identity(own, tmp_path / f"again{suffix}.mkv", codec="ffv1")
        assert report.frames == 10 and report.warnings() == []
        with av.open(str(tmp_path / f"again{suffix}.mkv")) as c:
            again = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert [max(range(10), key=lambda i: psnr(got, pictures[i])) for got in again] == list(range(10)), suffix


def test_a_full_range_format_asked_for_reads_back_clean(tmp_path):
    """--pix-fmt yuvj420p always warned "colour range 0 -> 2": it is full range by name."""
    src = tmp_path / "untagged.mp4"
    pts = make_video(src, untagged=True)
    report = identity(src, tmp_path / "out.mp4", pix_fmt="yuvj420p")
    assert report.warnings() == [] and video_pts(tmp_path / "out.mp4") == pts


def test_hdr_written_at_8_bits_is_said_to_band(tmp_path):
    """10-bit PQ into --pix-fmt yuv420p went out as 8-bit PQ without a word (an automatic drop said
    "10-bit becomes 8-bit", a chosen one nothing)."""
    src = tmp_path / "pq.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p10le"
        s.codec_context.color_primaries, s.codec_context.color_trc, s.codec_context.colorspace = 9, 16, 9
        for i in range(2):
            f = av.VideoFrame.from_ndarray(pattern(i, 48, 64, high=True), format="rgb48le").reformat(format="yuv420p10le")
            f.color_primaries, f.color_trc, f.colorspace = 9, 16, 9
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    notes = []
    identity(src, tmp_path / "out.mp4", pix_fmt="yuv420p", notify=notes.append)
    assert any("PQ (HDR10) video written with yuv420p's 8 bits will show banding" in n for n in notes), notes


def test_a_folder_of_y4m_and_hevc_files_gets_encoders_their_suffixes_hold(tmp_path):
    """Each output takes its input's suffix, and the default libx264 fits neither .y4m nor .265."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    make_video(tmp_path / "a.mp4", frames=2)
    with av.open(str(tmp_path / "a.mp4")) as i, av.open(str(folder / "b.y4m"), "w") as o:
        s = o.add_stream("rawvideo", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in i.decode(video=0):
            o.mux(s.encode(f))
        o.mux(s.encode(None))
    kinds = [("b.y4m", "rawvideo")]
    if "libx265" in av.codecs_available:
        make_video(folder / "c.265", frames=2, codec="libx265", options={"x265-params": "log-level=error"})
        kinds.append(("c.265", "hevc"))
    out.mkdir()
    for name, codec in kinds:   # what a folder run does with each: the same name under OUTPUT
        identity(folder / name, out / name)
        with av.open(str(out / name)) as c:
            assert c.streams.video[0].codec_context.name == codec and len(list(c.decode(video=0))) == 2


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p"])
def test_full_range_chroma_is_written_rounded_not_low(tmp_path, pix_fmt):
    """swscale truncates full-range chroma whatever its flags: half of all Cb/Cr values came back 1
    low (mean -0.5), which tinted JPEGs and full-range phone video green. Limited range was exact."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 50, (48, 64, 3)), 0, 255).astype(np.uint8)
    src = tmp_path / "full.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, pix_fmt
        s.codec_context.colorspace, s.codec_context.color_range = 1, 2
        for _ in range(2):
            f = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                format=pix_fmt, dst_colorspace="ITU709", dst_color_range="JPEG")
            f.colorspace, f.color_range = 1, 2
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    out = tmp_path / "out.mkv"
    assert identity(src, out, codec="ffv1").warnings() == []
    a, b = yuv_planes(src)[0], yuv_planes(out)[0]
    assert all(abs(float((y.astype(int) - x).mean())) < 0.05 for x, y in zip(a, b)), [float((y.astype(int) - x).mean()) for x, y in zip(a, b)]
    photo = tmp_path / "p.png"
    av.VideoFrame.from_ndarray(image, format="rgb24").to_image().save(photo)
    identity(photo, tmp_path / "p.jpg")   # JFIF: BT.601 in full range
    with av.open(str(tmp_path / "p.jpg")) as c:
        got = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    assert all(abs(float((got[..., k] - image[..., k]).mean())) < 0.25 for k in range(3))


def test_start_in_a_long_gop_of_an_mpeg_ts_keeps_every_frame(tmp_path):
    """MPEG-TS seeking lands on a packet that is no keyframe: with x264's 10 s GOP, --start 8 lost
    the 2 s before the next keyframe and blamed the file ("truncated?")."""
    src = tmp_path / "long.ts"
    make_video(src, frames=300, options={"x264-params": "keyint=250:min-keyint=250:scenecut=0:bframes=3"})
    out = tmp_path / "part.mkv"
    report = identity(src, out, start=8, duration=1, codec="ffv1")
    assert report.frames == 25 and report.warnings() == []
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    near = {i: pattern(i, 48, 64) for i in range(190, 235)}
    nearest = [max(near, key=lambda i: psnr(f, near[i])) for f in frames]
    assert nearest == list(range(200, 225))   # the frames at 8.00 to 8.96 s


def _late_audio(path, seconds=6, rate=10, late=4.0):
    """Video muxed ``late`` seconds ahead of its audio in file order, as some cameras and cutters write."""
    with av.open(str(path), "w", options={"max_interleave_delta": "1"}) as c:   # no reordering by the muxer
        v = c.add_stream("mpeg4", rate=rate)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=8000)
        a.layout = "mono"
        done = 0

        def audio_until(t):
            nonlocal done
            while done < 8000 * t:
                af = av.AudioFrame.from_ndarray(np.full((1, 800), 100, np.int16), format="s16", layout="mono")
                af.sample_rate, af.pts, af.time_base = 8000, done, Fraction(1, 8000)
                for p in a.encode(af):
                    c.mux_one(p)
                done += 800

        for i in range(seconds * rate):
            f = av.VideoFrame.from_ndarray(pattern(i, 32, 32), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, rate)
            for p in v.encode(f):
                c.mux_one(p)
            audio_until(max(0.0, i / rate - late))
        for p in v.encode(None):
            c.mux_one(p)
        audio_until(seconds)


def test_a_part_keeps_audio_stored_seconds_behind_its_video(tmp_path):
    """The demuxer stopped 2 s past the part's end, before audio written 4 s behind the video."""
    src = _late_audio(tmp_path / "late.mkv") or tmp_path / "late.mkv"
    out = tmp_path / "part.mkv"
    identity(src, out, start=0.5, duration=1.5)
    audio = packets(out, "audio")
    assert len(video_pts(out)) == 15
    assert audio and audio[0][0] < 0.01 and abs(audio[-1][0] + audio[-1][1] - 1.5) < 0.01
