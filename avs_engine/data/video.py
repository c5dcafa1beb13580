"""A generated sounding-object video as a muxed .mp4 (H.264 + AAC), for avs-run.

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
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": str(crf), "preset": "medium"}
        aus = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        aus.bit_rate = 64000
        chunk = 1024
        pos = 0
        n_frames = seconds * fps
        for i in range(n_frames + 1):
            t_video = i / fps
            while pos < audio.size and pos / SAMPLE_RATE <= t_video:
                part = audio[pos:pos + chunk]
                af = av.AudioFrame.from_ndarray(part[None].astype(np.float32), format="fltp", layout="mono")
                af.sample_rate = SAMPLE_RATE
                af.pts = pos
                af.time_base = Fraction(1, SAMPLE_RATE)
                for pkt in aus.encode(af):
                    out.mux(pkt)
                pos += part.size
            if i == n_frames:
                break
            rgb, _ = render_frame(plan, t_video, size, rng)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)
    facts = {"video": path.name, "seconds": seconds, "fps": fps, "size": list(size), **plan.summary()}
    path.with_suffix(".json").write_text(json.dumps(facts, indent=1))
    return facts
