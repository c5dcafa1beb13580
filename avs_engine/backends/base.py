"""The runner interface every backend implements (after Polygraphy's ``BaseRunner``).

The base class holds the rules: a runner must be activated before it runs,
inputs are checked against the stage's declared names and shapes
(``avs_engine.artifacts.spec``), outputs are checked too. A backend fills in
``activate_impl``, ``run_impl`` and ``deactivate_impl``; nothing touches a
device before ``activate()``.
"""

from __future__ import annotations

import importlib
from typing import Mapping, Sequence

import numpy as np

from ..errors import BackendError
from .clocks import StageClock
from ..artifacts.spec import STAGES, check_arrays, dims_for


class Runner:
    """Runs the four stages of one model on named numpy arrays.

    Subclasses set ``name`` and implement the ``*_impl`` methods.
    ``config`` (a ModelConfig) is known after activation.
    """

    name = "base"

    def __init__(self) -> None:
        self.is_active = False
        self.config = None
        self.description = self.name  # e.g. "torch cpu float32"; filled in by activate_impl
        # What each stage computes in, e.g. {"image_encoder": "bfloat16 (autocast; LayerNorm float32)"};
        # filled in by activate_impl where a backend knows (result.json keeps it).
        self.stage_precision: dict[str, str] = {}

    # -- rules -------------------------------------------------------------------------------

    def activate(self) -> "Runner":
        if self.is_active:
            return self
        self.activate_impl()
        if self.config is None:
            raise AssertionError(f"{type(self).__name__}.activate_impl must set self.config")
        self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def run(self, stage: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one stage. inputs/outputs: name -> array with the shapes of ``spec.STAGES[stage]``."""
        if not self.is_active:
            raise AssertionError(f"runner '{self.name}' used before activate()")
        if stage not in STAGES:
            raise BackendError(f"unknown stage '{stage}'; stages are {', '.join(STAGES)}")
        spec = STAGES[stage]
        T = int(next(iter(inputs.values())).shape[0]) if inputs else 0
        dims = dims_for(self.config, T)
        check_arrays(spec, inputs, dims)
        outputs = self.run_impl(stage, inputs)
        check_arrays(spec, outputs, dims, outputs=True)
        return outputs

    def masks_function(self):
        """A function computing masks where the model ran, with :func:`avs_engine.io.postprocess.logits_to_masks`'s
        signature and result (logits float32 [T,1,L,L], (H, W), mid -> bool [T,H,W]), or None: the caller
        upsamples and thresholds on the host. The torch backend offers one on CUDA."""
        return None

    def run_clip(self, image: np.ndarray, log_mel: np.ndarray, clock: StageClock | None = None) -> np.ndarray:
        """The whole model on one clip: image [T,3,S,S], log_mel [T,1,96,64] -> logits [T,1,L,L].

        The one way every caller (``avs-run``, ``avs-eval``, ``avs-bench``, the
        scale-out jobs) runs the model. Backends chain the four stages where
        their tensors live (on the device for the GPU backends: only the
        image, log-mel and logits cross to the host) and time each stage on
        ``clock`` (from :meth:`stage_clock`; its ``seconds()`` after the call).
        """
        if not self.is_active:
            raise AssertionError(f"runner '{self.name}' used before activate()")
        T = int(image.shape[0]) if image.ndim else 0
        dims = dims_for(self.config, T)
        check_arrays(STAGES["audio"], {"log_mel": log_mel}, dims)
        check_arrays(STAGES["image_encoder"], {"image": image}, dims, partial=True)
        logits = self.clip_impl(image, log_mel, clock if clock is not None else self.stage_clock())
        check_arrays(STAGES["mask_decoder"], {"logits": logits}, dims, outputs=True)
        return logits

    def run_clips(self, clips: Sequence[tuple[np.ndarray, np.ndarray]], clock: StageClock | None = None) -> list[np.ndarray]:
        """Several clips at once: ``(image [T_i,3,S,S], log_mel [T_i,1,96,64])`` each (their T may differ)
        -> each clip's logits ``[T_i,1,L,L]``, equal to :meth:`run_clip` on each.

        Chained where the backend's tensors live, as :meth:`run_clip`; ``clock`` receives the batch's
        seconds per stage. A backend that gains from batching the frame-wise stages (audio, image
        encoder, mask decoder) across clips overrides :meth:`clips_impl` (the fusion mixes the
        frames of one clip only, so it runs clip by clip)."""
        if not self.is_active:
            raise AssertionError(f"runner '{self.name}' used before activate()")
        for image, log_mel in clips:
            dims = dims_for(self.config, int(image.shape[0]) if image.ndim else 0)
            check_arrays(STAGES["audio"], {"log_mel": log_mel}, dims)
            check_arrays(STAGES["image_encoder"], {"image": image}, dims, partial=True)
        out = self.clips_impl(list(clips), clock if clock is not None else self.stage_clock()) if clips else []
        for (image, _), logits in zip(clips, out):
            check_arrays(STAGES["mask_decoder"], {"logits": logits}, dims_for(self.config, int(image.shape[0])), outputs=True)
        return out

    def clips_impl(self, clips: list[tuple[np.ndarray, np.ndarray]], clock: StageClock) -> list[np.ndarray]:
        """Clip by clip through :meth:`clip_impl` (the intermediates stay where that keeps them)."""
        return [self.clip_impl(image, log_mel, clock) for image, log_mel in clips]

    def stage_clock(self) -> StageClock:
        """A clock for :meth:`run_clip`'s stages (host clock; GPU backends return device events)."""
        return StageClock()

    def clip_impl(self, image: np.ndarray, log_mel: np.ndarray, clock: StageClock) -> np.ndarray:
        """The four stages through :meth:`run_impl`, on the host (backends that keep tensors on a device override)."""
        with clock.stage("audio"):
            a128 = self.run_impl("audio", {"log_mel": log_mel})["a128"]
        with clock.stage("image_encoder"):
            enc = self.run_impl("image_encoder", {"image": image, "a128": a128})["enc"]
        with clock.stage("fusion"):
            fused = self.run_impl("fusion", {"enc": enc, "a128": a128})
        with clock.stage("mask_decoder"):
            return self.run_impl("mask_decoder", {"enc": enc, **fused})["logits"]

    # -- for subclasses ----------------------------------------------------------------------

    def activate_impl(self) -> None:
        raise NotImplementedError

    def run_impl(self, stage: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        pass


# name -> "module:Class"; modules are imported only when that backend is asked for.
_BACKENDS = {
    "torch": "avs_engine.backends.torch_backend:TorchRunner",
    "onnxruntime": "avs_engine.backends.onnxruntime_backend:OnnxRuntimeRunner",
    "tensorrt": "avs_engine.backends.tensorrt_backend:TensorRTRunner",
}


def _runner_class(name: str):
    try:
        target = _BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend '{name}'; choose one of {', '.join(_BACKENDS)}") from None
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if (e.name or "").startswith("avs_engine"):
            raise BackendError(f"backend '{name}' is not part of this version of avs-engine yet") from None
        raise BackendError(f"backend '{name}' is not available: module {e.name} is not installed") from None
    return getattr(module, cls_name)


def create_runner(name: str, **kwargs) -> Runner:
    """A runner for backend ``name``, not yet activated."""
    return _runner_class(name)(**kwargs)


def available_backends() -> dict[str, str]:
    """backend -> "ok" or the reason it cannot run here (framework import only; no device touched)."""
    out = {}
    for name in _BACKENDS:
        try:
            cls = _runner_class(name)
            reason = cls.unavailable_reason() if hasattr(cls, "unavailable_reason") else None
            out[name] = reason or "ok"
        except BackendError as e:
            out[name] = str(e)
    return out
