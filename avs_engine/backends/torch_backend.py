"""The PyTorch backend: the reference model, on CPU or CUDA, in float32/float16/bfloat16.

torch is imported in ``activate_impl`` only. The reference is float32 eager;
lower precisions cast the whole model (a pass, the model code stays plain).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BackendError
from .base import Runner
from .clocks import EventStageClock, StageClock


class _TorchEvent:
    """A timing CUDA event on torch's current stream, in the shape :class:`EventStageClock` expects."""

    def __init__(self, torch) -> None:
        self._event = torch.cuda.Event(enable_timing=True)

    def record(self) -> None:
        self._event.record()

    def synchronize(self) -> None:
        self._event.synchronize()

    def elapsed_s(self, later: "_TorchEvent") -> float:
        return self._event.elapsed_time(later._event) / 1e3  # elapsed_time is in ms

DTYPES = ("float32", "float16", "bfloat16")


def describe_torch_run(device: str, dtype: str, fused: bool, swapped: Mapping[str, int],
                       global_attention_dtype: str | None = None) -> str:
    """The runner's description (result.json keeps it): with ``fused``, where the ST-BAVA attention
    ran (CUDA kernels or PyTorch) and the precision of the encoder's global attention, e.g.
    ``torch cuda float32 fused; ST-BAVA attention on the fused CUDA kernels; global attention
    float16 on the flash kernel``."""
    d = f"torch {device} {dtype}"
    if not fused:
        return d
    parts = [d + " fused"]
    if device.startswith("cuda"):
        parts.append("ST-BAVA attention on the fused CUDA kernels" if swapped.get("fusion_blocks") else "ST-BAVA attention in PyTorch")
    if swapped.get("global_attention"):
        ga = dtype if dtype != "float32" else (global_attention_dtype or "float32")
        parts.append(f"global attention {ga} on the flash kernel")
    else:
        parts.append(f"global attention {dtype} in PyTorch")
    return "; ".join(parts)


def torch_device(torch, name: str):
    """``name`` (cpu, cuda, cuda:N) as a ``torch.device``, or one :class:`BackendError` line
    when this machine has no such device (not a CUDA error at the first tensor moved there)."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BackendError(f"'{name}' is not a device (cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device '{name}' requested but CUDA is not available here (use --device cpu)")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            have = ", ".join(f"cuda:{i}" for i in range(n))
            raise BackendError(f"device '{name}' requested but this machine has {n} CUDA device(s) ({have})")
    return dev


class TorchRunner(Runner):
    name = "torch"

    def __init__(
        self,
        weights: str | Path | None = None,
        config=None,
        device: str = "cpu",
        dtype: str = "float32",
        vggish: str | Path | None = None,
        model=None,
        seed: int | None = None,
        allow_missing_fusion: bool = False,
        fused: bool = False,
        global_attention_dtype: str | None = None,
        threads: int | None = None,
    ) -> None:
        """``weights``: a bundle (its config is used) or a checkpoint of any
        supported layout (``config`` then names the preset/config file).
        ``model``: an already built STBAVA (tests). ``seed`` without weights:
        random initialisation (tests and benchmarks only). ``fused``: swap in the
        exact-algebra ST-BAVA block and the folded mask-decoder attention (any
        device) and, on CUDA, the fused CUDA attention kernels (avs_engine.kernels).
        ``global_attention_dtype``: with ``fused`` on CUDA, the precision of the SAM encoder's
        global attention in a float32 model: ``float16``/``bfloat16`` run it on the flash kernel,
        ``float32`` (and None, the default: the model's dtype) keep PyTorch's attention. A
        float16/bfloat16 model computes it in its own dtype. ``description`` says which ran.
        ``threads``: torch's intra-op CPU threads (set at activation; None: torch's default)."""
        super().__init__()
        if dtype not in DTYPES:
            raise BackendError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
        if global_attention_dtype not in (None, *DTYPES):
            raise BackendError(f"global_attention_dtype must be one of {', '.join(DTYPES)}, got '{global_attention_dtype}'")
        if dtype != "float32" and global_attention_dtype not in (None, dtype):
            raise BackendError(f"global attention in {global_attention_dtype}: a {dtype} model computes it in {dtype}")
        self.weights, self.config_spec, self.device_name, self.dtype_name = weights, config, device, dtype
        self.vggish, self.model, self.seed = vggish, model, seed
        self.allow_missing_fusion = allow_missing_fusion
        self.fused = fused
        self.global_attention_dtype = global_attention_dtype
        self.threads = threads
        self.swapped: dict[str, int] = {}
        self.warnings: list[str] = []
        self.load_report = None

    @staticmethod
    def unavailable_reason() -> str | None:
        import importlib.util

        # find_spec, not import: asking must not load torch into an engine-only process.
        for mod in ("torch", "torchvision", "segment_anything"):
            if importlib.util.find_spec(mod) is None:
                return f"not available: {mod} is not installed (pip install 'avs-engine[torch]')"
        return None

    def activate_impl(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise BackendError(f"torch backend {reason}")
        if "torch" not in sys.modules:
            # The pipeline decodes and writes on other threads while the model runs: OpenMP workers
            # that spin between parallel regions then fight those threads for the cores (measured on
            # 2 cores: the demo's model stages 5-20x slower). Idle workers should sleep instead.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))

        from ..reference.build import build_model
        from ..reference.checkpoint import is_bundle, load_bundle, load_checkpoint

        self.device = torch_device(torch, self.device_name)
        self.dtype = getattr(torch, self.dtype_name)
        if self.global_attention_dtype not in (None, self.dtype_name) and not (self.fused and self.device.type == "cuda"):
            raise BackendError(f"global attention in {self.global_attention_dtype} needs fused=True on a CUDA device "
                               f"(the flash kernel); elsewhere it computes in the model's {self.dtype_name}")
        if self.model is None:
            if self.weights is not None and is_bundle(self.weights):
                self.model, self.load_report = load_bundle(self.weights)
            elif self.weights is not None:
                if self.config_spec is None:
                    raise BackendError(f"{self.weights}: not a bundle, so the model config is needed (--config PRESET|FILE)")
                self.model = build_model(self.config_spec, device="cpu" if self.allow_missing_fusion else "meta")
                self.load_report = load_checkpoint(
                    self.model, self.weights, vggish=self.vggish, allow_missing_fusion=self.allow_missing_fusion
                )
            elif self.seed is not None:
                self.model = build_model(self.config_spec or "tiny", seed=self.seed)
            else:
                raise BackendError("no weights given (--weights FILE)")
        self.model = self.model.to(device=self.device, dtype=self.dtype).eval()
        if self.device.type == "cuda":
            from ..exact.sdpa_attention import use_sdpa_attention

            use_sdpa_attention(self.model)  # no [heads, N, N] scores; --fused swaps its kernels in over it
        if self.fused:
            from ..exact.folded_decoder import fold_decoder_attention
            from ..exact.fused_fusion import fuse_stbava

            fuse_stbava(self.model)
            fold_decoder_attention(self.model.mask_decoder)
            self.swapped = {"fusion_blocks": len(self.model.layers)}
            if self.device.type == "cuda":
                from ..exact.torch_ops import use_cuda_kernels

                ga = getattr(torch, self.global_attention_dtype) if self.global_attention_dtype else None
                self.swapped = use_cuda_kernels(self.model, compute_dtype=ga, warn=self._kernel_warning)
        self.config = self.model.config
        self.description = describe_torch_run(str(self.device), self.dtype_name, self.fused, self.swapped,
                                              self.global_attention_dtype)
        self._torch = torch

    def _kernel_warning(self, msg: str) -> None:
        """A fused-kernel fallback: kept in ``warnings`` (the caller shows them after activation);
        once active, also printed, since no one reads the list any more."""
        if msg in self.warnings:
            return
        self.warnings.append(msg)
        if self.is_active:
            print(f"warning: {msg}", file=sys.stderr, flush=True)

    def _in(self, a: np.ndarray):
        return self._torch.from_numpy(np.ascontiguousarray(a)).to(self.device, self.dtype)

    def _out(self, t) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    def run_impl(self, stage: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = self.model
        x = {k: self._in(v) for k, v in inputs.items()}
        with self._torch.inference_mode():
            if stage == "audio":
                return {"a128": self._out(m.embed_audio(x["log_mel"]))}
            if stage == "image_encoder":
                return {"enc": self._out(self._encode(x["image"], x["a128"]))}
            if stage == "fusion":
                dense, sparse = m.fuse(x["enc"], x["a128"])
                return {"dense": self._out(dense), "sparse": self._out(sparse)}
            if stage == "mask_decoder":
                return {"logits": self._out(m.decode(x["enc"], x["dense"], x["sparse"]))}
        raise AssertionError(stage)

    def _encode(self, image, a128):
        """Frames are independent in the encoder: on CPU run them one at a time, since SAM's
        global blocks hold [T*heads, N, N] scores (vit_b, T=5: killed at 19 GB)."""
        if self.device.type != "cpu" or image.shape[0] == 1:
            return self.model.encode(image, a128)
        return self._torch.cat([self.model.encode(image[i : i + 1], a128[i : i + 1]) for i in range(image.shape[0])])

    def stage_clock(self) -> StageClock:
        if self.device.type == "cuda":
            torch = self._torch

            def new_event():
                return _TorchEvent(torch)

            return EventStageClock(new_event, "CUDA events (torch.cuda.Event) on the current stream")
        return StageClock()

    def clip_impl(self, image: np.ndarray, log_mel: np.ndarray, clock: StageClock) -> np.ndarray:
        """The four stages with the intermediate tensors on the device; same result as stage by stage."""
        m = self.model
        with self._torch.inference_mode():
            with clock.stage("audio"):
                a128 = m.embed_audio(self._in(log_mel))
            with clock.stage("image_encoder"):
                enc = self._encode(self._in(image), a128)
            with clock.stage("fusion"):
                dense, sparse = m.fuse(enc, a128)
            with clock.stage("mask_decoder"):
                logits = m.decode(enc, dense, sparse)
            return self._out(logits)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def deactivate_impl(self) -> None:
        self.model = self.model if self.weights is None else None
