"""The single declaration of the four stages' inputs and outputs.

Export, every backend and the tests read names, dtypes and shapes from here.
Shapes are tuples of ints and symbols: ``"T"`` (clip length, dynamic in every
graph), ``"S"`` (image side), ``"G"`` (token grid side, S / patch), ``"C"``
(prompt/fusion dim), ``"A"`` (audio embedding dim), ``"L"`` (low-res mask side,
4 * G). No torch here: the runtime imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import ShapeError

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def concrete(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        """The shape with every symbol replaced from ``dims``."""
        return tuple(d if isinstance(d, int) else int(dims[d]) for d in self.shape)


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


AUDIO = StageSpec(
    "audio",
    inputs=(TensorSpec("log_mel", ("T", 1, 96, 64)),),
    outputs=(TensorSpec("a128", ("T", "A")),),
)
IMAGE_ENCODER = StageSpec(
    "image_encoder",
    inputs=(TensorSpec("image", ("T", 3, "S", "S")), TensorSpec("a128", ("T", "A"))),
    outputs=(TensorSpec("enc", ("T", "C", "G", "G")),),
)
FUSION = StageSpec(
    "fusion",
    inputs=(TensorSpec("enc", ("T", "C", "G", "G")), TensorSpec("a128", ("T", "A"))),
    outputs=(TensorSpec("dense", ("T", "C", "G", "G")), TensorSpec("sparse", ("T", 2, "C"))),
)
MASK_DECODER = StageSpec(
    "mask_decoder",
    inputs=(
        TensorSpec("enc", ("T", "C", "G", "G")),
        TensorSpec("dense", ("T", "C", "G", "G")),
        TensorSpec("sparse", ("T", 2, "C")),
    ),
    outputs=(TensorSpec("logits", ("T", 1, "L", "L")),),
)

STAGES: dict[str, StageSpec] = {s.name: s for s in (AUDIO, IMAGE_ENCODER, FUSION, MASK_DECODER)}
STAGE_ORDER: tuple[str, ...] = tuple(STAGES)


def dims_for(config, T: int) -> dict[str, int]:
    """Concrete values of every symbol for a model config and clip length T."""
    g = config.encoder.grid
    return {
        "T": int(T),
        "S": config.encoder.img_size,
        "G": g,
        "C": config.fusion.dim,
        "A": config.audio.embed_dim,
        "L": 4 * g,
    }


def check_arrays(stage: StageSpec, arrays: Mapping[str, np.ndarray], dims: Mapping[str, int], *, outputs: bool = False,
                 partial: bool = False) -> None:
    """Raise :class:`ShapeError` unless ``arrays`` holds exactly the stage's tensors with the right shapes.

    ``partial``: check only the tensors given (each must be one of the stage's)."""
    specs = stage.outputs if outputs else stage.inputs
    kind = "output" if outputs else "input"
    want = {t.name for t in specs}
    got = set(arrays)
    if partial:
        specs = [t for t in specs if t.name in got]
        want = got if got <= want else want
    if want != got:
        raise ShapeError(
            f"stage '{stage.name}': {kind}s must be {sorted(want)}, got {sorted(got)}"
        )
    for t in specs:
        a = arrays[t.name]
        shape = tuple(getattr(a, "shape", ()))
        expect = t.concrete(dims)
        if shape != expect:
            raise ShapeError(f"stage '{stage.name}' {kind} '{t.name}': expected shape {list(expect)}, got {list(shape)}")
