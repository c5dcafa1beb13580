"""Streaming decode of a file's audio track to 16 kHz mono float32.

Each channel is resampled to 16 kHz keeping the input layout (FFmpeg's
swresample, to interleaved ``flt``), then we average the channels ourselves:
mono = mean over all channels (5.1 and 7.1 included, LFE too). FFmpeg's own
stereo->mono downmix would give (L+R)/sqrt(2) instead. Interleaved, not
planar: PyAV 18 miscounts the planes of an 8-channel planar frame and
crashes converting it, while one interleaved plane works for any count.

Timeline: sample 0 is time 0 of the *video* timeline (the video stream's
start time; the audio stream's own start if the file has no video). The
first decoded audio frame's timestamp places the audio on that timeline:
audio starting late is preceded by zeros, audio (e.g. AAC priming samples
with negative timestamps, when the demuxer leaves them in) starting before
time 0 is cut. FFmpeg already drops the AAC encoder delay when the container
says how much it is (MP4 edit list / Matroska codec delay), so a file written
by FFmpeg decodes aligned to within a sample. Later timestamp jumps of more
than 20 ms are honoured (gap -> zeros, overlap -> samples dropped); smaller
jitter (millisecond timestamps in Matroska) is ignored, the samples are taken
as contiguous. A packet the decoder rejects (damaged file) is skipped; the
timestamp jump it leaves is filled with zeros and counted in the file's
``MediaInfo.decode_notes``.
"""

from __future__ import annotations

import os
from typing import Iterator

import av
import numpy as np

from ..errors import MediaError, NoAudioError
from .probe import MediaInfo, check_file, decode_checked, frame_time, open_media

SAMPLE_RATE = 16000
_JUMP = 0.020  # seconds: timestamp discontinuities larger than this are honoured


def no_audio_message(path: str) -> str:
    return f"{path}: no audio track (use --allow-silent to run with silence)"


class Mono16k:
    """Push decoded ``av.AudioFrame``s; get aligned 16 kHz mono float32 chunks out.

    ``origin_s`` is the time (in stream seconds) that becomes sample 0.
    Holds only the resampler's few buffered samples. ``gap_samples`` counts
    the zeros put into timestamp gaps after the first frame.
    """

    def __init__(self, origin_s: float = 0.0):
        self.origin_s = float(origin_s)
        self._resampler = None
        self._key = None
        self._cursor: float | None = None  # 16k-sample position where the next input lands
        self._drop = 0  # output samples still to discard
        self.n_out = 0  # samples emitted so far (= timeline position of the next sample)
        self.gap_samples = 0

    def _emit(self, frames) -> list[np.ndarray]:
        out = []
        for o in frames:
            channels = len(o.layout.channels)
            x = o.to_ndarray().reshape(-1, channels)  # flt, interleaved: [n, C]
            mono = x.astype(np.float32, copy=False).mean(axis=1, dtype=np.float64).astype(np.float32)
            if self._drop:
                k = min(self._drop, mono.shape[0])
                mono = mono[k:]
                self._drop -= k
            if mono.size:
                out.append(mono)
                self.n_out += mono.size
        return out

    def _zeros(self, n: int) -> Iterator[np.ndarray]:
        """``n`` samples of silence, lazily, one second at a time: a damaged timestamp can claim a gap of hours,
        and only the part the caller reads may cost memory."""
        if n <= 0:
            return
        if self._drop:  # pending drops cancel against inserted silence
            k = min(self._drop, n)
            self._drop -= k
            n -= k
        while n > 0:
            k = min(n, SAMPLE_RATE)
            n -= k
            self.n_out += k
            yield np.zeros(k, np.float32)

    def push(self, frame: "av.AudioFrame") -> Iterator[np.ndarray]:
        """Feed one decoded frame; yields zero or more mono chunks ``[n]`` float32 (iterate it to the end
        before the next ``push``; a long timestamp gap comes out as one-second chunks of silence)."""
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            yield from self._flush_resampler()
            self._resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=SAMPLE_RATE)
            self._key = key
        t = frame_time(frame)
        gap = 0
        if t is not None:
            where = (float(t) - self.origin_s) * SAMPLE_RATE
            if self._cursor is None:
                self._cursor = where
                if where >= 0:
                    gap = int(round(where))
                else:
                    self._drop += int(round(-where))
            else:
                jump = where - self._cursor
                if abs(jump) > _JUMP * SAMPLE_RATE:
                    if jump > 0:
                        gap = int(round(jump))
                        self.gap_samples += gap
                    else:
                        self._drop += int(round(-jump))
                    self._cursor = where
        elif self._cursor is None:
            self._cursor = 0.0
        self._cursor += frame.samples * SAMPLE_RATE / frame.sample_rate
        yield from self._zeros(gap)
        yield from self._emit(self._resampler.resample(frame))

    def _flush_resampler(self) -> list[np.ndarray]:
        if self._resampler is None:
            return []
        frames = self._resampler.resample(None)
        self._resampler = None
        return self._emit(frames)

    def finish(self) -> list[np.ndarray]:
        """End of stream: what the resampler still holds."""
        return self._flush_resampler()


def _origin(container) -> float:
    """Time 0 of the video timeline, in seconds."""
    for streams in (container.streams.video, container.streams.audio):
        if streams and streams[0].start_time is not None:
            s = streams[0]
            return float(s.start_time * s.time_base)
    return 0.0


def decode_audio(container, path: str, stream, info: MediaInfo | None = None) -> Iterator["av.AudioFrame"]:
    """Decoded frames of ``stream``, damaged packets skipped (see ``probe.decode_checked``)."""
    return decode_checked(container, stream, path, "audio", info)


def _track_has_packets(path: str) -> bool:
    """Whether the first audio stream exists and holds at least one packet."""
    with open_media(path) as c:
        if not c.streams.audio:
            return False
        a = c.streams.audio[0]
        if int(a.frames or 0) > 0 or len(a.index_entries) > 0:
            return True
        try:
            return any(pkt.size > 0 for pkt in c.demux(a))   # stops at the first real packet
        except av.error.FFmpegError:
            return False


def has_audio(path: str | os.PathLike) -> bool:
    """Whether ``path`` has an audio track with packets (MediaError if it is not readable media)."""
    return _track_has_packets(check_file(path))


def iter_audio_16k(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the audio track as consecutive 16 kHz mono float32 chunks ``[n]``.

    Concatenated, the chunks are the track on the video timeline (sample ``i``
    is time ``i / 16000`` s after the video's start). Chunk sizes vary (a few
    hundred samples). Checks run when called: MediaError for a bad file,
    NoAudioError when there is no audio stream.
    """
    p = check_file(path)
    with open_media(p) as c:
        if not c.streams:
            raise MediaError(f"{p}: no audio or video streams (empty or zero-length media)")
    if not _track_has_packets(p):
        raise NoAudioError(no_audio_message(p))
    return _iter_audio(p)


def _iter_audio(p: str, info: MediaInfo | None = None) -> Iterator[np.ndarray]:
    """The track's 16 kHz mono chunks; what was skipped goes to ``info.decode_notes``."""
    with open_media(p) as c:
        stream = c.streams.audio[0]
        mono = Mono16k(_origin(c))
        frames = decode_audio(c, p, stream, info)
        try:
            for frame in frames:
                yield from mono.push(frame)
            yield from mono.finish()
        finally:
            frames.close()
            if info is not None and mono.gap_samples:
                info.note(f"{mono.gap_samples / SAMPLE_RATE:.2f} s of missing audio inside the track "
                          "replaced by silence")


def read_audio_16k(path: str | os.PathLike, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """Samples ``[round(start_s*16k), round(end_s*16k))`` of the 16 kHz mono track, float32 ``[n]``.

    Decoding stops once ``end_s`` is reached. Not padded: if the track ends
    earlier the result is shorter (possibly empty).
    """
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    i0 = int(round(start_s * SAMPLE_RATE))
    i1 = None if end_s is None else int(round(end_s * SAMPLE_RATE))
    if i1 is not None and i1 <= i0:
        return np.zeros(0, np.float32)
    parts = []
    pos = 0
    it = iter_audio_16k(path)
    try:
        for chunk in it:
            a, b = pos, pos + chunk.size
            pos = b
            if b <= i0:
                continue
            lo = max(i0 - a, 0)
            hi = chunk.size if i1 is None else min(i1 - a, chunk.size)
            if hi > lo:
                parts.append(chunk[lo:hi])
            if i1 is not None and pos >= i1:
                break
    finally:
        it.close()
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


__all__ = ["SAMPLE_RATE", "iter_audio_16k", "read_audio_16k", "Mono16k", "has_audio", "no_audio_message"]
