"""Model configurations as data: named presets and JSON config files.

A :class:`ModelConfig` fully determines the architecture (and therefore the
checkpoint layout). ``from_name("vit_h")`` gives the authors' model;
``tiny`` is a small model for tests on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class EncoderConfig:
    """SAM ViT image encoder (+ audio adapters)."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    out_chans: int = 256
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    adapter_dim: int = 512  # hidden width of the audio adapters (Linear(128, adapter_dim) per block)

    @property
    def grid(self) -> int:
        """Side of the encoder's output token grid (64 for 1024 / 16)."""
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class AudioConfig:
    """Audio backbone with VGGish's interface: log-mel [T,1,96,64] -> [T,embed_dim]."""

    kind: str = "vggish"  # "vggish" (torchvggish layout) or "small" (a light CNN, same interface)
    embed_dim: int = 128
    # For kind="small": channel widths of its conv stages.
    channels: tuple[int, ...] = (16, 32, 64, 128)


@dataclass(frozen=True)
class FusionConfig:
    """ST-BAVA audio-visual fusion."""

    dim: int = 256  # = SAM's prompt embedding dim
    depth: int = 5  # 5 for S4 weights, 7 for MS3
    num_heads: int = 8
    mlp_dim: int = 256  # MLPBlock(dim, dim) in the authors' code
    dropout: float = 0.1  # inactive in eval(); kept so training matches the authors
    # Ablations keep every weight and drop updates: "no_temporal" (no avt updates), "no_audio_update"
    # (the audio token gets no attention update). Part of the model: bundles, graphs and manifests carry it.
    variant: str = "full"


FUSION_VARIANTS = ("full", "no_temporal", "no_audio_update")


@dataclass(frozen=True)
class DecoderConfig:
    """SAM mask decoder (two-way transformer)."""

    transformer_depth: int = 2
    mlp_dim: int = 2048
    num_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the architecture of an ST-BAVA model."""

    name: str = "vit_h"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    output_size: int = 224  # the authors' evaluation resolution

    @property
    def grid(self) -> int:
        return self.encoder.grid

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "ModelConfig":
        """Build from a (possibly partial) dict; unknown keys are an error."""
        parts = {
            "encoder": EncoderConfig,
            "audio": AudioConfig,
            "fusion": FusionConfig,
            "decoder": DecoderConfig,
        }
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(d).__name__}")
        base = d.get("base")
        if base is not None and not isinstance(base, str):
            raise ConfigError(f"{source}: 'base' must be a preset name, got {base!r}")
        cfg = from_name(base) if base else cls()
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key == "base":
                continue
            if key in parts:
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: '{key}' must be an object")
                sub_cls = parts[key]
                known = {f.name for f in dataclasses.fields(sub_cls)}
                unknown = sorted(set(value) - known)
                if unknown:
                    raise ConfigError(f"{source}: unknown key(s) in '{key}': {', '.join(unknown)}")
                sub = getattr(cfg, key)
                fixed = {k: _typed(source, f"{key}.{k}", getattr(sub, k), v) for k, v in value.items()}
                kwargs[key] = dataclasses.replace(sub, **fixed)
            elif key in ("name", "output_size"):
                kwargs[key] = _typed(source, key, getattr(cfg, key), value)
            else:
                raise ConfigError(f"{source}: unknown key '{key}'")
        if "name" not in kwargs and kwargs:
            # a changed architecture must not be reported under its base preset's name
            kwargs["name"] = Path(source).stem if source.endswith(".json") else f"{cfg.name}+custom"
        cfg = dataclasses.replace(cfg, **kwargs)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        e = self.encoder
        positive = {
            "encoder.img_size": e.img_size, "encoder.patch_size": e.patch_size, "encoder.embed_dim": e.embed_dim,
            "encoder.depth": e.depth, "encoder.num_heads": e.num_heads, "encoder.out_chans": e.out_chans,
            "encoder.adapter_dim": e.adapter_dim, "encoder.mlp_ratio": e.mlp_ratio,
            "audio.embed_dim": self.audio.embed_dim, "fusion.dim": self.fusion.dim, "fusion.depth": self.fusion.depth,
            "fusion.num_heads": self.fusion.num_heads, "fusion.mlp_dim": self.fusion.mlp_dim,
            "decoder.transformer_depth": self.decoder.transformer_depth, "decoder.mlp_dim": self.decoder.mlp_dim,
            "decoder.num_heads": self.decoder.num_heads, "decoder.num_multimask_outputs": self.decoder.num_multimask_outputs,
            "decoder.iou_head_depth": self.decoder.iou_head_depth,
            "decoder.iou_head_hidden_dim": self.decoder.iou_head_hidden_dim, "output_size": self.output_size,
        }
        bad_values = [f"{k}={v}" for k, v in positive.items() if not v > 0]
        if e.window_size < 0:
            bad_values.append(f"encoder.window_size={e.window_size}")
        if not 0.0 <= self.fusion.dropout < 1.0:
            bad_values.append(f"fusion.dropout={self.fusion.dropout}")
        if any(c <= 0 for c in self.audio.channels):
            bad_values.append(f"audio.channels={list(self.audio.channels)}")
        if bad_values:
            raise ConfigError(f"{source}: out-of-range value(s): {', '.join(bad_values)}")
        if e.img_size % e.patch_size:
            raise ConfigError(f"{source}: img_size {e.img_size} is not a multiple of patch_size {e.patch_size}")
        if e.embed_dim % e.num_heads:
            raise ConfigError(f"{source}: embed_dim {e.embed_dim} not divisible by num_heads {e.num_heads}")
        bad = [i for i in e.global_attn_indexes if not 0 <= i < e.depth]
        if bad:
            raise ConfigError(f"{source}: global_attn_indexes {bad} outside 0..{e.depth - 1}")
        if self.fusion.variant not in FUSION_VARIANTS:
            raise ConfigError(f"{source}: fusion.variant must be one of {', '.join(FUSION_VARIANTS)}, got {self.fusion.variant!r}")
        if self.fusion.dim % self.fusion.num_heads:
            raise ConfigError(f"{source}: fusion dim {self.fusion.dim} not divisible by {self.fusion.num_heads} heads")
        if self.fusion.dim != e.out_chans:
            raise ConfigError(f"{source}: fusion dim {self.fusion.dim} must equal the encoder's out_chans {e.out_chans}")
        if self.audio.kind not in ("vggish", "small"):
            raise ConfigError(f"{source}: audio.kind must be 'vggish' or 'small', got '{self.audio.kind}'")


def _typed(source: str, where: str, current: Any, value: Any) -> Any:
    """``value`` checked against the type of the field's current value (JSON lists become tuples)."""
    if isinstance(current, tuple):
        if isinstance(value, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
            return tuple(value)
        want = "a list of integers"
    elif isinstance(current, bool):
        if isinstance(value, bool):
            return value
        want = "true or false"
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        want = "an integer"
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        want = "a number"
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
        want = "a string"
    else:  # pragma: no cover - every field is one of the above
        return value
    raise ConfigError(f"{source}: '{where}' must be {want}, got {value!r}")


def _sam(name: str, embed_dim: int, depth: int, heads: int, globals_: tuple[int, ...]) -> ModelConfig:
    return ModelConfig(
        name=name,
        encoder=EncoderConfig(embed_dim=embed_dim, depth=depth, num_heads=heads, global_attn_indexes=globals_),
    )


PRESETS: dict[str, ModelConfig] = {
    # SAM's three sizes (segment_anything/build_sam.py), with ST-BAVA depth 5 (S4).
    "vit_h": _sam("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": _sam("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": _sam("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    # Small everything: a 128x128 image, 16x16 tokens; runs in well under a second on a CPU.
    "tiny": ModelConfig(
        name="tiny",
        encoder=EncoderConfig(
            img_size=128, patch_size=8, embed_dim=64, depth=4, num_heads=4,
            out_chans=32, window_size=8, global_attn_indexes=(1, 3), adapter_dim=32,
        ),
        # VGGish alone is 72 M parameters; tests of its layout build it on its own.
        audio=AudioConfig(kind="small", channels=(8, 16, 32, 64)),
        fusion=FusionConfig(dim=32, depth=2, num_heads=4, mlp_dim=32),
        decoder=DecoderConfig(mlp_dim=64, num_heads=4, iou_head_hidden_dim=32),
        output_size=64,
    ),
}


def from_name(name: str) -> ModelConfig:
    """A preset by name (``tiny``, ``vit_b``, ``vit_l``, ``vit_h``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset '{name}'; choose one of {', '.join(sorted(PRESETS))} or a .json file") from None


def from_file(path: str | Path) -> ModelConfig:
    """A JSON config; ``{"base": "vit_b", "fusion": {"depth": 7}}`` overrides a preset."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror or type(e).__name__})") from None
    return ModelConfig.from_dict(data, source=str(path))


def resolve(spec: str | Path | ModelConfig) -> ModelConfig:
    """A preset name, a path to a JSON file, or a config: returns the config."""
    if isinstance(spec, ModelConfig):
        return spec
    s = str(spec)
    if s in PRESETS:
        return PRESETS[s]
    if s.endswith(".json") or Path(s).is_file():
        return from_file(s)
    return from_name(s)
