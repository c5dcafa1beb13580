"""HDR static metadata: what a display needs besides the colour tags to show an HDR10 video as mastered.

Two records travel with HDR10 video, in the bitstream (SEI messages) and often in the container too:

- the **mastering display colour volume** (SMPTE ST 2086): the chromaticities of the mastering display's
  primaries and white point, and its minimum and maximum luminance;
- the **content light level** (CTA-861.3): MaxCLL, the brightest pixel of the whole video, and MaxFALL, the
  brightest frame average, both in cd/m².

FFmpeg's decoders attach both to decoded frames as side data (from the SEI, or from the container's boxes); PyAV 18
hands the side data over as raw bytes (the C structs ``AVMasteringDisplayMetadata`` and ``AVContentLightMetadata``),
which :meth:`HdrStatic.from_frame` reads. x264 and x265 take the same records as encoder parameters
(``mastering-display``/``cll`` in ``x264-params``, ``master-display``/``max-cll`` in ``x265-params``) and write them
as SEI messages into the stream they encode: :meth:`HdrStatic.x264_params`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

import av

from .probe import open_container

# Transfer characteristics (FFmpeg's enum) of HDR video: SMPTE ST 2084 (PQ) and ARIB STD-B67 (HLG).
HDR_TRANSFERS = {16: "smpte2084", 18: "arib-std-b67"}
# How far into a video its first frame's side data is looked for (a stream may open on undecodable packets).
_PEEK_PACKETS = 64

_RATIONAL_PAIRS = 10   # AVMasteringDisplayMetadata: 3 primaries (x, y) r, g, b; white point (x, y); min; max
_MDCV = struct.Struct(f"<{2 * _RATIONAL_PAIRS}i2i")   # + has_primaries, has_luminance: 88 bytes
_CLL = struct.Struct("<2I")                             # MaxCLL, MaxFALL: 8 bytes

Chromaticity = tuple[Fraction, Fraction]


def _ratio(num: int, den: int) -> Fraction | None:
    return Fraction(num, den) if den else None


@dataclass(frozen=True)
class HdrStatic:
    """A video's HDR static metadata; a field is None when the source does not give it.

    ``primaries``: the mastering display's (x, y) CIE 1931 chromaticities of red, green and blue;
    ``white_point``: its (x, y); ``min_luminance``, ``max_luminance``: cd/m²; ``max_cll``, ``max_fall``: cd/m².
    """

    primaries: tuple[Chromaticity, Chromaticity, Chromaticity] | None = None
    white_point: Chromaticity | None = None
    min_luminance: Fraction | None = None
    max_luminance: Fraction | None = None
    max_cll: int | None = None
    max_fall: int | None = None

    @property
    def has_mastering_display(self) -> bool:
        return self.primaries is not None and self.white_point is not None and self.max_luminance is not None

    @property
    def has_light_level(self) -> bool:
        return self.max_cll is not None

    def __bool__(self) -> bool:
        return self.has_mastering_display or self.has_light_level

    @classmethod
    def from_frame(cls, frame: av.VideoFrame) -> "HdrStatic":
        """The records a decoded frame carries (empty when it carries none; a record of the wrong size is ignored)."""
        found: dict = {}
        container = frame.side_data
        for item in container:
            # up to PyAV 18.1.0 iterating gives the records; from 18.1.1 it gives their types (the mapping's keys)
            sd = item if hasattr(item, "type") else container[item]
            kind = getattr(sd.type, "name", str(sd.type))
            raw = bytes(sd)
            if kind == "MASTERING_DISPLAY_METADATA" and len(raw) >= _MDCV.size:
                v = _MDCV.unpack_from(raw)
                r = [_ratio(v[2 * i], v[2 * i + 1]) for i in range(_RATIONAL_PAIRS)]
                has_primaries, has_luminance = v[-2], v[-1]
                if has_primaries and None not in r[:8]:
                    found["primaries"] = ((r[0], r[1]), (r[2], r[3]), (r[4], r[5]))
                    found["white_point"] = (r[6], r[7])
                if has_luminance and r[8] is not None and r[9] is not None:
                    found["min_luminance"], found["max_luminance"] = r[8], r[9]
            elif kind == "CONTENT_LIGHT_LEVEL" and len(raw) >= _CLL.size:
                found["max_cll"], found["max_fall"] = _CLL.unpack_from(raw)
        return cls(**found)

    def x264_params(self) -> str:
        """The records as x264's ``mastering-display`` and ``cll`` parameters (the ``x264-params`` option of
        FFmpeg's libx264), "" when there are none. x264 takes chromaticities in units of 0.00002 and luminance in
        units of 0.0001 cd/m², green first (the SEI's order)."""
        parts = []
        if self.has_mastering_display:
            (rx, ry), (gx, gy), (bx, by) = self.primaries
            wx, wy = self.white_point
            xy = lambda x, y: f"({round(x * 50000)},{round(y * 50000)})"   # noqa: E731
            lo = self.min_luminance if self.min_luminance is not None else Fraction(0)
            parts.append(f"mastering-display=G{xy(gx, gy)}B{xy(bx, by)}R{xy(rx, ry)}WP{xy(wx, wy)}"
                         f"L({round(self.max_luminance * 10000)},{round(lo * 10000)})")
        if self.has_light_level:
            parts.append(f"cll={int(self.max_cll)},{int(self.max_fall or 0)}")
        return ":".join(parts)


def read_hdr_static(path) -> HdrStatic:
    """The HDR static metadata of ``path``'s first video frame (opened under the same policy as every read, see
    ``probe.open_container``); empty when it has none or no frame decodes within the first packets."""
    with open_container(path) as c:
        if not c.streams.video:
            return HdrStatic()
        vs = c.streams.video[0]
        for i, packet in enumerate(c.demux(vs)):
            if i >= _PEEK_PACKETS:
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:   # a damaged packet: the next may decode
                continue
            for frame in frames:
                return HdrStatic.from_frame(frame)
    return HdrStatic()


__all__ = ["HDR_TRANSFERS", "HdrStatic", "read_hdr_static"]
