"""A split made ready for training and scoring: compact arrays, optionally cached on disk.

Each video becomes: the encoder's input frames as uint8 ``[T,S,S,3]``
(already through AVSBench's two resizes, :func:`io.preprocess.prepare_frames`
minus the normalisation), log-mel float16 ``[T,1,96,64]``, masks at 224x224
(bit-packed), which frames have a mask, and which are noise-burst seconds.
A generated split is a few hundred MB at 128x128 and takes about 0.25 s per
clip to make, so it is made once and cached (``.npz``, memory-mapped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..io.logmel import vggish_examples
from ..io.preprocess import encoder_input, squash_frames, to_encoder_size
from .avsbench import EVAL_SIZE, Sample
from .generator import GENERATOR_VERSION, GeneratorConfig, generate_clip, split_seeds

CACHE_VERSION = 1


@dataclass
class PreparedSplit:
    names: list[str]
    images: np.ndarray  # uint8 [N,T,S,S,3]
    log_mel: np.ndarray  # float16 [N,T,1,96,64]
    masks_packed: np.ndarray  # uint8 [N,T,224*224/8]
    mask_valid: np.ndarray  # bool [N,T]
    burst: np.ndarray  # bool [N,T]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def T(self) -> int:
        return int(self.images.shape[1])

    @property
    def img_size(self) -> int:
        return int(self.images.shape[2])

    def masks(self, i: int) -> np.ndarray:
        """bool [T,224,224] of video i."""
        bits = np.unpackbits(np.asarray(self.masks_packed[i]), axis=-1, count=EVAL_SIZE * EVAL_SIZE)
        return bits.reshape(self.T, EVAL_SIZE, EVAL_SIZE).astype(bool)

    def image_input(self, i: int) -> np.ndarray:
        """float32 [T,3,S,S], ImageNet-normalised (what ``prepare_frames`` returns)."""
        return encoder_input(np.asarray(self.images[i]), self.img_size)

    def log_mel_input(self, i: int) -> np.ndarray:
        return np.asarray(self.log_mel[i], np.float32)

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(
            tmp, images=self.images, log_mel=self.log_mel, masks_packed=self.masks_packed,
            mask_valid=self.mask_valid, burst=self.burst, names=np.asarray(self.names),
            meta=np.asarray(json.dumps({"version": CACHE_VERSION, **(meta or {})})),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple["PreparedSplit", dict]:
        z = np.load(path, mmap_mode="r", allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return cls(
            names=[str(n) for n in z["names"]], images=z["images"], log_mel=z["log_mel"],
            masks_packed=z["masks_packed"], mask_valid=np.asarray(z["mask_valid"]), burst=np.asarray(z["burst"]),
        ), meta


def frames_to_input_uint8(frames: np.ndarray, img_size: int, mode: str = "avsbench") -> np.ndarray:
    """uint8 [T,H,W,3] -> uint8 [T,S,S,3]: the resizes of ``prepare_frames`` without normalising."""
    return np.stack([to_encoder_size(f, img_size) for f in squash_frames(frames, img_size, mode)])


def prepare(samples: Iterable[Sample], n: int, img_size: int, T: int = 5, progress: bool = False) -> PreparedSplit:
    """Turn ``n`` samples into a :class:`PreparedSplit`."""
    images = np.zeros((n, T, img_size, img_size, 3), np.uint8)
    log_mel = np.zeros((n, T, 1, 96, 64), np.float16)
    packed = np.zeros((n, T, EVAL_SIZE * EVAL_SIZE // 8), np.uint8)
    valid = np.zeros((n, T), bool)
    burst = np.zeros((n, T), bool)
    names = []
    it: Iterator = iter(samples)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=n, desc="preparing", unit="clip", leave=False)
    for i, s in enumerate(it):
        if i >= n:
            break
        names.append(s.name)
        images[i] = frames_to_input_uint8(s.frames, img_size)
        log_mel[i] = s.log_mel
        packed[i] = np.packbits(s.masks.reshape(T, -1), axis=-1)
        valid[i] = s.mask_valid
        burst[i] = s.burst
    return PreparedSplit(names, images, log_mel, packed, valid, burst)


def generated_samples(split: str, n: int, T: int = 5, config: GeneratorConfig | None = None, start: int = 0) -> Iterator[Sample]:
    """Generated clips of ``split`` (its own seed range) as :class:`Sample`s, 224x224."""
    for seed in split_seeds(split, n, start):
        c = generate_clip(seed, T, (EVAL_SIZE, EVAL_SIZE), config)
        yield Sample(c.name, c.frames, vggish_examples(c.audio, T), c.masks, np.ones(T, bool), c.plan.burst.copy())


def prepared_generated(split: str, n: int, img_size: int, cache_dir: str | Path | None = None,
                       T: int = 5, progress: bool = False) -> PreparedSplit:
    """A generated split, from the cache when it holds the same one (split, n, size, T)."""
    key = {"source": "generated", "generator": GENERATOR_VERSION, "split": split, "n": n, "img_size": img_size, "T": T}
    path = Path(cache_dir) / f"generated_{split}_{n}_{img_size}.npz" if cache_dir else None
    if path is not None and path.is_file():
        data, meta = PreparedSplit.load(path)
        if all(meta.get(k) == v for k, v in key.items()) and meta.get("version") == CACHE_VERSION:
            return data
    data = prepare(generated_samples(split, n, T), n, img_size, T, progress)
    if path is not None:
        data.save(path, key)
    return data
