"""Checkpoints: read any of the layouts users have, load strictly, report by group.

Layouts, told apart by their keys (never by file name):

* ST-BAVA (authors' layout, docs/model.md): ``image_encoder.*`` with adapters,
  ``mask_decoder.*``, ``pe_layer.*``, ``audio_embed_layer.*``, ``layers.*``
  (``prompt_encoder.*`` present but unused);
* SAMA-AVS: the same without the fusion (``layers.*``, ``audio_embed_layer``);
* official SAM (``sam_vit_{b,l,h}_*.pth``): encoder + decoder only;
* torchvggish VGGish: ``features.*`` + ``embeddings.*`` (a separate file);
* our bundle: safetensors holding every weight and the config that built them.

Pickles are read with ``weights_only=True`` (and ``mmap=True`` for the zip
format): a checkpoint is never executed, and with a model built on the meta
device and ``assign=True`` its weights are never held twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from ..config import ModelConfig
from ..errors import CheckpointError

BUNDLE_FORMAT = "avs-engine-bundle/1"

# Key prefix -> group name, most specific first.
_GROUPS = (
    ("image_encoder.prompt_generator.", "adapters"),
    ("image_encoder.", "image_encoder"),
    ("mask_decoder.", "mask_decoder"),
    ("layers.", "fusion"),
    ("audio_embed_layer.", "fusion"),
    ("pe_layer.", "fusion"),
    ("audio_backbone.", "audio"),
    ("prompt_encoder.", "prompt_encoder"),
)
# Present in the authors' files, not used by ST-BAVA inference: accepted and reported.
_UNUSED_PREFIXES = ("prompt_encoder.",)


def group_of(key: str) -> str:
    for prefix, group in _GROUPS:
        if key.startswith(prefix):
            return group
    return "other"


@dataclass
class LoadReport:
    """What a load did, per component group."""

    source: str
    layout: str
    loaded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    missing: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unexpected: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ignored: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.source}: {self.layout} checkpoint"]
        groups = sorted(set(self.loaded) | set(self.missing) | set(self.unexpected) | set(self.ignored))
        for g in groups:
            parts = [f"{self.loaded.get(g, 0)} loaded"]
            if self.missing.get(g):
                parts.append(f"{len(self.missing[g])} missing (random init)")
            if self.unexpected.get(g):
                parts.append(f"{len(self.unexpected[g])} unexpected")
            if self.ignored.get(g):
                parts.append(f"{len(self.ignored[g])} ignored (unused)")
            out.append(f"  {g:<15} " + ", ".join(parts))
        out += [f"  note: {n}" for n in self.notes]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


# -- reading -----------------------------------------------------------------------------------


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header length, then the JSON header.
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 31)


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors by key and (for safetensors) the file's metadata. Unwraps
    ``{"state_dict": ...}`` / ``{"model": ...}`` and a DataParallel ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    meta: dict[str, str] = {}
    try:
        if _is_safetensors(path):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                sd = {k: f.get_tensor(k) for k in f.keys()}
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                # Legacy (non-zip) torch.save format cannot be memory-mapped.
                obj = torch.load(path, map_location="cpu", weights_only=True)
            sd = obj
            for wrapper in ("state_dict", "model", "model_state_dict"):
                if isinstance(sd, Mapping) and wrapper in sd and isinstance(sd[wrapper], Mapping):
                    sd = sd[wrapper]
                    break
    except CheckpointError:
        raise
    except Exception as e:  # torch/safetensors raise many types for a bad file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({msg[:200]})") from None
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{path}: no tensors found (expected a state_dict)")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{path}: no tensors found (expected a state_dict)")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd), meta


def detect_layout(keys) -> str:
    keys = list(keys)
    has = lambda p: any(k.startswith(p) for k in keys)  # noqa: E731
    if has("features.") and has("embeddings.") and not has("image_encoder."):
        return "vggish"
    if has("layers.") and has("image_encoder."):
        return "st-bava"
    if has("image_encoder.prompt_generator."):
        return "sama-avs"
    if has("image_encoder."):
        return "sam"
    return "unknown"


# -- loading -----------------------------------------------------------------------------------


def _shape_errors(model_sd: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor]) -> list[str]:
    bad = []
    for k, v in sd.items():
        if k in model_sd and tuple(model_sd[k].shape) != tuple(v.shape):
            bad.append(f"{k} is {list(v.shape)}, model expects {list(model_sd[k].shape)}")
    return bad


def load_state_dict_checked(
    model: torch.nn.Module,
    sd: Mapping[str, torch.Tensor],
    report: LoadReport,
    *,
    allow_missing: frozenset[str] = frozenset(),
) -> LoadReport:
    """Load ``sd`` into ``model`` strictly, except for whole groups named in ``allow_missing``."""
    model_sd = model.state_dict()
    config: ModelConfig | None = getattr(model, "config", None)
    name = f"preset '{config.name}'" if config is not None else "the model"
    bad = _shape_errors(model_sd, sd)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(f"{report.source}: does not fit {name}: {bad[0]}{more}")
    use: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        g = group_of(k)
        if k in model_sd:
            use[k] = v
            report.loaded[g] += 1
        elif k.startswith(_UNUSED_PREFIXES):
            report.ignored[g].append(k)
        else:
            report.unexpected[g].append(k)
    for k in model_sd:
        if k not in use:
            report.missing[group_of(k)].append(k)
    if report.unexpected:
        g, ks = next(iter(sorted(report.unexpected.items())))
        n = sum(len(v) for v in report.unexpected.values())
        raise CheckpointError(
            f"{report.source}: {n} unexpected key(s) for {name}, e.g. '{ks[0]}' (group {g}); wrong preset or not an ST-BAVA file?"
        )
    refused = {g: ks for g, ks in report.missing.items() if g not in allow_missing}
    if refused:
        g, ks = next(iter(sorted(refused.items())))
        n = sum(len(v) for v in refused.values())
        raise CheckpointError(
            f"{report.source}: {n} missing key(s) for {name} in group(s) {', '.join(sorted(refused))}, e.g. '{ks[0]}'"
        )
    on_meta = any(p.is_meta for p in model.parameters())
    if on_meta and report.missing:
        raise CheckpointError(f"{report.source}: missing groups cannot be left on the meta device; build the model on a real device")
    model.load_state_dict(use, strict=not report.missing, assign=on_meta)
    return report


def load_checkpoint(
    model: torch.nn.Module,
    path: str | Path,
    *,
    vggish: str | Path | None = None,
    allow_missing_fusion: bool = False,
    allow_missing_audio: bool = False,
) -> LoadReport:
    """Load a checkpoint of any supported layout into ``model``, strictly.

    ``vggish`` is the torchvggish file for layouts without audio weights.
    ``allow_missing_fusion`` opts in to SAMA-AVS / SAM files, which lack the
    ST-BAVA fusion (and, for SAM, the adapters): those parts keep their
    random initialisation, which is only useful as a starting point for training.
    """
    sd, meta = read_state_dict(path)
    layout = "bundle" if meta.get("format") == BUNDLE_FORMAT else detect_layout(sd)
    report = LoadReport(source=str(path), layout=layout)
    if layout == "unknown":
        raise CheckpointError(f"{path}: keys match no known layout (ST-BAVA, SAMA-AVS, SAM, VGGish, bundle); first key '{next(iter(sd))}'")
    if layout == "vggish":
        sd = {f"audio_backbone.{k}": v for k, v in sd.items()}
    if vggish is not None:
        config: ModelConfig | None = getattr(model, "config", None)
        if config is not None and config.audio.kind != "vggish":
            raise CheckpointError(
                f"{vggish}: a VGGish file was given but preset '{config.name}' uses the '{config.audio.kind}' "
                "audio backbone; drop --vggish or use a config with audio.kind 'vggish'"
            )
        vsd, _ = read_state_dict(vggish)
        if detect_layout(vsd) != "vggish":
            raise CheckpointError(f"{vggish}: not a torchvggish VGGish state_dict (expected features.* and embeddings.*)")
        sd.update({f"audio_backbone.{k}": v for k, v in vsd.items()})
        report.notes.append(f"audio weights from {vggish}")
    allow: set[str] = set()
    if allow_missing_audio:
        allow.add("audio")
    if layout in ("sama-avs", "sam", "vggish"):
        lacking = {"sama-avs": "the ST-BAVA fusion", "sam": "the audio adapters and the ST-BAVA fusion", "vggish": "everything but the audio backbone"}[layout]
        if not allow_missing_fusion:
            raise CheckpointError(
                f"{path}: a {layout.upper()} checkpoint has no weights for {lacking}; "
                "pass allow_missing_fusion=True (--allow-missing-fusion) to start them from random init"
            )
        allow |= {"fusion", "adapters", "image_encoder", "mask_decoder"} if layout == "vggish" else {"fusion", "adapters"}
        report.notes.append(f"{lacking}: random init (opted in)")
    bad = _shape_errors(model.state_dict(), sd)
    if bad:  # a wrong preset is the likelier mistake: say that before anything else
        cfg = getattr(model, "config", None)
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(f"{path}: does not fit preset '{getattr(cfg, 'name', '?')}': {bad[0]}{more}")
    if not any(k.startswith("audio_backbone.") for k in sd) and "audio" not in allow:
        raise CheckpointError(f"{path}: no audio backbone weights; pass the VGGish file (--vggish FILE)")
    return load_state_dict_checked(model, sd, report, allow_missing=frozenset(allow))


# -- saving ------------------------------------------------------------------------------------


def save_bundle(model: torch.nn.Module, path: str | Path, extra_metadata: Mapping[str, str] | None = None, *,
                state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Every weight plus the config that built them, as one safetensors file (written atomically).

    ``state``: the model's state_dict already copied to the host (the model is then not read)."""
    from safetensors.torch import save_file

    path = Path(path)
    cfg: ModelConfig = model.config
    sd = {k: v.detach().contiguous().cpu() for k, v in (model.state_dict() if state is None else state).items()}
    meta = {"format": BUNDLE_FORMAT, "config": cfg.to_json(), **(extra_metadata or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(sd, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_bundle_config(path: str | Path) -> ModelConfig:
    """The config stored in a bundle, without reading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: bundle not found")
    try:
        if not _is_safetensors(path):
            raise ValueError("not a safetensors file")
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:
        raise CheckpointError(f"{path}: not an avs-engine bundle ({e})") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path}: not an avs-engine bundle (format '{meta.get('format')}', expected '{BUNDLE_FORMAT}')")
    try:
        cfg = json.loads(meta["config"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{path}: avs-engine bundle without a readable 'config' entry in its metadata") from None
    if "fusion_variant" in meta and "variant" not in cfg.get("fusion", {}):
        # Bundles trained before the variant joined the config kept it beside the config only.
        cfg.setdefault("fusion", {})["variant"] = meta["fusion_variant"]
    return ModelConfig.from_dict(cfg, source=str(path))


def is_bundle(path: str | Path) -> bool:
    try:
        read_bundle_config(path)
        return True
    except CheckpointError:
        return False


def load_bundle(path: str | Path, device: str = "cpu"):
    """Build the model a bundle describes and load its weights (no double copy)."""
    from .build import build_model

    cfg = read_bundle_config(path)
    model = build_model(cfg, device="meta")
    report = load_checkpoint(model, path)
    return model.to(device), report


def save_authors_checkpoint(model: torch.nn.Module, path: str | Path, *, state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """A state_dict in the authors' layout (no audio backbone: VGGish is a separate file there).

    ``state``: the model's state_dict already copied to the host (the model is then not read)."""
    path = Path(path)
    sd = {k: v.detach().cpu() for k, v in (model.state_dict() if state is None else state).items()
          if not k.startswith("audio_backbone.")}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(sd, tmp)
    tmp.replace(path)
    return path


def load_model(weights: str | Path | None = None, config=None, vggish: str | Path | None = None, *, seed: int | None = None,
               allow_missing_fusion: bool = False, fusion_variant: str | None = None):
    """The reference model from its weights, for everyone who needs the PyTorch model: a bundle (its config
    is used), or a checkpoint of any layout with ``config`` (a preset, a JSON file or a ModelConfig) and,
    where it has no audio weights, ``vggish``; or, without weights, random weights from ``seed`` (tests,
    benchmarks; ``config`` default tiny). ``fusion_variant``: run the fusion as this ablation instead of
    what the weights were trained as. Returns (model on the CPU in float32, the LoadReport or None)."""
    from .build import build_model
    from .variants import apply_variant

    report = None
    if weights is not None and not Path(weights).is_file():
        raise CheckpointError(f"{weights}: checkpoint file not found")
    if weights is not None and is_bundle(weights):
        model, report = load_bundle(weights)
    elif weights is not None:
        if config is None:
            raise CheckpointError(f"{weights}: not a bundle, so the model config is needed (--config PRESET|FILE)")
        model = build_model(config, device="cpu" if allow_missing_fusion else "meta")
        report = load_checkpoint(model, weights, vggish=vggish, allow_missing_fusion=allow_missing_fusion)
    elif seed is not None:
        model = build_model(config or "tiny", seed=seed)
    else:
        raise CheckpointError("no weights given (--weights FILE)")
    if fusion_variant:
        apply_variant(model, fusion_variant)
    return model, report
