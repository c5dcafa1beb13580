"""The model side of the scale-out jobs: a picklable runner recipe, and clips of several videos in one batch.

:class:`RunnerSpec` is what travels to a Ray actor or Serve replica, which
builds and activates its runner once. :func:`run_clips` runs many clips at
once through the four stages with the runner's own stage method
(``Runner.run``): the frame-wise stages (audio, image encoder, mask decoder)
take the frames of every clip together, up to ``max_frames`` per call, and
only the fusion, whose temporal attention mixes the frames of one clip, runs
clip by clip. Each frame's result is the one ``Runner.run_clip`` gives (the
tests compare them). No Ray here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..backends.base import Runner, create_runner
from ..runtime.model_step import ModelStep

# Frames per call of the frame-wise stages on a GPU, when the runner does not say (TensorRT: its engines' T range).
DEFAULT_MAX_FRAMES = {"onnxruntime": 32, "torch": 16, "tensorrt": 16}


@dataclass(frozen=True)
class RunnerSpec:
    """How to build one runner: picklable, so that each actor or replica builds its own.

    ``backend``: ``onnxruntime``, ``tensorrt`` or ``torch``. ``engine_dir``: ONNX
    graphs (``manifest.json``) or TensorRT engines (``engines.json``).
    ``weights``/``config``/``vggish``: the torch backend's checkpoint.
    ``device``: ``cpu``, ``cuda`` or ``cuda:N``. ``precision``: ``fp32``/``fp16``
    (``bf16`` on torch), None for the backend's default. ``threads``: ONNX
    Runtime's intra-op threads (None: its own choice).
    """

    backend: str = "onnxruntime"
    engine_dir: str | None = None
    weights: str | None = None
    config: str | None = None
    vggish: str | None = None
    device: str = "cpu"
    precision: str | None = None
    threads: int | None = None
    options: dict = field(default_factory=dict)  # extra keyword arguments for the runner (cuda_graph, fused, ...)

    @property
    def device_id(self) -> int:
        return int(self.device.split(":")[1]) if ":" in self.device else 0

    def create(self) -> Runner:
        """The runner (not activated)."""
        if self.backend == "onnxruntime":
            return create_runner("onnxruntime", engine_dir=self.engine_dir,
                                 providers=["cpu"] if self.device == "cpu" else ["cuda"], precision=self.precision,
                                 device_id=self.device_id, threads=self.threads, **self.options)
        if self.backend == "tensorrt":
            return create_runner("tensorrt", engine_dir=self.engine_dir, device_id=self.device_id, **self.options)
        dtype = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[self.precision or "fp32"]
        return create_runner(self.backend, weights=self.weights, config=self.config, vggish=self.vggish,
                             device=self.device, dtype=dtype, **self.options)

    def img_size(self) -> int | None:
        """The encoder's input side S from the graphs' or engines' manifest (None for torch: ask the runner)."""
        if self.backend == "onnxruntime" and self.engine_dir:
            from ..artifacts.graph_manifest import read_manifest

            return read_manifest(Path(self.engine_dir), check_files=False).model_config().encoder.img_size
        if self.backend == "tensorrt" and self.engine_dir:
            from ..artifacts.engine_manifest import read_engine_manifest

            return read_engine_manifest(Path(self.engine_dir), check_files=False).model_config().encoder.img_size
        return None


def on_cpu(runner: Runner) -> bool:
    device = getattr(runner, "device_type", None) or getattr(getattr(runner, "device", None), "type", None)
    return runner.name != "tensorrt" and (device or "cpu") == "cpu"


def default_max_frames(runner: Runner) -> int:
    """Frames per call of the frame-wise stages: 0 (clip by clip) on CPU, a TensorRT engine's largest T, else a
    per-backend default.

    On CPU a larger batch buys no speed (the cores are busy at one clip) and costs memory: measured with
    the demo model on ONNX Runtime, 8 clips ran no faster in batches of 5-40 frames than clip by clip,
    while the peak RSS grew from 0.2 GB to 0.8 GB at 40 frames."""
    if on_cpu(runner):
        return 0
    manifest = getattr(runner, "manifest", None)
    t = getattr(manifest, "T", None)
    if runner.name == "tensorrt" and t is not None:
        return int(t.max)
    return DEFAULT_MAX_FRAMES.get(runner.name, 16)


def describe(runner: Runner, spec: RunnerSpec) -> dict:
    """What ``result.json`` records about the model."""
    d = {"backend": runner.name, "runner": runner.description, "preset": runner.config.name}
    if spec.engine_dir:
        d["engine_dir"] = str(spec.engine_dir)
    if spec.weights:
        d["weights"] = str(spec.weights)
    return d


def _chunked(run, n: int, step: int, **arrays) -> dict[str, np.ndarray]:
    """``run(**slices)`` over ``[i, i+step)`` for i in range(0, n, step); the outputs concatenated by name."""
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, n, step):
        for k, v in run({name: a[i: i + step] for name, a in arrays.items()}).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: (v[0] if len(v) == 1 else np.concatenate(v)) for k, v in parts.items()}


def run_clips(model: ModelStep, clips: Sequence[tuple[np.ndarray, np.ndarray]], max_frames: int,
              timings: dict[str, float] | None = None) -> list[np.ndarray]:
    """Many clips through the model at once.

    ``clips``: ``(frames uint8 [T_i, s, s, 3], log_mel float32 [T_i, 1, 96, 64])``
    each (the clips' T may differ). Returns each clip's logits float32
    ``[T_i, 1, L, L]``, as ``model.logits`` gives them one clip at a time.
    ``max_frames``: frames per call of the audio, image-encoder and mask-decoder
    stages (their frames are independent); 0 or less runs clip by clip through
    ``run_clip`` (the runner's own chain: tensors stay on its device).
    ``timings`` (if given) receives seconds per stage for the whole batch.
    """
    if not clips:
        return []
    timings = timings if timings is not None else {}
    if max_frames <= 0:
        out = []
        for frames, log_mel in clips:
            t: dict[str, float] = {}
            out.append(model.logits(frames, log_mel, t))
            for k, v in t.items():
                timings[k] = timings.get(k, 0.0) + v
        return out
    runner = model.runner
    sizes = [int(f.shape[0]) for f, _ in clips]
    bounds = np.cumsum([0, *sizes])
    n = int(bounds[-1])

    def timed(name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0

    image = timed("preprocess", lambda: np.concatenate([model.image(f) for f, _ in clips]))
    log_mel = np.concatenate([np.asarray(m, np.float32) for _, m in clips])
    a128 = timed("audio", _chunked, lambda x: runner.run("audio", x), n, max_frames, log_mel=log_mel)["a128"]
    enc = timed("image_encoder", _chunked, lambda x: runner.run("image_encoder", x), n, max_frames,
                image=image, a128=a128)["enc"]
    del image
    dense, sparse = [], []
    t0 = time.perf_counter()
    for a, b in zip(bounds[:-1], bounds[1:]):
        fused = runner.run("fusion", {"enc": enc[a:b], "a128": a128[a:b]})
        dense.append(fused["dense"])
        sparse.append(fused["sparse"])
    timings["fusion"] = timings.get("fusion", 0.0) + time.perf_counter() - t0
    logits = timed("mask_decoder", _chunked, lambda x: runner.run("mask_decoder", x), n, max_frames,
                   enc=enc, dense=np.concatenate(dense), sparse=np.concatenate(sparse))["logits"]
    return [logits[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


__all__ = ["DEFAULT_MAX_FRAMES", "RunnerSpec", "default_max_frames", "describe", "on_cpu", "run_clips"]
