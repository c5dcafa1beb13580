"""Run outputs: mask PNGs, JSON, and the overlay video, each written atomically.

Every writer writes to a hidden temporary name next to the target and renames
it into place (``os.replace``) only when complete, so a crash or Ctrl-C never
leaves a half-written file under the final name.

:class:`OverlayWriter` streams: it re-decodes the source video while the
caller hands it one second's mask at a time, and holds at most one mask and
one decoded frame (plus the encoder's own small look-ahead), whatever the
video's length.
"""

from __future__ import annotations

import contextlib
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ..atomic import atomic_target
from ..errors import MediaError, ShapeError
from .frames import set_decoder_threads
from .hdr import HDR_TRANSFERS, HdrStatic, read_hdr_static
from .probe import MediaInfo, _one_line, frame_time, open_container, orient, probe

def write_mask_png(path, mask: np.ndarray) -> Path:
    """Write a binary mask as an 8-bit greyscale PNG (0 = off, 255 = on).

    Args:
        path: target file.
        mask: bool ``[H, W]`` (any array whose non-zero means "on").

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if mask.ndim != 2:
        raise ShapeError(f"write_mask_png({path.name}): expected mask [H,W], got shape {mask.shape}")
    img = Image.fromarray(np.where(mask, np.uint8(255), np.uint8(0)), mode="L")  # uint8 throughout: no 8-byte copy of an 8K frame
    with atomic_target(path) as tmp:
        img.save(tmp, format="PNG")  # format given: the temporary name has no .png suffix
    return path


# --------------------------------------------------------------------------- overlay video

# Kr, Kb of the YCbCr matrices (ITU-R BT.601 and BT.709).
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}
# FFmpeg's enum values: colorspace (matrix) 1 = BT.709, 9/10 = BT.2020; 2 = unspecified (any tag).
_MATRIX_OF_COLORSPACE = {1: "bt709", 9: "bt2020", 10: "bt2020"}
_UNSPECIFIED = 2
# Input pixel formats whose planes the overlay copies as they are (no conversion, no range change).
_PLANAR_AS_IS = {"yuv420p": "yuv420p", "yuvj420p": "yuv420p", "yuv420p10le": "yuv420p10le"}
# Channel layouts FFmpeg's AAC encoder opens (checked with FFmpeg in PyAV 18);
# others (unordered "8 channels" from PCM, ...) map by channel count.
_AAC_LAYOUTS = {"mono", "stereo", "2.1", "3.0", "4.0", "quad", "5.0", "5.0(side)", "5.1", "5.1(side)", "6.1", "7.1"}
_AAC_LAYOUT_BY_COUNT = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# Sample rates the AAC encoder takes; any other is resampled to 48 kHz.
_AAC_RATES = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}
_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Audio codecs copied into each output container unchanged (no re-encoding, no
# generation loss, and no rate/layout the AAC encoder would refuse); others are
# re-encoded to AAC. Matroska takes anything FFmpeg can demux.
_COPY_AUDIO = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be",
            "pcm_s32le", "pcm_f32le", "pcm_u8"},
}
# Above this many pixels (beyond 1080p) x264 runs in zero-latency mode: its
# look-ahead, B-frames and frame threads otherwise keep a dozen full frames
# in flight (measured with "veryfast": 0.6 GB at 4K, 2.2 GB at 8K; 0.2 GB and
# 0.7 GB in zero-latency mode), at the cost of a somewhat larger file.
LOW_LATENCY_PIXELS = 1920 * 1088
# Default cap on the overlay's size: larger sources (8K) are scaled down to fit
# 4K UHD's pixel count. H.264 above 4K needs level 6+, which few players
# decode, and an 8K encoder alone costs 0.7 GB.
MAX_OVERLAY_PIXELS = 3840 * 2160
_ROWS = 256  # rows tinted at a time (even): bounds the float temporaries of a large frame


def _rgb_to_yuv(color, matrix: str, full_range: bool) -> np.ndarray:
    """One RGB colour (0-255) -> its 8-bit Y, Cb, Cr as float32 ``[3]``."""
    kr, kb = _KR_KB[matrix]
    r, g, b = (float(c) for c in color)
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    if full_range:
        yuv = [y, 128 + cb, 128 + cr]
    else:
        yuv = [16 + y * 219 / 255, 128 + cb * 224 / 255, 128 + cr * 224 / 255]
    return np.clip(np.array(yuv, np.float32), 0, 255)


def _plane_view(frame: av.VideoFrame, i: int) -> np.ndarray:
    """Plane ``i`` of a frame as a ``[h, w]`` view of its buffer (row padding dropped; writable): uint8 for
    8-bit formats, uint16 for 10-bit ones (``yuv420p10le``)."""
    p = frame.planes[i]
    dtype = np.uint16 if frame.format.name.endswith("10le") else np.uint8
    step = np.dtype(dtype).itemsize
    buf = np.frombuffer(p, dtype).reshape(p.height, p.line_size // step)
    return buf[:, :p.width]


def _bit_depth(fmt) -> int:
    """Bits per component of a PyAV VideoFormat (8 when unknown)."""
    try:
        return max(int(c.bits) for c in fmt.components) if fmt is not None and fmt.components else 8
    except (AttributeError, TypeError, ValueError):
        return 8


def _encoder_formats(codec: str) -> set[str]:
    try:
        return {f.name for f in av.codec.Codec(codec, "w").video_formats or ()}
    except Exception:
        return set()


def _resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A mask ``[h, w]`` at ``size = (W, H)`` by nearest pixel centres: ``[H, W]``."""
    h, w = mask.shape
    rows = ((np.arange(size[1]) + 0.5) * h / size[1]).astype(np.int64)
    cols = ((np.arange(size[0]) + 0.5) * w / size[0]).astype(np.int64)
    return mask[rows[:, None], cols[None, :]]


def _fill_plane(dst: np.ndarray, src: np.ndarray, rotation: int, mirror: bool) -> None:
    """Copy a stored plane into ``dst`` as displayed; an extra last row/column repeats the edge."""
    view = orient(src, rotation, mirror)
    h, w = view.shape
    dst[:h, :w] = view
    if dst.shape[1] > w:
        dst[:h, w:] = dst[:h, w - 1:w]
    if dst.shape[0] > h:
        dst[h:] = dst[h - 1:h]


class OverlayWriter:
    """Write the source video with each second's mask tinted over its frames.

    Usage::

        with OverlayWriter("in.mp4", "out/overlay.mp4") as w:
            for l, mask in enumerate(masks):   # bool [H, W] at the displayed size
                w.add_second(l, mask)
        # closed (renamed into place) here; removed on an exception

    The frame at time t (from the video stream's start) belongs to second
    floor(t); frames of seconds that get no mask, and all frames after the
    last added second, are copied untinted. Output: H.264 yuv420p (10-bit
    yuv420p10le when the source has more than 8 bits) at the source's
    displayed size (a rotated phone video is written upright, with no
    rotation of its own; padded by one edge row/column when odd; frames of
    another size, after a mid-stream resolution change, scaled to it and
    said in ``notes``), tagged with the source's colour primaries, transfer,
    matrix and range (set before the encoder opens, so they are in the
    stream's header: HDR stays HDR) and its HDR static metadata (mastering
    display and content light level, see ``io.hdr``; as SEI messages in the
    H.264 stream: PyAV cannot set the MP4 ``mdcv``/``clli`` boxes), with the
    source's timestamps (made strictly increasing: a repeated timestamp moves
    one tick later), plus the source's first audio track: its packets copied
    unchanged when the output container takes the codec (AAC into MP4),
    otherwise re-encoded to AAC (resampled to 48 kHz when the encoder does
    not take the source's rate). Video only when the source has no audio.
    Damaged packets are skipped, as in ``io.frames``.

    Memory: the source decoder's reference frames, one converted frame and
    one output frame; tinting works on bands of rows. Beyond 1080p the
    encoder runs in zero-latency mode (``LOW_LATENCY_PIXELS``), and a source
    with more pixels than ``max_pixels`` (default: 4K UHD's) is written scaled
    down to fit, keeping its aspect ratio (masks are scaled with it).

    Raises MediaError (one line, naming the source) when the source cannot
    be read or its audio cannot be written in any form.

    Args:
        src_video: the video the masks were computed on.
        dst_path: the overlay file (mp4; .mov/.mkv also accepted).
        color: RGB tint colour.
        alpha: tint opacity in [0, 1].
        crf, preset: libx264 quality and speed.
        info: the source's :class:`~avs_engine.io.probe.MediaInfo` when the
            caller has it (else it is probed here), for its orientation.
        max_pixels: largest output frame (width x height) before scaling
            down; None writes every source at its own size.
    """

    def __init__(self, src_video, dst_path, color=(255, 0, 64), alpha: float = 0.45,
                 crf: int = 20, preset: str = "veryfast", info: MediaInfo | None = None,
                 max_pixels: int | None = MAX_OVERLAY_PIXELS):
        self.src = Path(src_video)
        self.dst = Path(dst_path)
        self.color = tuple(int(c) for c in color)
        self.alpha = float(alpha)
        self.crf, self.preset = int(crf), str(preset)
        self.frames_written = 0
        self.audio_mode: str | None = None   # "copy", "aac" or None (no audio)
        self.max_pixels = max_pixels
        self._tmp = self.dst.with_name(f".{self.dst.stem}.{os.getpid()}.partial{self.dst.suffix}")
        self._in = self._out = None
        self._closed = self._aborted = False
        self._last_second = -1
        self._last_pts: int | None = None
        self._pending: av.VideoFrame | None = None
        self._info = info if info is not None else probe(self.src)
        try:
            self._in = open_container(self.src)
        except (av.error.FFmpegError, OSError) as e:
            raise MediaError(f"{self.src}: cannot open for the overlay ({e})") from e
        try:
            self._setup()
        except BaseException:
            self.abort()
            raise

    # -- setup

    def _setup(self) -> None:
        if not self._in.streams.video:
            raise MediaError(f"{self.src}: no video stream")
        self._vin = self._in.streams.video[0]
        set_decoder_threads(self._vin)
        self._ain = self._in.streams.audio[0] if (self._in.streams.audio and self._info.has_audio) else None
        self._rot, self._mirror = self._info.rotation, self._info.mirror
        self._width, self._height = self._info.width, self._info.height   # displayed
        if not self._width or not self._height:
            raise MediaError(f"{self.src}: video stream has no frame size")
        self._scaled = self.max_pixels is not None and self._width * self._height > self.max_pixels
        if self._scaled:
            f = math.sqrt(self.max_pixels / (self._width * self._height))
            self.size = (max(2, int(self._width * f) // 2 * 2), max(2, int(self._height * f) // 2 * 2))
        else:
            # libx264 + yuv420p needs even sizes: pad odd ones by one edge row/column.
            self.size = (self._width + self._width % 2, self._height + self._height % 2)
        self._rate = Fraction(self._vin.average_rate or self._vin.guessed_rate or Fraction(25))
        # The source's colour description, known before the encoder opens (it goes into the stream's header):
        # primaries, transfer and matrix as tagged, the range, and 10 bits when the source has more than 8.
        vcc = self._vin.codec_context
        in_fmt = getattr(vcc, "format", None)
        self._full_range = vcc.color_range == 2 or (in_fmt is not None and in_fmt.name.startswith("yuvj"))
        self._tags = {k: int(getattr(vcc, k, _UNSPECIFIED) or _UNSPECIFIED)
                      for k in ("color_primaries", "color_trc", "colorspace")}
        deep = _bit_depth(in_fmt) > 8 and "yuv420p10le" in _encoder_formats("libx264")
        self._out_fmt = "yuv420p10le" if deep else "yuv420p"
        # HDR static metadata (mastering display, content light level) rides on the first frame, not the stream:
        # peek at it for the encoder's parameters. Only HDR and deep sources can carry it meaningfully.
        self.hdr = HdrStatic()
        if self._tags["color_trc"] in HDR_TRANSFERS or _bit_depth(in_fmt) > 8:
            with contextlib.suppress(av.error.FFmpegError, MediaError):   # unreadable here: fails below, in context
                self.hdr = read_hdr_static(self.src)
        self.notes: list[str] = []   # plain-words warnings about what the overlay changed (see VideoWriter)
        self._size_changed = False
        self._fmt = _CONTAINER_FORMATS.get(self.dst.suffix.lower(), "mp4")

        mode = None
        if self._ain is not None:
            copyable = _COPY_AUDIO.get(self._fmt)
            mode = "copy" if (copyable is None or self._ain.codec_context.name in copyable) else "aac"
        try:
            self._open_output(mode)
        except av.error.FFmpegError as e:
            if mode != "copy":
                raise MediaError(f"{self.src}: overlay cannot write the audio "
                                 f"({self._audio_desc()}: {_one_line(e)})") from None
            self._close_output()   # the container refused the copied codec: re-encode instead
            try:
                self._open_output("aac")
            except av.error.FFmpegError as e2:
                raise MediaError(f"{self.src}: overlay cannot write the audio "
                                 f"({self._audio_desc()}: {_one_line(e2)})") from None

        # One demuxing pass over both streams: audio packets are copied or
        # re-encoded and muxed as they come, so audio and video stay
        # interleaved and nothing waits for the end of the file.
        self._frames = self._video_frames()
        # Time origin: the video stream's start (as io.frames' sampler uses),
        # else the first frame's pts.
        self._origin = self._vin.start_time
        self._tb = self._vin.time_base

    def _audio_desc(self) -> str:
        a = self._ain
        return f"{a.codec_context.name} {a.rate} Hz {a.channels} ch" if a is not None else "no audio"

    def _open_output(self, audio_mode: str | None) -> None:
        options = {"movflags": "+faststart"} if self._fmt in ("mp4", "mov") else {}
        self._out = av.open(str(self._tmp), "w", format=self._fmt, options=options)
        vout = self._out.add_stream("libx264", rate=self._rate)
        vout.width, vout.height = self.size
        vout.pix_fmt = self._out_fmt
        cc = vout.codec_context
        cc.color_range = 2 if self._full_range else 1   # 2 = JPEG (full), 1 = MPEG (limited)
        for name, value in self._tags.items():
            if value != _UNSPECIFIED:
                with contextlib.suppress(Exception):   # a value this FFmpeg does not know: left unspecified
                    setattr(cc, name, value)
        opts = {"crf": str(self.crf), "preset": self.preset}
        if vout.width * vout.height > LOW_LATENCY_PIXELS:
            opts["tune"] = "zerolatency"
        if self.hdr:
            opts["x264-params"] = self.hdr.x264_params()   # written as SEI messages with the first frame
        vout.options = opts
        # Keep the source's timestamps (variable frame rates stay in sync with audio).
        vout.codec_context.time_base = self._vin.time_base
        self._vout = vout
        self._aout = None
        if audio_mode == "copy":
            self._aout = self._out.add_stream_from_template(self._ain)
        elif audio_mode == "aac":
            channels = max(1, self._ain.channels)
            layout = self._ain.layout.name
            if layout not in _AAC_LAYOUTS:
                layout = _AAC_LAYOUT_BY_COUNT.get(channels, "stereo")   # more than 8: downmix
            rate = self._ain.rate if self._ain.rate in _AAC_RATES else 48000
            self._aout = self._out.add_stream("aac", rate=rate, layout=layout)
            # FFmpeg's AAC encoder takes planar float only; PyAV converts the
            # decoded samples (s16 from PCM, another rate, ...) to what it takes.
            self._aout.format = "fltp"
            self._aout.bit_rate = min(64000 * channels, 384000)
        self.audio_mode = audio_mode
        self._out.start_encoding()   # writes the header now: a refused codec fails here, not mid-file

    def _close_output(self) -> None:
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    # -- decoding

    def _video_frames(self):
        streams = [self._vin] + ([self._ain] if self._ain is not None else [])
        packets = self._in.demux(streams)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError:
                return   # damaged past here: the overlay ends where the readable part ends
            if packet.stream is self._vin:
                try:
                    frames = packet.decode()   # an empty packet at the end flushes
                except av.error.FFmpegError:
                    continue   # a damaged packet: skipped, as io.frames does
                yield from frames
            elif self.audio_mode == "copy":
                if packet.dts is not None and packet.size > 0 and not packet.is_corrupt:
                    packet.stream = self._aout
                    self._mux(packet, "audio")
            else:
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in frames:
                    self._encode_audio(frame)

    def _mux(self, packet, kind: str) -> None:
        try:
            self._out.mux(packet)
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.src}: overlay failed writing the {kind} ({_one_line(e)})") from None

    def _encode_audio(self, frame: av.AudioFrame | None) -> None:
        # PyAV's AAC encoder regroups samples into its 1024-sample frames itself.
        try:
            packets = self._aout.encode(frame)
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.src}: overlay cannot encode the audio "
                             f"({self._audio_desc()}: {_one_line(e)})") from None
        for pkt in packets:
            self._mux(pkt, "audio")

    def _second_of(self, frame: av.VideoFrame) -> int:
        """Second index of a frame: floor of its time since the video stream's start."""
        if frame.pts is None:
            return math.floor(Fraction(self.frames_written) / self._rate)
        if self._origin is None:
            self._origin = frame.pts
        return math.floor((frame.pts - self._origin) * self._tb)

    def _next_frame(self) -> av.VideoFrame | None:
        if self._pending is None:
            self._pending = next(self._frames, None)
        return self._pending

    # -- encoding

    def _stored_size(self) -> tuple[int, int]:
        """(width, height) the frames must have before turning: the overlay's size in stored orientation."""
        if self._scaled:
            return self.size if self._rot in (0, 180) else self.size[::-1]
        return self._info.stored_width or self._width, self._info.stored_height or self._height

    def _note_size_change(self, src: av.VideoFrame, w: int, h: int) -> None:
        if not self._size_changed:
            self._size_changed = True
            t = frame_time(src)
            at = f" at {t:.1f} s" if t is not None else ""
            self.notes.append(f"the video changes size mid-stream (from {w}x{h} to {src.width}x{src.height}{at}); "
                              f"the overlay shows those frames scaled to {w}x{h}")

    def _encode_frame(self, src: av.VideoFrame, mask: np.ndarray | None) -> None:
        fmt = self._out_fmt
        w, h = self._stored_size()
        resize = (src.width, src.height) != (w, h)
        if resize and not self._scaled:
            self._note_size_change(src, w, h)
        if resize or _PLANAR_AS_IS.get(src.format.name) != fmt:
            rng = 2 if self._full_range else 1   # keep the range: the output is tagged with the source's
            src = src.reformat(width=w, height=h, format=fmt, interpolation="AREA" if resize else None,
                               src_color_range=rng, dst_color_range=rng)
        if self._scaled and mask is not None:
            mask = _resize_nearest(mask, self.size)
        W, H = self._vout.width, self._vout.height
        out = av.VideoFrame(W, H, fmt)
        planes = [_plane_view(out, i) for i in range(3)]   # [H, W], [H/2, W/2] x 2
        for i, dst in enumerate(planes):
            _fill_plane(dst, _plane_view(src, i), self._rot, self._mirror)
        if mask is not None:
            matrix = _MATRIX_OF_COLORSPACE.get(self._tags["colorspace"], _MATRIX_OF_COLORSPACE.get(src.colorspace, "bt601"))
            self._tint(planes, mask, matrix, self._full_range)
        out.color_range = 2 if self._full_range else 1
        # A stream without timestamps: number the frames at the nominal rate.
        pts = src.pts if src.pts is not None else round(self.frames_written / self._rate / self._tb)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1   # repeated timestamps (some MJPEG files): the muxer needs increasing ones
        self._last_pts = pts
        out.pts = pts
        out.time_base = self._tb
        del src
        try:
            packets = self._vout.encode(out)
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.src}: overlay failed encoding the video ({_one_line(e)})") from None
        for pkt in packets:
            self._mux(pkt, "video")
        self.frames_written += 1

    def _tint(self, planes, mask, matrix: str, full_range: bool) -> None:
        # The YCbCr matrices are affine in RGB, so blending in YUV is the same as
        # blending in RGB and converting: no RGB round trip, and untinted pixels
        # keep their decoded values exactly.
        ty, tu, tv = _rgb_to_yuv(self.color, matrix, full_range)
        if planes[0].dtype == np.uint16:   # 10-bit: the 8-bit code values times 4
            ty, tu, tv = ty * 4, tu * 4, tv * 4
        a = self.alpha
        y, u, v = planes
        H, W = y.shape
        h, w = mask.shape
        for r0 in range(0, H, _ROWS):
            r1 = min(r0 + _ROWS, H)
            on = mask[min(r0, h - 1):min(r1, h)].astype(bool)
            if on.shape != (r1 - r0, W):   # odd size: the padded row/column repeats the mask's edge
                on = np.pad(on, ((0, r1 - r0 - on.shape[0]), (0, W - w)), mode="edge")
            if not on.any():
                continue
            ys = y[r0:r1]
            ys[on] = np.rint(ys[on] + a * (ty - ys[on])).astype(ys.dtype)
            # Chroma is subsampled 2x2: weight the blend by the mask's coverage of each block.
            cover = on.reshape(on.shape[0] // 2, 2, W // 2, 2).mean(axis=(1, 3), dtype=np.float32)
            for plane, target in ((u, tu), (v, tv)):
                part = plane[r0 // 2:r1 // 2]
                part[:] = np.rint(part + (a * cover) * (target - part)).astype(part.dtype)

    # -- public API

    def add_second(self, second: int, mask: np.ndarray) -> None:
        """Write the frames up to and including second ``second``, that one tinted.

        Args:
            second: index l, increasing from call to call.
            mask: bool ``[H, W]`` at the displayed frame size (``MediaInfo.height, width``).
        """
        if self._closed:
            raise RuntimeError("OverlayWriter.add_second after close()/abort()")
        if second <= self._last_second:
            raise ValueError(f"OverlayWriter.add_second: seconds must increase, got {second} after {self._last_second}")
        if mask.shape != (self._height, self._width):
            raise ShapeError(f"OverlayWriter({self.src.name}): mask for second {second} must be "
                             f"[{self._height},{self._width}], got {list(mask.shape)}")
        self._last_second = second
        try:
            while (frame := self._next_frame()) is not None:
                sec = self._second_of(frame)
                if sec > second:
                    break
                self._pending = None
                self._encode_frame(frame, mask if sec == second else None)
                del frame
        except BaseException:
            self.abort()
            raise

    def close(self) -> Path | None:
        """Copy the remaining frames untinted, finish both streams, rename into place.

        Returns the overlay's path (None when the writer was aborted).
        """
        if self._closed:
            return None if self._aborted else self.dst
        try:
            while (frame := self._next_frame()) is not None:
                self._second_of(frame)
                self._pending = None
                self._encode_frame(frame, None)
                del frame
            if self.frames_written == 0:
                raise MediaError(f"{self.src}: no video frames decoded for the overlay")
            for pkt in self._vout.encode(None):
                self._mux(pkt, "video")
            if self.audio_mode == "aac":
                self._encode_audio(None)
            try:
                self._out.close()
            except av.error.FFmpegError as e:
                raise MediaError(f"{self.src}: overlay failed finishing the file ({_one_line(e)})") from None
            self._in.close()
            self._closed = True
            os.replace(self._tmp, self.dst)
        except BaseException:
            self.abort()
            raise
        return self.dst

    def abort(self) -> None:
        """Stop without output: close everything and delete the temporary file."""
        self._closed = self._aborted = True
        self._pending = None
        for c in (self._out, self._in):
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> "OverlayWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
