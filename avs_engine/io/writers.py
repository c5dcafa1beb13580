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
    img = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
    with atomic_target(path) as tmp:
        img.save(tmp, format="PNG")  # format given: the temporary name has no .png suffix
    return path


# --------------------------------------------------------------------------- overlay video

# Kr, Kb of the YCbCr matrices (ITU-R BT.601 and BT.709).
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
# Channel layouts FFmpeg's AAC encoder opens (checked with FFmpeg in PyAV 18);
# others (unordered "2 channels" from PCM, 7.1, ...) map by channel count.
_AAC_LAYOUTS = {"mono", "stereo", "2.1", "3.0", "4.0", "quad", "5.0", "5.0(side)", "5.1", "5.1(side)", "6.1"}
_AAC_LAYOUT_BY_COUNT = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1"}
_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


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


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    """Plane ``i`` of a frame as a uint8 ``[h, w]`` copy (row padding dropped)."""
    p = frame.planes[i]
    buf = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
    return buf[:, :p.width].copy()


def _pad_to(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pad a 2-D array at the bottom/right by repeating its edge."""
    if a.shape == (h, w):
        return a
    return np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1])), mode="edge")


class OverlayWriter:
    """Write the source video with each second's mask tinted over its frames.

    Usage::

        with OverlayWriter("in.mp4", "out/overlay.mp4") as w:
            for l, mask in enumerate(masks):   # bool [H, W] at the source size
                w.add_second(l, mask)
        # closed (renamed into place) here; removed on an exception

    The frame at time t (from the video stream's start) belongs to second
    floor(t); frames of seconds that get no mask, and all frames after the
    last added second, are copied untinted. Output: H.264 yuv420p at the
    source's size (padded by one edge row/column when odd) and timestamps,
    plus the source's first audio track re-encoded to AAC; video only when the
    source has no audio.

    Args:
        src_video: the video the masks were computed on.
        dst_path: the overlay file (mp4; .mov/.mkv also accepted).
        color: RGB tint colour.
        alpha: tint opacity in [0, 1].
        crf, preset: libx264 quality and speed.
    """

    def __init__(self, src_video, dst_path, color=(255, 0, 64), alpha: float = 0.45,
                 crf: int = 20, preset: str = "veryfast"):
        self.src = Path(src_video)
        self.dst = Path(dst_path)
        self.color = tuple(int(c) for c in color)
        self.alpha = float(alpha)
        self.crf, self.preset = int(crf), str(preset)
        self.frames_written = 0
        self._tmp = self.dst.with_name(f".{self.dst.stem}.{os.getpid()}.partial{self.dst.suffix}")
        self._in = self._out = None
        self._closed = self._aborted = False
        self._last_second = -1
        self._pending: av.VideoFrame | None = None
        try:
            self._in = av.open(str(self.src))
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
        self._vin.thread_type = "AUTO"
        self._ain = self._in.streams.audio[0] if self._in.streams.audio else None
        self._width, self._height = self._vin.codec_context.width, self._vin.codec_context.height
        if not self._width or not self._height:
            raise MediaError(f"{self.src}: video stream has no frame size")
        rate = self._vin.average_rate or self._vin.guessed_rate or Fraction(25)
        fmt = _CONTAINER_FORMATS.get(self.dst.suffix.lower(), "mp4")
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self._out = av.open(str(self._tmp), "w", format=fmt, options=options)

        vout = self._out.add_stream("libx264", rate=rate)
        # libx264 + yuv420p needs even sizes: pad odd ones by one edge row/column.
        vout.width = self._width + self._width % 2
        vout.height = self._height + self._height % 2
        vout.pix_fmt = "yuv420p"
        vout.options = {"crf": str(self.crf), "preset": self.preset}
        # Keep the source's timestamps (variable frame rates stay in sync with audio).
        vout.codec_context.time_base = self._vin.time_base
        self._vout = vout

        self._aout = None
        if self._ain is not None:
            layout = self._ain.layout.name
            channels = max(1, self._ain.channels)
            if layout not in _AAC_LAYOUTS:
                layout = _AAC_LAYOUT_BY_COUNT.get(channels, "stereo")   # more than 7: downmix
            self._aout = self._out.add_stream("aac", rate=self._ain.rate, layout=layout)
            # FFmpeg's AAC encoder takes planar float only; PyAV converts the
            # decoded samples (s16 from PCM, etc.) to the encoder's format.
            self._aout.format = "fltp"
            self._aout.bit_rate = min(64000 * channels, 384000)

        # One demuxing pass over both streams: audio packets are re-encoded and
        # muxed as they come, so audio and video stay interleaved and nothing
        # waits for the end of the file.
        self._frames = self._video_frames()
        # Time origin: the video stream's start (as io.frames' sampler uses),
        # else the first frame's pts.
        self._origin = self._vin.start_time
        self._tb = self._vin.time_base
        self._rate = Fraction(rate)

    # -- decoding

    def _video_frames(self):
        streams = [self._vin] + ([self._ain] if self._ain is not None else [])
        try:
            for packet in self._in.demux(streams):
                if packet.stream is self._vin:
                    yield from packet.decode()   # an empty packet at the end flushes
                else:
                    for frame in packet.decode():
                        self._encode_audio(frame)
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.src}: overlay failed while re-encoding the video ({e})") from e

    def _encode_audio(self, frame: av.AudioFrame | None) -> None:
        # PyAV's AAC encoder regroups samples into its 1024-sample frames itself.
        for pkt in self._aout.encode(frame):
            self._out.mux(pkt)

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

    def _encode_frame(self, src: av.VideoFrame, mask: np.ndarray | None) -> None:
        if src.format.name not in ("yuv420p", "yuvj420p"):
            src = src.reformat(format="yuv420p")
        full_range = src.format.name == "yuvj420p" or src.color_range == 2   # 2 = JPEG (full)
        W, H = self._vout.width, self._vout.height
        y = _pad_to(_plane(src, 0), H, W)             # [H, W]
        u = _pad_to(_plane(src, 1), H // 2, W // 2)   # [H/2, W/2]
        v = _pad_to(_plane(src, 2), H // 2, W // 2)
        if mask is not None:
            self._tint(y, u, v, _pad_to(mask, H, W), src.colorspace, full_range)
        out = av.VideoFrame.from_ndarray(
            np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(-1, W), format="yuv420p")
        if self.frames_written == 0:
            # Carry the source's colour description into the stream header.
            cc = self._vout.codec_context
            cc.color_range = 2 if full_range else 1
            for name in ("colorspace", "color_primaries", "color_trc"):
                with contextlib.suppress(Exception):
                    setattr(cc, name, getattr(src, name))
        out.color_range = 2 if full_range else 1
        # A stream without timestamps: number the frames at the nominal rate.
        out.pts = src.pts if src.pts is not None else round(self.frames_written / self._rate / self._tb)
        out.time_base = self._tb
        for pkt in self._vout.encode(out):
            self._out.mux(pkt)
        self.frames_written += 1

    def _tint(self, y, u, v, mask, colorspace, full_range) -> None:
        # The YCbCr matrices are affine in RGB, so blending in YUV is the same as
        # blending in RGB and converting: no RGB round trip, and untinted pixels
        # keep their decoded values exactly.
        matrix = "bt709" if colorspace == 1 else "bt601"   # 1 = ITU709
        ty, tu, tv = _rgb_to_yuv(self.color, matrix, full_range)
        a = self.alpha
        on = mask.astype(bool)
        y[on] = np.rint(y[on] + a * (ty - y[on])).astype(np.uint8)
        # Chroma is subsampled 2x2: weight the blend by the mask's coverage of each block.
        cover = on.reshape(on.shape[0] // 2, 2, on.shape[1] // 2, 2).mean(axis=(1, 3), dtype=np.float32)
        for plane, target in ((u, tu), (v, tv)):
            plane[:] = np.rint(plane + (a * cover) * (target - plane)).astype(np.uint8)

    # -- public API

    def add_second(self, second: int, mask: np.ndarray) -> None:
        """Write the frames up to and including second ``second``, that one tinted.

        Args:
            second: index l, increasing from call to call.
            mask: bool ``[H, W]`` at the source frame size.
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
                self._encode_frame(frame, mask if sec == second else None)
                self._pending = None
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
                self._encode_frame(frame, None)
                self._pending = None
            if self.frames_written == 0:
                raise MediaError(f"{self.src}: no video frames decoded for the overlay")
            for pkt in self._vout.encode(None):
                self._out.mux(pkt)
            if self._aout is not None:
                self._encode_audio(None)
            self._out.close()
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
