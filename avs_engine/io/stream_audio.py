"""A live stream's 16 kHz audio, from its own container or from a separate audio input (a microphone).

:class:`SampleBuffer` holds the 16 kHz mono samples a live reader has not
handed out yet, on the video's timeline (sample ``i`` is ``i / 16000`` s
after time 0); it is filled by the reader itself (audio demuxed with the
video) or by an :class:`AudioInput` thread (a second FFmpeg input, e.g.
``alsa``/``pulse`` next to a ``v4l2`` camera, or a second stream URL).

Two inputs have two clocks. ``sync="start"`` (the default, as the ``ffmpeg``
tool does with several inputs) counts each input from its own first
timestamp: the audio's first sample is time 0, as the video's first frame
is. ``sync="timestamps"``: both inputs carry one clock (one encoder, one
capture clock): the audio's timestamps are read on the video's timeline,
sample 0 being the video's first frame, exactly as for one file.

Memory stays flat: the buffer keeps what the next second needs, and the
input thread waits while it is more than :data:`AHEAD_S` seconds ahead of
the reader (a file or a fast network source is not read whole into memory).
"""

from __future__ import annotations

import threading
import time

import av
import numpy as np

from ..errors import MediaError, NoAudioError
from .audio import Mono16k
from .logmel import SAMPLE_RATE
from .probe import frame_time

SYNC_MODES = ("start", "timestamps")
AHEAD_S = 30.0   # how far (in audio seconds) an audio input may run ahead of what the reader has taken


def one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def open_live_input(source: str, *, input_format: str | None, options: dict | None, timeout_s: float,
                    what: str) -> "av.container.InputContainer":
    """An FFmpeg input for live reading: ``timeout_s`` bounds opening and then each read. ``what`` names
    the input in the one-line MediaError raised when it cannot be opened ("the stream", "the audio source")."""
    try:
        return av.open(source, mode="r", format=input_format, options=dict(options or {}),
                       timeout=(timeout_s, timeout_s), metadata_errors="replace")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"{source}: cannot open {what} ({one_line(e)})") from None


class SampleBuffer:
    """Thread-safe 16 kHz mono samples from absolute index :attr:`base` on, until :meth:`end`.

    ``ended``: no more samples will come; ``reason``: why an input ended early (None: it ended normally).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._chunks: list[np.ndarray] = []
        self._n = 0          # samples held
        self.base = 0        # absolute index of the first sample held
        self.ended = False
        self.reason: str | None = None

    def extend(self, chunks) -> None:
        with self._cond:
            for c in chunks:
                if c.size:
                    self._chunks.append(c)
                    self._n += c.size
            self._cond.notify_all()

    def end(self, reason: str | None = None) -> None:
        with self._cond:
            self.ended, self.reason = True, reason
            self._cond.notify_all()

    def upto(self) -> int:
        """The absolute index one past the last sample received."""
        with self._cond:
            return self.base + self._n

    def take(self, a0: int, n: int, keep_from: int) -> np.ndarray | None:
        """Samples ``[a0, a0 + n)`` (fewer once ended; None while they have not all arrived), then forget
        everything before ``keep_from``."""
        with self._cond:
            if self.base + self._n < a0 + n and not self.ended:
                return None
            buf = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
            out = buf[max(0, a0 - self.base): max(0, a0 - self.base + n)].copy()
            k = min(max(0, keep_from - self.base), buf.size)
            self._chunks = [buf[k:]] if buf.size > k else []
            self._n = buf.size - k
            self.base += k
            self._cond.notify_all()   # room for an input waiting in :meth:`wait_room`
            return out

    def wait_for(self, upto: int, timeout_s: float) -> bool:
        """Wait until sample ``upto - 1`` arrived or the input ended; False after ``timeout_s`` without."""
        with self._cond:
            return self._cond.wait_for(lambda: self.ended or self.base + self._n >= upto, timeout_s)

    def wait_room(self, limit: int, stop: threading.Event) -> None:
        """Wait while more than ``limit`` samples are held (an input thread's back-pressure)."""
        with self._cond:
            while self._n > limit and not stop.is_set():
                self._cond.wait(0.25)


class AudioInput:
    """A separate audio input read on its own thread into a :class:`SampleBuffer`.

    ``source``/``input_format``/``options``: as FFmpeg opens it (``"default"`` with ``alsa``, a stream URL,
    a ``lavfi`` graph...). ``realtime``: pace reading by its timestamps; ``timeout_s``: how long opening, and
    then each read, may wait. Raises a one-line MediaError when it cannot be opened, NoAudioError when it
    has no audio stream.
    """

    def __init__(self, source: str, *, input_format: str | None = None, options: dict | None = None,
                 realtime: bool = False, timeout_s: float = 10.0) -> None:
        self.source = str(source)
        self.realtime = realtime
        self._c = open_live_input(self.source, input_format=input_format, options=options, timeout_s=timeout_s,
                                  what="the audio source")
        if not self._c.streams.audio:
            self._c.close()
            raise NoAudioError(f"{self.source}: the audio source has no audio stream")
        self._as = self._c.streams.audio[0]
        a = self._as
        self.start_s = float(a.start_time * a.time_base) if a.start_time is not None else None
        self.timeout_s = float(timeout_s)
        self.damaged_packets = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, buffer: SampleBuffer, origin_s: float | None) -> None:
        """Read into ``buffer`` on a thread; sample 0 is time ``origin_s`` of this input's clock (None: its
        own first timestamp)."""
        self._thread = threading.Thread(target=self._read, args=(buffer, origin_s), name="avs-live-audio", daemon=True)
        self._thread.start()

    def _read(self, buffer: SampleBuffer, origin_s: float | None) -> None:
        mono = Mono16k(origin_s) if origin_s is not None else None
        wall0 = None
        reason = None
        try:
            for packet in self._c.demux(self._as):
                if self._stop.is_set():
                    break
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    self.damaged_packets += 1
                    continue
                for frame in decoded:
                    t = frame_time(frame)
                    if mono is None:   # no start time in the header: the first frame's is time 0
                        mono = Mono16k(t if t is not None else 0.0)
                    if self.realtime and t is not None:
                        now = time.monotonic()
                        rel = t - mono.origin_s
                        if wall0 is None:
                            wall0 = now - rel
                        elif wall0 + rel > now:
                            time.sleep(wall0 + rel - now)
                    buffer.extend(mono.push(frame))
                buffer.wait_room(int(AHEAD_S * SAMPLE_RATE), self._stop)
            if mono is not None:
                buffer.extend(mono.finish())
        except av.error.ExitError:   # FFmpeg's interrupt: the read waited timeout_s
            reason = f"{self.source}: the audio source stalled (no data for {self.timeout_s:g} s)"
        except av.error.FFmpegError as e:
            reason = f"{self.source}: the audio source stopped ({one_line(e)})"
        except Exception as e:   # reaches the reader through the buffer's reason
            reason = f"{self.source}: the audio source failed ({one_line(e)})"
        finally:
            buffer.end(reason)
            try:
                self._c.close()
            except Exception:
                pass

    def close(self, wait_s: float = 1.0) -> None:
        """Ask the thread to stop after the packet in hand (it closes the input); without a thread, close now."""
        self._stop.set()
        if self._thread is None:
            self._c.close()
        else:
            self._thread.join(wait_s)


__all__ = ["AudioInput", "SampleBuffer", "SYNC_MODES", "AHEAD_S"]
