"""A live source, second by second: a stream URL, a capture device or a file played at its own pace.

FFmpeg (through PyAV) opens what it can: network streams (``rtsp://``,
``rtmp://``, ``srt://``, ``udp://``, ``tcp://``, ``http(s)://`` including HLS
``.m3u8``), capture devices (an input format such as ``v4l2``, ``alsa``,
``pulse``, or ``lavfi`` test sources), or a file. One container is read
once, video and audio demuxed together (a live stream cannot be opened
twice); or the audio comes from a second input (a camera's microphone,
:class:`~avs_engine.io.stream_audio.AudioInput`, read on its own thread, its
clock aligned as ``audio_sync`` says). Each second is handed out as soon as
it is complete: its frame
(sampled as offline: index ``int(l*fps + 15/16*fps)`` of the timeline,
:class:`~avs_engine.io.frames.SecondSampler`) and the first 0.975 s of its
16 kHz mono audio (:class:`~avs_engine.io.audio.Mono16k`). ``ready`` records
when that happened (``time.monotonic()``): latency is measured from there.

Memory stays flat: the sampler keeps one previous frame, the audio buffer
keeps only what the next second needs, and seconds are handed out as they
complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import av
import numpy as np

from ..errors import MediaError, NoAudioError
from .audio import Mono16k
from .frames import SecondSampler, frame_index, set_decoder_threads
from .logmel import EXAMPLE_SAMPLES, SAMPLE_RATE
from .probe import stream_fps
from .stream_audio import SYNC_MODES, AudioInput, SampleBuffer, one_line as _one_line, open_live_input

# Protocols FFmpeg opens as live streams (a URL with one of these schemes switches avs-run to live mode).
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp", "http", "https", "hls")
_TARGETS_AHEAD = 64   # seconds the sampler is told about at a time (it is topped up: no list grows with the stream)


def is_stream_url(source: str) -> bool:
    """Whether ``source`` names a live stream (``scheme://...`` with a scheme of :data:`STREAM_SCHEMES`)."""
    head, sep, _ = str(source).partition("://")
    return bool(sep) and head.lower() in STREAM_SCHEMES


@dataclass
class StreamSecond:
    """One complete second of a live source, starting at ``time_s = second + phase / per_second``.

    With ``per_second = K > 1`` (staggered windows) there are K of them a second, ``phase`` 0..K-1.
    ``frame``: the sampled frame, RGB uint8 ``[H, W, 3]`` (or what ``transform`` made of it);
    ``samples``: float32 ``[n]`` 16 kHz mono from ``time_s`` on, ``n <= 15600`` (shorter only when
    the stream ended inside it); ``ready``: ``time.monotonic()`` when it was complete.
    """

    second: int
    frame: np.ndarray
    samples: np.ndarray
    ready: float
    phase: int = 0
    per_second: int = 1

    @property
    def time_s(self) -> float:
        return self.second + self.phase / self.per_second

    @property
    def tick(self) -> int:
        """Its place in the stream, counting K a second: ``second * K + phase``."""
        return self.second * self.per_second + self.phase


class StreamReader:
    """Reads ``source`` once and yields its :class:`StreamSecond` s (:meth:`seconds`).

    ``input_format``: FFmpeg's input format (``lavfi``, ``v4l2``, ``mpegts``...; None: guessed);
    ``options``: FFmpeg options for the input (``{"rtsp_transport": "tcp"}``, ``{"listen": "1"}``...);
    ``realtime``: pace reading by the media's timestamps (a file played as if live); ``timeout_s``:
    how long opening, and then each read, may wait before the source counts as stopped;
    ``transform``: applied to each sampled RGB frame (e.g. the model's squash); ``allow_silent``:
    a source without audio runs on silence. ``per_second``: K > 1 hands out K staggered seconds a
    second (starting every 1/K s; each with its own frame and audio), for K masks a second.

    ``audio_source`` (with ``audio_format``, ``audio_options``): take the audio from this second input
    instead (the source's own audio track, if any, is not used); ``audio_sync``: how its clock meets the
    video's ("start": each input counted from its own first timestamp; "timestamps": one shared clock).
    The audio input is read on its own thread (paced too with ``realtime``). When it ends or fails, the
    stream ends after the last second its audio covers (:attr:`stopped_reason` says why); when no audio
    arrives for ``timeout_s`` while video seconds wait for it, the stream stops (the audio stalled).
    """

    def __init__(self, source: str, *, input_format: str | None = None, options: dict | None = None,
                 realtime: bool = False, timeout_s: float = 10.0,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None, allow_silent: bool = False,
                 per_second: int = 1, audio_source: str | None = None, audio_format: str | None = None,
                 audio_options: dict | None = None, audio_sync: str = "start") -> None:
        if int(per_second) < 1 or SAMPLE_RATE % int(per_second):
            raise ValueError(f"per_second must divide {SAMPLE_RATE} (1, 2, 4, 5, 8, 10...), got {per_second}")
        if audio_sync not in SYNC_MODES:
            raise ValueError(f"audio_sync must be one of {SYNC_MODES}, got {audio_sync!r}")
        self.audio_sync = audio_sync
        self.timeout_s = float(timeout_s)
        self.audio_input: AudioInput | None = None
        self.per_second = int(per_second)
        self.source = str(source)
        self.realtime = realtime
        self.transform = transform
        self.stopped_reason: str | None = None   # why the source ended early (a read error), if it did
        self.damaged_packets = 0                 # packets that would not decode (skipped)
        self._c = open_live_input(self.source, input_format=input_format, options=options, timeout_s=timeout_s,
                                  what="the stream")
        try:
            if not self._c.streams.video:
                raise MediaError(f"{self.source}: no video stream")
            self._vs = self._c.streams.video[0]
            self._as = self._c.streams.audio[0] if self._c.streams.audio and audio_source is None else None
            if self._as is None and audio_source is None and not allow_silent:
                raise NoAudioError(f"{self.source}: no audio track (use --allow-silent to run with silence)")
            self.fps = stream_fps(self._vs)
            if self.fps <= 0:
                raise MediaError(f"{self.source}: the video stream has no frame rate")
            set_decoder_threads(self._vs)
            if audio_source is not None:   # opened last: nothing else can fail after it
                self.audio_input = AudioInput(audio_source, input_format=audio_format, options=audio_options,
                                              realtime=realtime, timeout_s=timeout_s)
        except BaseException:
            self._c.close()
            raise
        vs = self._vs
        self.origin_s = float(vs.start_time * vs.time_base) if vs.start_time is not None else None
        self.width = int(vs.codec_context.width or 0)
        self.height = int(vs.codec_context.height or 0)

    @property
    def has_audio(self) -> bool:
        return self._as is not None or self.audio_input is not None

    @property
    def audio_source(self) -> str | None:
        """The separate audio input, if the audio comes from one."""
        return self.audio_input.source if self.audio_input is not None else None

    def close(self) -> None:
        if self.audio_input is not None:
            self.audio_input.close()
        self._c.close()

    def _audio_origin(self) -> float | None:
        """Sample 0 of the audio, on the audio's own clock (None: the audio input's first timestamp)."""
        if self.audio_input is not None:
            return (self.origin_s or 0.0) if self.audio_sync == "timestamps" else self.audio_input.start_s
        if self.origin_s is not None:   # one container: the video's start, as offline
            return self.origin_s
        a = self._as
        return float(a.start_time * a.time_base) if a is not None and a.start_time is not None else 0.0

    def seconds(self) -> Iterator[StreamSecond]:
        """Each complete second, in order, as it arrives. Ends when the source ends (or stops: a read
        error or timeout, told in :attr:`stopped_reason`); the second the end falls inside is handed out
        if its frame arrived, with the audio there was. With a separate audio input, also ends after the
        last second that input's audio covers once it ends, or when it stalls (:attr:`stopped_reason`)."""
        sampler = SecondSampler([], self.fps, self.origin_s, transform=self.transform)
        next_target = 0
        mono = Mono16k(self._audio_origin()) if self._as is not None else None
        audio = SampleBuffer()
        separate = self.audio_input is not None
        if separate:
            self.audio_input.start(audio, self._audio_origin())
        K = self.per_second
        step = SAMPLE_RATE // K   # samples between ticks
        frames: dict[int, tuple[np.ndarray, float]] = {}   # tick -> (frame, monotonic time it arrived)
        nxt = 0         # the next tick (second * K + phase) to hand out
        wall0 = None    # realtime pacing: monotonic time of media time 0
        audio_over: str | None = None   # why the separate audio input can give no more seconds

        def top_up() -> None:
            nonlocal next_target
            del sampler.targets[:sampler.pos]
            sampler.pos = 0
            while len(sampler.targets) < _TARGETS_AHEAD * K:
                # tick n starts at n / K s; its frame sits 15/16 s on, as a second's frame offline
                at = frame_index(next_target, self.fps) if K == 1 else int(next_target / K * self.fps + 15 / 16 * self.fps)
                sampler.targets.append((next_target, at))
                next_target += 1

        def ready() -> Iterator[StreamSecond]:
            nonlocal nxt, audio_over
            while nxt in frames and audio_over is None:
                if mono is None and not separate:
                    samples = np.zeros(0, np.float32)   # silent
                elif separate and audio.ended and nxt * step >= audio.upto():
                    audio_over = audio.reason or f"{self.audio_input.source}: the audio source ended"
                    return
                else:
                    samples = audio.take(nxt * step, EXAMPLE_SAMPLES, (nxt + 1) * step)   # the next tick starts there
                if samples is None:
                    if separate and time.monotonic() - frames[nxt][1] > self.timeout_s:
                        audio_over = (f"{self.audio_input.source}: the audio source stalled "
                                      f"(no data for {self.timeout_s:g} s)")
                    return
                yield StreamSecond(nxt // K, frames.pop(nxt)[0], samples, time.monotonic(), nxt % K, K)
                nxt += 1

        top_up()
        streams = [self._vs] + ([self._as] if self._as is not None else [])
        try:
            for packet in self._c.demux(streams):
                if self.realtime and packet.pts is not None and packet.time_base is not None:
                    t = float(packet.pts * packet.time_base) - (self.origin_s or 0.0)
                    now = time.monotonic()
                    if wall0 is None:
                        wall0 = now - t
                    elif wall0 + t > now:
                        time.sleep(wall0 + t - now)
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:   # a damaged packet: skipped and counted, the stream goes on
                    self.damaged_packets += 1
                    continue
                for frame in decoded:
                    if packet.stream.type == "video":
                        for sec, rgb in sampler.push(frame):
                            frames[sec] = (rgb, time.monotonic())
                        if sampler.pos > _TARGETS_AHEAD * K // 2:
                            top_up()
                    else:
                        audio.extend(mono.push(frame))
                yield from ready()
                if audio_over is not None:
                    break
        except av.error.FFmpegError as e:
            self.stopped_reason = f"{self.source}: the stream stopped ({_one_line(e)})"
        if mono is not None:
            audio.extend(mono.finish())
        if not separate:
            audio.end()
        while audio_over is None and nxt in frames:   # the video ended: its last seconds wait for their audio
            if separate and not audio.wait_for(nxt * step + EXAMPLE_SAMPLES, self.timeout_s):
                audio_over = f"{self.audio_input.source}: the audio source stalled (no data for {self.timeout_s:g} s)"
                break
            before = nxt
            yield from ready()
            if nxt == before:
                break
        if audio_over is not None and self.stopped_reason is None:
            self.stopped_reason = audio_over
        if separate:
            self.damaged_packets += self.audio_input.damaged_packets


__all__ = ["StreamReader", "StreamSecond", "is_stream_url", "STREAM_SCHEMES"]
