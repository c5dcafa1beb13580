"""The PyTorch backend: the reference model, on CPU or CUDA, in float32/float16/bfloat16.

torch is imported in ``activate_impl`` only. The reference is float32 eager
(IEEE float32: TF32 only when asked for). bfloat16/float16 are mixed
precision over float32 weights (``exact/mixed_precision.py``): the image
encoder under autocast with its norms and softmax statistics in float32, the
other stages in float32. The model code stays plain; these are passes.
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
# The image encoder's attention: SDPA with the rel-pos bias folded into q/k (default), SDPA with the
# bias as a materialised additive mask, SAM's own code (docs/runtime.md compares their costs).
ATTENTIONS = {"sdpa": "folded", "sdpa_bias": "bias", "sam": None}


def describe_torch_run(device: str, dtype: str, fused: bool, swapped: Mapping[str, int],
                       global_attention_dtype: str | None = None, tf32: bool = False) -> str:
    """The runner's description (result.json keeps it): the precision (``bfloat16 autocast``:
    mixed precision over float32 weights; ``float32 tf32``), with ``fused`` where the ST-BAVA
    attention ran (CUDA kernels or PyTorch) and the precision of the encoder's global attention,
    e.g. ``torch cuda float32 fused; ST-BAVA attention on the fused CUDA kernels; global
    attention float16 on the flash kernel``."""
    d = f"torch {device} {dtype}" + (" autocast" if dtype != "float32" else " tf32" if tf32 else "")
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
        tf32: bool = False,
        frames_per_call: int | None = None,
        device_masks: bool | None = None,
        attention: str = "sdpa",
        kernels: tuple | None = None,
        compile: bool = False,
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
        ``threads``: torch's intra-op CPU threads (set at activation; None: torch's default).
        ``dtype`` float16/bfloat16: mixed precision, the weights stay float32 (module docstring).
        ``tf32``: TF32 tensor-core matmuls in a float32 run on CUDA (off: IEEE float32).
        ``frames_per_call``: image-encoder frames per call; None: one on the CPU, on a GPU as many
        as half the free memory holds (``frame_budget.py``).
        ``device_masks``: offer :meth:`masks_function` (upsampling and thresholding on the model's
        device); None: on CUDA only.
        ``attention``: the image encoder's attention: ``sdpa`` (default; scaled-dot-product
        attention with the relative-position bias folded in, no [heads, N, N] score matrix; equal
        to SAM's form to float rounding, and faster on CPUs and GPUs), ``sdpa_bias`` (SDPA at the
        head width with the bias as a materialised [heads, N, N] mask: for measuring) or ``sam``
        (SAM's own code).
        ``kernels``: with ``fused``, (ST-BAVA kernels factory, flash kernel) to use instead of
        building the CUDA kernels, on any device: the CPU stand-in of a GPU run (tests and the GPU
        check's dry run pass ``devtools.host_emulation``'s).
        ``compile``: ``torch.compile`` the image encoder's blocks (``exact/compiled_blocks.py``; blocks
        holding the fused flash kernel stay eager). The first clip pays the compilation."""
        super().__init__()
        if dtype not in DTYPES:
            raise BackendError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
        if global_attention_dtype not in (None, *DTYPES):
            raise BackendError(f"global_attention_dtype must be one of {', '.join(DTYPES)}, got '{global_attention_dtype}'")
        if dtype != "float32" and global_attention_dtype not in (None, dtype):
            raise BackendError(f"global attention in {global_attention_dtype}: a {dtype} model computes it in {dtype}")
        if tf32 and dtype != "float32":
            raise BackendError(f"TF32 applies to float32 runs; a {dtype} run computes its matmuls in {dtype}")
        if attention not in ATTENTIONS:
            raise BackendError(f"attention must be one of {', '.join(ATTENTIONS)}, got '{attention}'")
        if attention == "sam" and dtype != "float32":
            raise BackendError(f"SAM's own attention would softmax in {dtype}; {dtype} runs the SDPA form, "
                               "whose softmax statistics stay float32")
        if frames_per_call is not None and frames_per_call < 1:
            raise BackendError(f"frames_per_call must be at least 1, got {frames_per_call}")
        self.weights, self.config_spec, self.device_name, self.dtype_name = weights, config, device, dtype
        self.vggish, self.model, self.seed = vggish, model, seed
        self.allow_missing_fusion = allow_missing_fusion
        self.fused = fused
        self.global_attention_dtype = global_attention_dtype
        self.threads = threads
        self.tf32 = tf32
        self.frames_per_call = frames_per_call
        self.device_masks = device_masks
        self.attention = attention
        self.kernels = kernels
        self.compile = compile
        self.compiled_blocks = 0
        self.swapped: dict[str, int] = {}
        self.held_weights = 0
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
        if self.tf32 and self.device.type != "cuda":
            raise BackendError(f"TF32 is a CUDA tensor-core format; this run is on {self.device} (leave --tf32 out)")
        # float16/bfloat16: autocast, the encoder's matrix weights held in that dtype; None: plain float32
        self.compute_dtype = None if self.dtype_name == "float32" else self.dtype
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
        elif self.compute_dtype is not None:
            import copy

            # The encoder's weights are about to be replaced by low-precision copies: not in the caller's model.
            self.model = copy.deepcopy(self.model)
        self.model = self.model.to(device=self.device, dtype=torch.float32).eval()
        if self.compute_dtype is not None:
            from ..exact.held_weights import hold_weights_in
            from ..exact.mixed_precision import prepare_mixed_precision

            # SDPA attention (its softmax statistics float32), float32 norms
            prepare_mixed_precision(self.model, ATTENTIONS[self.attention])
            # Matrix weights cast once, not by autocast at every call (the same products, bit for bit).
            self.held_weights = hold_weights_in(self.model.image_encoder, self.compute_dtype)
        elif self.attention != "sam":
            from ..exact.sdpa_attention import use_sdpa_attention

            # No [heads, N, N] scores; --fused swaps its kernels in over it. Measured on a 2-core CPU,
            # vit_b (benchmarks/torch_precision.md): 1.43x faster than SAM's form, logits equal to 2e-6.
            use_sdpa_attention(self.model, ATTENTIONS[self.attention])
        if self.fused:
            from ..exact.folded_decoder import fold_decoder_attention
            from ..exact.fused_fusion import fuse_stbava

            fuse_stbava(self.model)
            fold_decoder_attention(self.model.mask_decoder)
            self.swapped = {"fusion_blocks": len(self.model.layers)}
            if self.device.type == "cuda" or self.kernels is not None:
                from ..exact.torch_ops import use_cuda_kernels

                ga = getattr(torch, self.global_attention_dtype) if self.global_attention_dtype else self.compute_dtype
                stbava, relpos = self.kernels or (None, None)
                self.swapped = use_cuda_kernels(self.model, compute_dtype=ga, stbava_kernels=stbava, relpos_kernel=relpos,
                                                warn=self._kernel_warning)
        if self.compile:
            from ..exact.compiled_blocks import compile_encoder_blocks, compile_unavailable

            reason = compile_unavailable(torch, self.device)
            if reason:
                raise BackendError(f"--compile: {reason}")
            self.compiled_blocks = compile_encoder_blocks(self.model.image_encoder)
        self.config = self.model.config
        if self.tf32:
            from ..exact.mixed_precision import allow_tf32

            self._tf32_before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            allow_tf32(True)
        self.description = describe_torch_run(str(self.device), self.dtype_name, self.fused, self.swapped,
                                              self.global_attention_dtype, self.tf32)
        if self.compile:
            n = len(self.model.image_encoder.blocks)
            self.description += f"; {self.compiled_blocks} of {n} encoder blocks compiled (torch.compile)"
        self.stage_precision = self._stage_precision()
        if self.frames_per_call is None and self.device.type == "cuda":
            from .frame_budget import encoder_frames_per_call

            free, _ = torch.cuda.mem_get_info(self.device)
            self.frames_per_call = encoder_frames_per_call(self.config, free, T=1 << 10)
        self._torch = torch

    def _stage_precision(self) -> dict[str, str]:
        """What each stage computes in (result.json), the fused kernels included."""
        from ..exact.mixed_precision import stage_precision

        p = stage_precision(self.dtype_name, self.tf32, held_weights=self.held_weights > 0)
        if self.swapped.get("global_attention"):
            ga = self.global_attention_dtype or self.dtype_name
            p["image_encoder"] += f"; global attention {ga} on the flash kernel"
        if self.swapped.get("fusion_blocks") and self.device.type == "cuda":
            p["fusion"] += " on the fused CUDA kernels"
        return p

    def _kernel_warning(self, msg: str) -> None:
        """A fused-kernel fallback: kept in ``warnings`` (the caller shows them after activation);
        once active, also printed, since no one reads the list any more."""
        if msg in self.warnings:
            return
        self.warnings.append(msg)
        if self.is_active:
            print(f"warning: {msg}", file=sys.stderr, flush=True)

    def _in(self, a: np.ndarray):
        # float32 in every precision: autocast casts where the policy computes low
        return self._torch.from_numpy(np.ascontiguousarray(a)).to(self.device, self._torch.float32)

    def _precision(self, stage: str):
        """The autocast context ``stage`` runs in (float32 outside the mixed-precision stages)."""
        from ..exact.mixed_precision import autocast

        return autocast(stage, self.device.type, self.compute_dtype)

    def _out(self, t) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    def run_impl(self, stage: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = self.model
        x = {k: self._in(v) for k, v in inputs.items()}
        with self._torch.inference_mode(), self._precision(stage):
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
        """Frames are independent in the encoder: run them ``frames_per_call`` at a time. On the
        CPU one at a time (SAM's own attention holds [T*heads, N, N] scores per global block:
        vit_b at T=5 was killed at 19 GB); on a GPU as many as the memory budget allows (any T)."""
        k = self.frames_per_call or 1
        T = image.shape[0]
        if T <= k:
            return self.model.encode(image, a128)
        return self._torch.cat([self.model.encode(image[i : i + k], a128[i : i + k]) for i in range(0, T, k)])

    def masks_function(self):
        """On CUDA (or when ``device_masks`` says so): logits -> masks on the model's device, the same
        two bilinear upsamplings as :func:`avs_engine.io.postprocess.logits_to_masks` (to ``mid``
        squared, then the frame size) and the threshold, so that only the bool masks cross to the
        host. Called on the writer's thread."""
        on = self.device.type == "cuda" if self.device_masks is None else self.device_masks
        if not on:
            return None
        torch, device = self._torch, self.device
        F = torch.nn.functional

        def logits_to_masks(logits: np.ndarray, size_hw: tuple[int, int], mid: int = 1024) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(logits, np.float32)).to(device)  # [T, 1, L, L]
                if mid:
                    x = F.interpolate(x, (mid, mid), mode="bilinear", align_corners=False)
                x = F.interpolate(x, (int(size_hw[0]), int(size_hw[1])), mode="bilinear", align_corners=False)
                return (x[:, 0] > 0).cpu().numpy()  # bool [T, H, W]

        return logits_to_masks

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
            with clock.stage("audio"), self._precision("audio"):
                a128 = m.embed_audio(self._in(log_mel))
            with clock.stage("image_encoder"), self._precision("image_encoder"):
                enc = self._encode(self._in(image), a128)
            with clock.stage("fusion"), self._precision("fusion"):
                dense, sparse = m.fuse(enc, a128)
            with clock.stage("mask_decoder"), self._precision("mask_decoder"):
                logits = m.decode(enc, dense, sparse)
            return self._out(logits)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def deactivate_impl(self) -> None:
        if self.tf32:
            torch = self._torch
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._tf32_before
        self.model = self.model if self.weights is None else None
