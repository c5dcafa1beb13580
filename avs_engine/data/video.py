"""A generated sounding-object video as a muxed .mp4 (H.264 + AAC), for avs-run; the one muxer of generated videos.

Every frame is rendered at ``fps``; by default the sound follows whole
seconds (``grid="seconds"``), since avs-run's windows may start at any second.
Next to it, ``<name>.json`` holds the ground truth per second (which objects
sound, the noise-burst seconds) and the seed.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .generator import GeneratorConfig, plan_clip, render_audio, render_frame
from .kinds import SAMPLE_RATE


def write_av(path: str | Path, frame_at, n_frames: int, fps: int, size: tuple[int, int], audio_at, n_samples: int,
             sample_rate: int, channels: int = 1, *, crf: int = 23, preset: str = "medium",
             audio_bit_rate: int | None = None) -> None:
    """The one muxer of generated videos (data sets, benchmark clips, tests): H.264 (yuv420p) + AAC in mp4.

    ``frame_at(i)``: RGB uint8 [H, W, 3] of frame i (called in order); ``size``: (width, height), even.
    ``audio_at(start, n)``: float32 [channels, n] samples from ``start``. The audio is interleaved with the
    frames by time, so that a reader meets both streams in step."""
    layout = {1: "mono", 2: "stereo"}[channels]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": str(crf), "preset": preset}
        aus = out.add_stream("aac", rate=sample_rate, layout=layout)
        if audio_bit_rate:
            aus.bit_rate = audio_bit_rate
        chunk, pos = 1024, 0
        for i in range(n_frames + 1):
            while pos < n_samples and pos / sample_rate <= i / fps:
                part = np.ascontiguousarray(audio_at(pos, min(chunk, n_samples - pos)), np.float32)
                af = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
                af.sample_rate, af.pts, af.time_base = sample_rate, pos, Fraction(1, sample_rate)
                for pkt in aus.encode(af):
                    out.mux(pkt)
                pos += part.shape[1]
            if i == n_frames:
                break
            frame = av.VideoFrame.from_ndarray(frame_at(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)


def write_generated_video(path: str | Path, seed: int, seconds: int = 8, fps: int = 16, size: tuple[int, int] = (224, 224),
                          config: GeneratorConfig | None = None, crf: int = 23, grid: str = "seconds") -> dict:
    """Write clip ``seed`` (``seconds`` long) to ``path``; returns the ground-truth facts (also written as JSON).

    ``grid="vggish"`` aligns the sound to the audio examples of one window
    starting at 0 (a 5 s clip, like the AVSBench-layout copy of the same seed).
    """
    path = Path(path)
    plan = plan_clip(seed, seconds, config)
    audio = render_audio(plan, grid=grid)
    rng = np.random.default_rng([seed, 2])
    write_av(path, lambda i: render_frame(plan, i / fps, size, rng)[0], seconds * fps, fps, size,
             lambda start, n: audio[None, start:start + n], audio.size, SAMPLE_RATE, crf=crf, audio_bit_rate=64000)
    facts = {"video": path.name, "seconds": seconds, "fps": fps, "size": list(size), **plan.summary()}
    path.with_suffix(".json").write_text(json.dumps(facts, indent=1))
    return facts
