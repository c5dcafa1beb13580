"""A live source whose audio is a second input: the seconds equal those of one input carrying both, the
audio input's end or stall ends the stream after the seconds it covers, and bad audio inputs get one line."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from avs_engine.errors import MediaError, NoAudioError
from avs_engine.io.stream import StreamReader
from avs_engine.io.stream_audio import SampleBuffer

VIDEO = "testsrc=size=160x96:rate=25:duration={d}"
AUDIO = "sine=frequency=440:sample_rate=16000:duration={d}"


def test_two_lavfi_inputs_give_the_seconds_of_one_input_with_both():
    """Both lavfi inputs start at 0: sync by start and by timestamps agree with the single graph."""
    one = StreamReader(f"{VIDEO.format(d=4)}[out0];{AUDIO.format(d=4)}[out1]", input_format="lavfi")
    ref = list(one.seconds())
    assert [s.second for s in ref] == [0, 1, 2, 3]
    for sync in ("start", "timestamps"):
        two = StreamReader(VIDEO.format(d=4), input_format="lavfi", audio_source=AUDIO.format(d=4),
                           audio_format="lavfi", audio_sync=sync)
        assert two.has_audio and two.audio_source == AUDIO.format(d=4)
        got = list(two.seconds())
        two.close()
        assert two.stopped_reason is None
        assert [s.second for s in got] == [0, 1, 2, 3]
        for a, b in zip(ref, got):
            assert np.array_equal(a.frame, b.frame)
            assert a.samples.shape == b.samples.shape == (15600,)
            np.testing.assert_array_equal(a.samples, b.samples)
    one.close()


def test_separate_audio_replaces_the_sources_own_track():
    """A 440 Hz track in the video input, 1 kHz from the audio input: the seconds carry the 1 kHz tone."""
    r = StreamReader(f"{VIDEO.format(d=2)}[out0];sine=frequency=440:sample_rate=16000:duration=2[out1]",
                     input_format="lavfi", audio_source="sine=frequency=1000:sample_rate=16000:duration=2",
                     audio_format="lavfi")
    s = next(iter(r.seconds()))
    r.close()
    peak_hz = np.argmax(np.abs(np.fft.rfft(s.samples))) * 16000 / s.samples.size
    assert abs(peak_hz - 1000) < 5


def test_audio_input_that_ends_early_ends_the_stream_after_its_last_second():
    r = StreamReader(VIDEO.format(d=6), input_format="lavfi", audio_source=AUDIO.format(d=2.5), audio_format="lavfi")
    got = [(s.second, s.samples.size) for s in r.seconds()]
    r.close()
    assert got == [(0, 15600), (1, 15600), (2, 8000)]   # second 2 has the half second of audio there was
    assert r.stopped_reason == f"{AUDIO.format(d=2.5)}: the audio source ended"


def test_video_that_ends_first_still_gets_its_audio():
    r = StreamReader(VIDEO.format(d=3), input_format="lavfi", audio_source=AUDIO.format(d=10), audio_format="lavfi")
    got = [s.second for s in r.seconds()]
    r.close()
    assert got == [0, 1, 2] and r.stopped_reason is None


def test_stalled_audio_input_stops_the_stream():
    """An audio stream that sends its first packets, then nothing (connection kept open)."""
    import io

    import av

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    hold = threading.Event()

    def serve():
        conn, _ = sock.accept()
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as out:
            s = out.add_stream("mp2", rate=16000, layout="mono")
            t = np.arange(16000 * 2) / 16000
            x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fr = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
            fr.sample_rate, fr.pts = 16000, 0
            for p in s.encode(fr):
                out.mux(p)
        data = buf.getvalue()   # about 1.5 s of audio: second 0's [0, 0.975) s whatever the demuxer holds back,
        conn.sendall(data[: len(data) * 3 // 4])   # never all of second 1's [1, 1.975) s; then silence on the wire
        hold.wait(30)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    t0 = time.monotonic()
    r = StreamReader(VIDEO.format(d=8), input_format="lavfi", realtime=True, audio_source=f"tcp://127.0.0.1:{port}",
                     timeout_s=1.5)
    got = [s.second for s in r.seconds()]
    r.close()
    hold.set()
    sock.close()
    assert got in ([0], [0, 1]), got   # second 1, if its frame came before the stall, has the audio there was
    assert r.stopped_reason == f"tcp://127.0.0.1:{port}: the audio source stalled (no data for 1.5 s)"
    assert time.monotonic() - t0 < 8


def test_audio_input_refusals():
    with pytest.raises(NoAudioError, match="the audio source has no audio stream"):
        StreamReader(VIDEO.format(d=2), input_format="lavfi", audio_source=VIDEO.format(d=2), audio_format="lavfi")
    with pytest.raises(MediaError, match="cannot open the audio source"):
        StreamReader(VIDEO.format(d=2), input_format="lavfi", audio_source="tcp://127.0.0.1:9", timeout_s=2)
    with pytest.raises(ValueError, match="audio_sync"):
        StreamReader(VIDEO.format(d=2), input_format="lavfi", audio_source=AUDIO.format(d=2), audio_format="lavfi",
                     audio_sync="wall")


def test_sample_buffer_takes_and_forgets():
    b = SampleBuffer()
    b.extend([np.arange(10, dtype=np.float32)])
    assert b.take(4, 8, 6) is None            # [4, 12) not there yet
    b.extend([np.arange(10, 20, dtype=np.float32)])
    np.testing.assert_array_equal(b.take(4, 8, 6), np.arange(4, 12))
    assert b.base == 6 and b.upto() == 20
    b.end()
    np.testing.assert_array_equal(b.take(16, 8, 20), np.arange(16, 20))   # ended: what there was
    assert b.wait_for(1000, 0.01)


def test_audio_input_that_blocks_without_a_timeout_stops_the_stream(monkeypatch):
    """A device read that never returns (FFmpeg's read timeout does not reach every device): the video seconds
    waiting for their audio stop the stream after timeout_s."""
    from avs_engine.io.stream_audio import AudioInput

    def blocked(self, buffer, origin_s):
        self._stop.wait(30)
        buffer.end()

    monkeypatch.setattr(AudioInput, "_read", blocked)
    t0 = time.monotonic()
    r = StreamReader(VIDEO.format(d=10), input_format="lavfi", realtime=True, audio_source=AUDIO.format(d=10),
                     audio_format="lavfi", timeout_s=1.0)
    got = list(r.seconds())
    r.close()
    assert got == [] and r.stopped_reason == f"{AUDIO.format(d=10)}: the audio source stalled (no data for 1 s)"
    assert time.monotonic() - t0 < 5
