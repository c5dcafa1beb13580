"""Training recipes as data: :class:`TrainConfig` and preset files.

The default is the paper's recipe (ST-BAVA fine-tuning on AVSBench): SAM's
image encoder and VGGish frozen; the adapters, the audio projection, the
fusion and the mask decoder trained; BCE on the mask logits; Adam, lr 1e-4.
A preset file holds a model config and recipe overrides together::

    {"model": {"base": "tiny", ...}, "train": {"lr": 5e-4, "freeze": []}}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelConfig, resolve
from ..errors import ConfigError

FREEZABLE = ("image_encoder", "audio", "adapters", "fusion", "mask_decoder")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_clips: int = 4  # clips (of T frames) per step
    micro_batch_clips: int = 0  # clips per forward/backward, gradients summed over the step's batch; 0: the whole batch
    epochs: int = 15
    steps_per_epoch: int = 0  # 0: one pass over the training split
    warmup_steps: int = 0
    schedule: str = "constant"  # or "cosine" (to 5% of lr over all steps)
    grad_clip: float = 0.0  # max grad norm; 0 = off
    loss: str = "bce"  # "bce", or "bce+iou" (soft IoU on frames with an object)
    target: str = "full"  # "full": logits upsampled to 224 vs the masks (the authors); "lowres": logits vs area-pooled masks
    freeze: tuple[str, ...] = ("image_encoder", "audio")  # the encoder's adapters are trained unless "adapters" is listed
    fusion_variant: str = "full"  # ablations: "no_temporal", "no_audio_update"
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # Memory (docs/training.md): None picks the default. Encoder blocks recompute their activations
    # in the backward pass (default: encoders as wide as vit_b's or wider); the encoder's attention
    # runs on scaled_dot_product_attention (default: on CUDA, and on the CPU where measured faster).
    checkpoint_blocks: bool | None = None
    sdpa_attention: bool | None = None
    log_every: int = 20  # steps between loss read-outs (each one waits for the device)
    # The image encoder's compute precision: "fp32" (IEEE), or "bf16"/"fp16" autocast over float32
    # weights (its LayerNorms, the other stages and the loss float32; fp16 scales the loss).
    precision: str = "fp32"
    # Input pipeline (train/input_pipeline.py): threads building the next batches while the model
    # runs (0: the main thread, between steps), and how many batches they may build ahead.
    workers: int = 1
    prefetch_batches: int = 2
    # generated data (avs-train --generated)
    generated_train: int = 2000
    generated_val: int = 100
    # Not in the paper (off by default): with generated data and no --vggish, first train the small
    # audio backbone to name the sounding kinds for this many steps (a stand-in for VGGish's AudioSet
    # pretraining), then train ST-BAVA with it (frozen if "audio" is in ``freeze``).
    audio_pretrain_steps: int = 0
    audio_pretrain_batch: int = 64

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, source: str = "recipe") -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"{source}: schedule must be 'constant' or 'cosine', got '{self.schedule}'")
        if self.loss not in ("bce", "bce+iou"):
            raise ConfigError(f"{source}: loss must be 'bce' or 'bce+iou', got '{self.loss}'")
        if self.target not in ("full", "lowres"):
            raise ConfigError(f"{source}: target must be 'full' or 'lowres', got '{self.target}'")
        if self.batch_clips < 1:
            raise ConfigError(f"{source}: batch_clips must be >= 1, got {self.batch_clips}")
        if not 0 <= self.micro_batch_clips <= self.batch_clips:
            raise ConfigError(f"{source}: micro_batch_clips must be 0 (the whole batch) up to batch_clips "
                              f"({self.batch_clips}), got {self.micro_batch_clips}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{source}: precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.workers < 0:
            raise ConfigError(f"{source}: workers must be >= 0 (0: batches built between steps), got {self.workers}")
        if self.prefetch_batches < 1:
            raise ConfigError(f"{source}: prefetch_batches must be >= 1, got {self.prefetch_batches}")
        if self.log_every < 1:
            raise ConfigError(f"{source}: log_every must be >= 1, got {self.log_every}")
        bad = sorted(set(self.freeze) - set(FREEZABLE))
        if bad:
            raise ConfigError(f"{source}: cannot freeze {bad}; groups are {', '.join(FREEZABLE)}")
        from ..reference.variants import VARIANTS

        if self.fusion_variant not in VARIANTS:
            raise ConfigError(f"{source}: fusion_variant must be one of {', '.join(VARIANTS)}")

    @property
    def micro_clips(self) -> int:
        """Clips per forward/backward pass."""
        return self.micro_batch_clips or self.batch_clips

    def replace(self, **kw) -> "TrainConfig":
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items() if v is not None}
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(kw) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        out = dataclasses.replace(self, **kw)
        out.validate()
        return out


def load_preset_file(path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """A preset file: ``{"model": <config dict or preset name>, "train": {...}}``."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: preset file not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    unknown = sorted(set(d) - {"model", "train", "comment"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (expected 'model', 'train')")
    m = d.get("model", "tiny")
    model = ModelConfig.from_dict(m, source=str(path)) if isinstance(m, dict) else resolve(m)
    try:
        train = TrainConfig().replace(**d.get("train", {}))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return model, train
