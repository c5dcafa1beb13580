"""Probe a media file: duration, frame rate, displayed size, audio layout (PyAV only).

Every user error (missing file, not media, empty, no video stream) is a
:class:`~avs_engine.errors.MediaError` whose one-line message starts with
the file name.

Files are read as players read them, not as their headers claim:

- Orientation: the display matrix that phones write (or an old-style
  ``rotate`` tag) is applied, so sizes and frames are the displayed ones.
- Frame count and duration come from the container's per-frame index when it
  has a complete one that lies inside the file (MP4/MOV/AVI), less the frames
  an MP4 edit list hides (the presented timeline, as players show it); otherwise
  (Matroska/WebM, raw streams, a truncated MP4) from one pass over the packets
  (demuxed, not decoded), which also finds audio tracks that hold no packets.
- A truncated file ends where its readable packets end: the seconds after are
  not predicted; ``decode_notes`` says so.
- Metadata that is not UTF-8 is read with replacement characters instead of
  refusing the file.
"""

from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import av
import numpy as np

from ..errors import MediaError
from . import open_policy

# A truncated file whose audio ends less than this before its video still gets
# its last seconds, the missing audio being silence; a longer gap ends the
# usable video where the audio ends.
AUDIO_GAP_S = 0.5


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a file (header, packet index, first frame).

    ``duration_s`` is the video stream's duration (falling back to the
    container's); ``n_frames`` is the container's frame count when it stores
    one, else the count found by demuxing (the number of frame slots on the
    timeline, ``round(duration_s * fps)`` for a constant-rate stream).
    ``start_s`` is the video stream's first timestamp: time 0 of the video
    timeline that frame indices and audio samples are measured from.

    ``width`` x ``height`` is the *displayed* size. The stored (coded) frames
    are ``stored_width`` x ``stored_height``; for display they are turned
    clockwise by ``rotation`` degrees (0, 90, 180 or 270), then mirrored
    left-right when ``mirror``. Every frame this package hands out is already
    turned (see :func:`orient`).

    ``truncated``: the file ends before its header says; ``duration_s`` and
    ``n_frames`` count only what is there, and ``audio_end_s`` is where its
    decodable audio ends (None for a complete file). ``has_audio`` is False
    for an audio track without a single packet.

    ``decode_notes``: one human-readable line per thing skipped or patched
    (damaged packets, truncation, silence put in), appended to by ``probe``
    and by the decoders while they run; meant for the run's warnings.
    """

    path: str
    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    audio_rate: int = 0
    audio_channels: int = 0
    start_s: float = 0.0
    rotation: int = 0
    mirror: bool = False
    stored_width: int = 0
    stored_height: int = 0
    truncated: bool = False
    audio_end_s: float | None = None
    decode_notes: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self):
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, got {self.rotation}")
        if not self.stored_width or not self.stored_height:
            turned = self.rotation in (90, 270)
            object.__setattr__(self, "stored_width", self.height if turned else self.width)
            object.__setattr__(self, "stored_height", self.width if turned else self.height)

    def note(self, line: str) -> None:
        """Add ``line`` to ``decode_notes`` unless it is there already (a file may be decoded twice)."""
        if line not in self.decode_notes:
            self.decode_notes.append(line)


def orient(img: np.ndarray, rotation: int, mirror: bool = False) -> np.ndarray:
    """A stored frame ``[H, W, ...]`` as displayed: turned clockwise by ``rotation`` degrees, then mirrored.

    Returns a view (``[W, H, ...]`` for 90 and 270); copy it for a contiguous array.
    """
    k = (int(rotation) // 90) % 4
    out = np.rot90(img, -k) if k else img
    return out[:, ::-1] if mirror else out


def check_file(path: str | os.PathLike) -> str:
    """Raise MediaError unless ``path`` is an existing, non-empty regular file; returns it as str."""
    p = str(path)
    if not os.path.exists(p):
        raise MediaError(f"{p}: file not found")
    if os.path.isdir(p):
        raise MediaError(f"{p}: is a directory, not a media file")
    if os.path.getsize(p) == 0:
        raise MediaError(f"{p}: empty file (0 bytes)")
    return p


def _one_line(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    # PyAV repeats the path in its messages ("...: '/x/y.mp4'"): drop it.
    msg = re.sub(r"^\[Errno -?\d+\]\s*", "", msg)
    return re.sub(r":\s*'[^']*'$", "", msg).strip()


def decode_checked(container, stream, path: str, kind: str, info: "MediaInfo | None" = None) -> Iterator:
    """Decoded frames of ``stream``, skipping what cannot be decoded.

    A packet the decoder rejects is dropped and counted, and decoding goes on
    with the next one; a demuxing error ends the stream there, like the end
    of a truncated file. What was skipped is added to ``info.decode_notes``
    when the generator ends or is closed. MediaError (one line, naming
    ``kind``) only when packets were rejected and not a single frame decoded.
    """
    skipped = concealed = decoded = 0
    first_error: str | None = None
    stopped: str | None = None
    packets = container.demux(stream)
    try:
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                stopped = _one_line(e)
                packet = None   # flush what the decoder still holds
            try:
                # (the empty packet at the end of a demux flushes too)
                frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
            except av.error.FFmpegError as e:
                skipped += 1
                first_error = first_error or _one_line(e)
                continue
            for frame in frames:
                decoded += 1
                if getattr(frame, "is_corrupt", False):
                    concealed += 1
                yield frame
            if packet is None:
                break
    finally:
        if info is not None:
            if skipped:
                info.note(f"skipped {_count(skipped, f'damaged {kind} packet')}")
            if concealed:
                info.note(f"{_count(concealed, f'{kind} frame')} decoded with errors "
                          "(shown as the decoder concealed them)")
            if stopped and decoded:
                info.note(f"{kind} stream unreadable past a damaged spot ({stopped}): decoded what came before")
    if decoded == 0 and (skipped or stopped):
        cause = "truncated file: " if info is not None and info.truncated else ""
        raise MediaError(f"{path}: {kind} decode error ({cause}{first_error or stopped})")


def frame_time(frame) -> float | None:
    """A decoded frame's presentation time in seconds, or None when it has none that is usable (no pts; or
    no time base, where PyAV gives NaN)."""
    if frame.pts is None:
        return None
    t = frame.time
    return float(t) if t is not None and math.isfinite(t) else None


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def open_container(path: str):
    """``av.open`` for reading; header metadata that is not UTF-8 gets replacement characters.

    A path under the strict open policy (see ``open_policy``) is opened with the file protocol only and the
    accepted container formats; a refused one raises MediaError."""
    options = open_policy.open_options(path)
    if not options:
        return av.open(str(path), mode="r", metadata_errors="replace")
    try:
        return av.open(str(path), mode="r", metadata_errors="replace", container_options=options)
    except av.error.FFmpegError as e:
        # EINVAL: FFmpeg refused the format (or protocol) under the whitelists; a playlist FFmpeg did not even
        # recognise (a DASH manifest without the XML demuxer) is refused by name all the same.
        if isinstance(e, av.error.ArgumentError) or open_policy.names_other_files(str(path)):
            raise MediaError(f"{path}: {open_policy.refusal(str(path))}") from None
        raise


def _box_name(kind: bytes) -> str:
    """An MP4 box type for a message: ``'moov'``, or its hex digits when it is not printable (a damaged file)."""
    text = kind.decode("latin-1")
    return f"'{text}'" if text.isascii() and text.isprintable() else f"0x{kind.hex()}"


def mp4_damage(path: str) -> str | None:
    """Why an MP4/MOV file is structurally incomplete, or None (also for other formats).

    Walks the top-level boxes: a box running past the end of the file means
    the file was cut short; no ``moov`` box means its index was never written
    (cut short or never finished).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                return None
            pos, seen = 0, set()
            while pos + 8 <= size:
                f.seek(pos)
                h = f.read(16)
                n, kind = int.from_bytes(h[0:4], "big"), h[4:8]
                if n == 1 and len(h) >= 16:
                    n = int.from_bytes(h[8:16], "big")
                elif n == 0:
                    n = size - pos
                if n < 8:
                    return None
                seen.add(kind)
                if pos + n > size:
                    kept = 100.0 * size / (pos + n)
                    return (f"the file is truncated (its {_box_name(kind)} box runs past the end; "
                            f"about {kept:.0f}% of the file is there)")
                pos += n
    except OSError:
        return None
    if b"moov" not in seen:
        return "the file is truncated or unfinished (no 'moov' index box)"
    return None


@contextmanager
def open_media(path: str | os.PathLike) -> Iterator["av.container.InputContainer"]:
    """Open ``path`` for reading with PyAV; bad files raise a one-line MediaError."""
    p = check_file(path)
    try:
        container = open_container(p)
    except MediaError:
        raise
    except av.error.FFmpegError as e:
        damage = mp4_damage(p)
        hint = f": {damage}" if damage else ""
        raise MediaError(f"{p}: not a readable media file ({_one_line(e)}){hint}") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise MediaError(f"{p}: cannot open ({_one_line(e)})") from None
    try:
        yield container
    finally:
        container.close()


def video_stream(container, path: str):
    """The first video stream, or a MediaError naming the file."""
    if not container.streams:
        raise MediaError(f"{path}: no audio or video streams (empty or zero-length media)")
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise MediaError(f"{path}: no video stream (streams found: {kinds})")
    return container.streams.video[0]


def stream_fps(stream) -> float:
    """Frames per second of a video stream: average rate, else guessed, else base rate."""
    for name in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, name, None)
        if rate is not None and rate > 0:
            f = float(rate)
            if 0 < f < 1000:  # a 1/time_base "rate" (e.g. 90000) is not a frame rate
                return f
    return 0.0


def _seconds(value, time_base) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _tag_duration(stream) -> float | None:
    """Matroska/WebM write a per-stream ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``)."""
    meta = getattr(stream, "metadata", None) or {}
    for key, val in meta.items():
        if key.upper() == "DURATION":
            m = re.match(r"^(\d+):(\d+):(\d+(?:\.\d+)?)$", str(val).strip())
            if m:
                h, mnt, s = m.groups()
                return int(h) * 3600 + int(mnt) * 60 + float(s)
    return None


def _video_duration(container, vs) -> float:
    d = _seconds(vs.duration, vs.time_base)
    if d is not None and d > 0:
        return d
    d = _tag_duration(vs)
    if d is not None and d > 0:
        return d
    if container.duration is not None and container.duration > 0:
        d = container.duration / av.time_base
        # The container's duration counts from the earliest stream start.
        cstart = (container.start_time or 0) / av.time_base
        vstart = _seconds(vs.start_time, vs.time_base)
        if vstart is not None:
            d -= max(0.0, vstart - cstart)
        return max(d, 0.0)
    fps = stream_fps(vs)
    if vs.frames and fps > 0:
        return vs.frames / fps
    return 0.0


def _matrix_orientation(m) -> tuple[int, bool] | None:
    """(clockwise degrees, mirror) that FFmpeg's players apply for a display matrix.

    ``m``: the 9 int32 of FFmpeg's display matrix (16.16 fixed point). The
    angle is ``-av_display_rotation_get(m)``; the flips follow ffmpeg's
    autorotate (a transpose for a mirrored quarter turn, hflip/vflip at
    180 and 0 degrees). None when the matrix is not a multiple of 90 degrees.
    """
    a, b, c, d = (float(m[i]) for i in (0, 1, 3, 4))
    s0, s1 = math.hypot(a, c), math.hypot(b, d)
    if s0 == 0 or s1 == 0:
        return None
    theta = math.degrees(math.atan2(b / s1, a / s0)) % 360.0
    q = round(theta / 90.0) % 4
    if abs((theta - 90.0 * round(theta / 90.0))) > 1.0:
        return None
    if q == 1:
        return (90, c > 0)
    if q == 3:
        return (270, c < 0)
    if q == 2:
        h, v = a < 0, d < 0
        return (180, False) if (h and v) else (0, True) if h else (180, True) if v else (0, False)
    return (180, True) if d < 0 else (0, False)


def _tag_rotation(stream) -> int | None:
    """Clockwise degrees from an old-style ``rotate`` metadata tag (any case), if it is a right angle."""
    for key, val in (getattr(stream, "metadata", None) or {}).items():
        if key.lower() == "rotate":
            try:
                deg = int(round(float(val))) % 360
            except ValueError:
                return None
            return deg if deg % 90 == 0 else None
    return None


def _orientation(p: str, info_notes: list[str]) -> tuple[int, bool]:
    """Display orientation of the first video stream: its display matrix (read off the first
    decodable frame, where FFmpeg attaches it), else a ``rotate`` tag, else upright."""
    with open_media(p) as c:
        vs = c.streams.video[0]
        vs.thread_type, vs.thread_count = "SLICE", 1   # one frame is wanted: no thread contexts
        frame = None
        packets = c.demux(vs)
        for i in range(302):
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError:   # a damaged file (even ENOMEM for a packet size it claims): no frame
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                frames = []
            if frames:
                frame = frames[0]
                break
        sd = frame.side_data.get("DISPLAYMATRIX") if frame is not None else None
        if sd is not None:
            m = np.frombuffer(bytes(sd), np.int32)
            got = _matrix_orientation(m) if m.size >= 9 else None
            if got is not None:
                return got
            info_notes.append("the display matrix turns the video by an angle that is not a multiple of 90 degrees: "
                              "frames are used as stored")
        tag = _tag_rotation(vs)
        return (tag, False) if tag is not None else (0, False)


@dataclass
class _Scan:
    """What one pass over the packets found (times in seconds on the video timeline)."""

    video_times: list = field(default_factory=list)   # per video packet; None without timestamps
    video_end: float = 0.0
    n_audio: int = 0
    audio_end: float | None = None
    corrupt_tail: bool = False
    stopped: str | None = None


def _scan_packets(c, vs, aud, start: float, fps: float) -> _Scan:
    """Demux (no decoding) the video and first audio stream to the end of the file."""
    scan = _Scan()
    streams = [vs] + ([aud] if aud is not None else [])
    vtb = vs.time_base
    count_time = 0.0  # for packets without timestamps: frames one after the other
    try:
        for pkt in c.demux(streams):
            if pkt.size == 0:
                continue
            if pkt.is_corrupt:   # a partial packet at the end of a cut file
                scan.corrupt_tail = True
                continue
            scan.corrupt_tail = False
            ts = pkt.pts if pkt.pts is not None else pkt.dts
            if pkt.stream is vs:
                dur = float(pkt.duration * vtb) if (pkt.duration and vtb) else 1.0 / fps
                if ts is None or vtb is None:
                    scan.video_times.append(None)
                    count_time += dur
                    scan.video_end = max(scan.video_end, count_time)
                else:
                    t = float(ts * vtb) - start
                    scan.video_times.append(t)
                    scan.video_end = max(scan.video_end, t + dur)
            else:
                scan.n_audio += 1
                atb = pkt.stream.time_base
                if ts is not None and atb is not None:
                    end = float((ts + (pkt.duration or 0)) * atb) - start
                    scan.audio_end = end if scan.audio_end is None else max(scan.audio_end, end)
    except av.error.FFmpegError as e:
        scan.stopped = _one_line(e)
    return scan


def _index_complete(vs, n_frames: int, size: int, aud) -> bool | None:
    """True when the video stream has one index entry per frame, all inside the file (and the
    audio's too); False when entries point past the end (truncated); None without such an index."""
    entries = vs.index_entries
    if n_frames <= 0 or len(entries) != n_frames:
        return None
    for stream in [vs] + ([aud] if aud is not None else []):
        ie = stream.index_entries
        for i in range(max(0, len(ie) - 32), len(ie)):   # the last entries lie furthest into the file
            e = ie[i]
            if e.pos is not None and e.pos >= 0 and e.pos + max(e.size, 0) > size:
                return False
    return True


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read ``path``'s header (plus its packets when the header cannot be trusted) and return a :class:`MediaInfo`.

    Raises MediaError for a missing/empty/unreadable file, a file with no video
    stream, or a zero-length video. A missing audio track (or one without
    packets) is *not* an error here (``has_audio=False``).
    """
    p = str(path)
    notes: list[str] = []
    with open_media(p) as c:
        vs = video_stream(c, p)
        fps = stream_fps(vs)
        if fps <= 0:
            raise MediaError(f"{p}: cannot determine the video frame rate")
        header_duration = _video_duration(c, vs)
        container_duration = (c.duration or 0) / av.time_base
        n_frames = int(vs.frames or 0)
        cc = vs.codec_context
        if cc is None:
            raise MediaError(f"{p}: the video stream's codec is unknown to FFmpeg (cannot decode it)")
        sw, sh = int(cc.width or 0), int(cc.height or 0)
        if sw <= 0 or sh <= 0:
            raise MediaError(f"{p}: video stream has no frame size ({sw}x{sh})")
        start = _seconds(vs.start_time, vs.time_base) or 0.0
        aud = c.streams.audio[0] if c.streams.audio else None
        if aud is not None and aud.codec_context is None:
            raise MediaError(f"{p}: the audio track's codec is unknown to FFmpeg (cannot decode it)")
        rate = int(aud.codec_context.sample_rate or 0) if aud is not None else 0
        chans = int(aud.codec_context.channels or 0) if aud is not None else 0
        damage = mp4_damage(p)
        indexed = _index_complete(vs, n_frames, os.path.getsize(p), aud)
        truncated = damage is not None or indexed is False
        audio_end = None
        if indexed and not truncated:
            # An MP4 edit list can hide frames before the presented start (a stream-copied cut keeps the GOP's
            # lead-in): the decoder drops them, so they are not frames of the video.
            hidden = sum(1 for e in vs.index_entries if e.is_discard)
            if 0 < hidden < n_frames:
                n_frames -= hidden
            duration = header_duration if header_duration > 0 else n_frames / fps
            has_audio = aud is not None and (int(aud.frames or 0) > 0 or len(aud.index_entries) > 0)
        else:
            scan = _scan_packets(c, vs, aud, start, fps)
            if not scan.video_times:
                why = " (the file is truncated)" if truncated or scan.corrupt_tail else ""
                raise MediaError(f"{p}: zero-length video (no frames){why}")
            read_end = max(scan.video_end, scan.audio_end or 0.0)
            truncated = (truncated or scan.corrupt_tail or scan.stopped is not None
                         or (container_duration > 0 and read_end < container_duration - 1.0))
            has_audio = aud is not None and scan.n_audio > 0
            end = scan.video_end
            if truncated:
                audio_end = scan.audio_end if has_audio else None
                if audio_end is not None and end - audio_end > AUDIO_GAP_S:
                    end = audio_end   # a shorter gap is filled with silence (io.clips says when)
                stated = max(header_duration, container_duration)
                of = f" of {stated:.1f}" if stated > end else ""
                notes.append(f"file is truncated: decoded {end:.1f}{of} s")
                if scan.stopped:
                    notes.append(f"stopped reading at a damaged spot ({scan.stopped})")
                duration = round(end, 6)
            else:
                duration = header_duration if header_duration > 0 else round(end, 6)
            timed = [t for t in scan.video_times if t is not None]
            if timed:
                slots = [round(t * fps) for t in timed if t < end - 0.25 / fps]
                n_frames = max(slots) + 1 if slots else 1
            else:
                n_frames = min(len(scan.video_times), max(1, int(round(end * fps))))
        if aud is not None and not has_audio:
            notes.append("the audio track holds no packets: treated as a video without audio")
            rate = chans = 0
        if n_frames <= 0 or duration <= 0:
            raise MediaError(f"{p}: zero-length video (no frames)")
    rotation, mirror = _orientation(p, notes)
    turned = rotation in (90, 270)
    return MediaInfo(
        path=p,
        duration_s=float(duration),
        fps=fps,
        n_frames=int(n_frames),
        width=sh if turned else sw,
        height=sw if turned else sh,
        has_audio=has_audio,
        audio_rate=rate,
        audio_channels=chans,
        start_s=float(start),
        rotation=rotation,
        mirror=mirror,
        stored_width=sw,
        stored_height=sh,
        truncated=truncated,
        audio_end_s=audio_end,
        decode_notes=notes,
    )


__all__ = [
    "MediaInfo", "probe", "orient", "open_media", "open_container", "check_file", "video_stream", "stream_fps",
    "decode_checked", "frame_time", "mp4_damage", "AUDIO_GAP_S",
]
