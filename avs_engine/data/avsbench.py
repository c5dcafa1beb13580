"""AVSBench S4 / MS3 on disk (docs/metrics.md): read it, and write generated clips in its layout.

S4 (single source)::

    s4_meta_data.csv                       name, ..., category, ..., split
    visual_frames/<split>/<category>/<name>/<name>_{1..5}.png
    audio_wav/<split>/<category>/<name>.wav
    audio_log_mel/<split>/<category>/<name>.pkl    (optional, pickled [5,1,96,64])
    gt_masks/<split>/<category>/<name>/<name>_{1..M}.png   M = 1 for train, 5 otherwise

MS3 (multiple sources)::

    ms3_meta_data.csv                      name, ..., split
    visual_frames/<name>/<name>.mp4_{1..5}.png
    audio_wav/<split>/<name>.wav
    audio_log_mel/<split>/<name>.pkl               (optional)
    gt_masks/<split>/<name>/<name>_{1..5}.png

Masks are read as "pixel > 0 is object" and brought to 224x224 (nearest) for
scoring; log-mel is computed from the wav with our own front end
(``io.logmel``), or read from the pickles with ``log_mel="pickle"`` (never
executing them: only tensor-rebuilding functions are allowed, and tensor
bytes go through ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import warnings
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..io.logmel import vggish_examples

EVAL_SIZE = 224
SUBSETS = ("s4", "ms3")
GENERATED_META = "generated.json"  # written next to generated data sets: per-clip facts (burst seconds, ...)


@dataclass
class Sample:
    """One video of a split.

    frames uint8 [T,H,W,3] as stored; log_mel float32 [T,1,96,64]; masks bool
    [T,224,224] (rows without a mask file are all False and ``mask_valid`` is
    False there: S4 train has one mask per video); burst bool [T] (generated
    data only; all False otherwise).
    """

    name: str
    frames: np.ndarray
    log_mel: np.ndarray
    masks: np.ndarray
    mask_valid: np.ndarray
    burst: np.ndarray
    category: str = ""


@dataclass(frozen=True)
class _Entry:
    name: str
    category: str


def _read_csv(path: Path, split: str) -> list[_Entry]:
    if not path.is_file():
        raise DatasetError(f"{path}: metadata CSV not found")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DatasetError(f"{path}: empty CSV")
    header = [h.strip().lower() for h in rows[0]]
    if "split" not in header:
        raise DatasetError(f"{path}: no 'split' column (columns: {', '.join(header)})")
    i_split = header.index("split")
    i_name = header.index("name") if "name" in header else 0
    # AVSBench's loaders take the category from the third column.
    i_cat = header.index("category") if "category" in header else (2 if len(header) > 2 else None)
    out = []
    for r in rows[1:]:
        if len(r) > i_split and r[i_split].strip() == split:
            out.append(_Entry(r[i_name].strip(), r[i_cat].strip() if i_cat is not None else ""))
    return out


def read_wav_16k(path: Path) -> np.ndarray:
    """A wav file -> 16 kHz mono float32 (PCM 16-bit files at 16 kHz are read directly)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() == 2 and w.getframerate() == 16000:
                x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
                return x.reshape(-1, w.getnchannels()).mean(axis=1)
    except (wave.Error, EOFError):
        pass
    from ..io.audio import read_audio_16k  # any other format: decode and resample with PyAV

    return read_audio_16k(path)


def write_wav_16k(path: Path, samples: np.ndarray) -> None:
    x = np.clip(np.rint(np.asarray(samples) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(x.tobytes())


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles a pickled torch tensor without running anything else."""

    def find_class(self, module, name):
        import torch

        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda b: torch.load(io.BytesIO(b), weights_only=True)
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a log-mel pickle")


def load_log_mel_pickle(path: Path) -> np.ndarray:
    """AVSBench's pickled log-mel ([5,1,96,64] tensor) -> float32 array, without executing code."""
    import torch

    try:
        with warnings.catch_warnings():  # a raw pickle is not torch's format: expected to fail, quietly
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        with open(path, "rb") as f:
            try:
                obj = _SafeUnpickler(f).load()
            except Exception as e:
                raise DatasetError(f"{path}: not a readable log-mel pickle ({e})") from None
    return np.asarray(obj.detach().float().numpy() if hasattr(obj, "detach") else obj, np.float32)


def _read_mask(path: Path) -> np.ndarray:
    img = Image.open(path)
    if img.mode not in ("1", "L", "P"):
        img = img.convert("L")
    if img.size != (EVAL_SIZE, EVAL_SIZE):
        img = img.resize((EVAL_SIZE, EVAL_SIZE), Image.NEAREST)
    return np.asarray(img) > 0


class AVSBenchDataset:
    """One split of AVSBench S4 or MS3 (or a generated set in its layout).

    ``log_mel``: "wav" (our front end on ``audio_wav``) or "pickle"
    (``audio_log_mel``). Items are :class:`Sample`; nothing is cached.
    """

    def __init__(self, root: str | Path, subset: str, split: str, T: int = 5, log_mel: str = "wav") -> None:
        if subset not in SUBSETS:
            raise DatasetError(f"unknown AVSBench subset '{subset}'; one of {', '.join(SUBSETS)}")
        self.root, self.subset, self.split, self.T, self.log_mel = Path(root), subset, split, T, log_mel
        self.entries = _read_csv(self.root / f"{subset}_meta_data.csv", split)
        if not self.entries:
            raise DatasetError(f"{self.root}: no '{split}' videos in {subset}_meta_data.csv")
        self.n_masks = 1 if (subset == "s4" and split == "train") else T
        meta = self.root / GENERATED_META
        self.generated = json.loads(meta.read_text()).get("clips", {}) if meta.is_file() else {}

    def __len__(self) -> int:
        return len(self.entries)

    def _paths(self, e: _Entry):
        r, s, n = self.root, self.split, e.name
        if self.subset == "s4":
            return (
                [r / "visual_frames" / s / e.category / n / f"{n}_{i}.png" for i in range(1, self.T + 1)],
                r / "audio_wav" / s / e.category / f"{n}.wav",
                r / "audio_log_mel" / s / e.category / f"{n}.pkl",
                [r / "gt_masks" / s / e.category / n / f"{n}_{i}.png" for i in range(1, self.n_masks + 1)],
            )
        return (
            [r / "visual_frames" / n / f"{n}.mp4_{i}.png" for i in range(1, self.T + 1)],
            r / "audio_wav" / s / f"{n}.wav",
            r / "audio_log_mel" / s / f"{n}.pkl",
            [r / "gt_masks" / s / n / f"{n}_{i}.png" for i in range(1, self.n_masks + 1)],
        )

    def __getitem__(self, i: int) -> Sample:
        e = self.entries[i]
        frame_paths, wav, pkl, mask_paths = self._paths(e)
        for p in (*frame_paths, *mask_paths):
            if not p.is_file():
                raise DatasetError(f"{p}: missing ({self.subset} {self.split} video '{e.name}')")
        frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in frame_paths])
        if self.log_mel == "pickle":
            lm = load_log_mel_pickle(pkl).reshape(-1, 1, 96, 64)[: self.T]
        else:
            if not wav.is_file():
                raise DatasetError(f"{wav}: missing ({self.subset} {self.split} video '{e.name}')")
            lm = vggish_examples(read_wav_16k(wav), self.T)
        masks = np.zeros((self.T, EVAL_SIZE, EVAL_SIZE), bool)
        valid = np.zeros(self.T, bool)
        for k, p in enumerate(mask_paths):
            masks[k] = _read_mask(p)
            valid[k] = True
        burst = np.asarray(self.generated.get(e.name, {}).get("burst", [False] * self.T), bool)[: self.T]
        return Sample(e.name, frames, lm.astype(np.float32), masks, valid, burst, e.category)


# -- writing generated clips in the layout -------------------------------------------------------


def write_split(root: str | Path, subset: str, split: str, clips, T: int = 5) -> Path:
    """Write generated clips (``generator.GeneratedClip``) as one split of an AVSBench-like set.

    Appends to the CSV and to ``generated.json`` (per-clip objects, sounding
    kinds, burst seconds). S4 train keeps only the first mask, as AVSBench does.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / f"{subset}_meta_data.csv"
    new_csv = not csv_path.is_file()
    meta_path = root / GENERATED_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"clips": {}}
    n_masks = 1 if (subset == "s4" and split == "train") else T
    with open(csv_path, "a", newline="") as f:
        w = csv.writer(f)
        if new_csv:
            w.writerow(["name", "source", "category", "split"])
        for clip in clips:
            # S4's category: the kind that sounds most often (ties: the first object).
            counts = clip.plan.sounding.sum(axis=0)
            category = clip.plan.summary()["objects"][int(np.argmax(counts))] if len(counts) else "none"
            n = clip.name
            if subset == "s4":
                fdir = root / "visual_frames" / split / category / n
                wav = root / "audio_wav" / split / category / f"{n}.wav"
                mdir = root / "gt_masks" / split / category / n
                fname = lambda i: f"{n}_{i}.png"  # noqa: E731
            else:
                fdir = root / "visual_frames" / n
                wav = root / "audio_wav" / split / f"{n}.wav"
                mdir = root / "gt_masks" / split / n
                fname = lambda i: f"{n}.mp4_{i}.png"  # noqa: E731
            for d in (fdir, wav.parent, mdir):
                d.mkdir(parents=True, exist_ok=True)
            for i in range(T):
                Image.fromarray(clip.frames[i]).save(fdir / fname(i + 1))
            for i in range(n_masks):
                m = clip.masks[i]
                if m.shape != (EVAL_SIZE, EVAL_SIZE):
                    m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((EVAL_SIZE, EVAL_SIZE), Image.NEAREST)) > 0
                Image.fromarray(m.astype(np.uint8) * 255).save(mdir / f"{n}_{i + 1}.png")
            write_wav_16k(wav, clip.audio)
            w.writerow([n, "generated", category, split])
            meta["clips"][n] = {"split": split, **clip.plan.summary()}
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(meta_path)
    return root
