"""Generated sounding-object videos: a seed decides the whole clip.

A clip is planned first (:func:`plan_clip`): which object kinds appear
(distinct shapes, colours, textures, each with its own sound, see
:mod:`.kinds`), how they move, in which seconds each one is present and in
which it sounds (persistent on/off runs, sources appearing and vanishing),
the background, the background noise, and the noise-burst seconds. Then it
is rendered: the frames and ground-truth masks at any times
(:func:`render_frame`), and the 16 kHz mono soundtrack (:func:`render_audio`).

Noise bursts: in a burst second a loud band-limited noise (125-7500 Hz,
-35 to -30 dB signal-to-noise by default) hides the sound, while the
sounding object keeps going: the same objects sound in the second before
and after (and no other), and the ground truth still marks them. Only the
time context can tell which object it is.

Audio segments follow the model's audio examples: with ``grid="vggish"``
second ``l``'s sound fills ``0.96 l .. 0.96 (l+1)`` s (the last one runs to
the end), exactly what example ``l`` of the clip analyses (io/logmel.py);
``grid="seconds"`` uses whole seconds (long videos, whose windows start at
any second).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .kinds import KINDS, SAMPLE_RATE, band_noise, kind_sound, shape_mask, texture_weight

GENERATOR_VERSION = 1  # bump when a seed would give a different clip
FRAME_OFFSET_S = 15.0 / 16.0  # AVSBench samples second l at time l + 15/16 s
EXAMPLE_S = 0.96  # VGGish example hop


@dataclass(frozen=True)
class GeneratorConfig:
    """Knobs of the generator (the defaults made the demo model's data)."""

    object_count_weights: tuple[float, ...] = (0.1, 0.35, 0.35, 0.2)  # P(1..4 objects)
    radius: tuple[float, float] = (0.11, 0.18)  # fraction of the shorter side
    speed: tuple[float, float] = (0.04, 0.2)  # fraction of the side per second
    p_whole_clip: float = 0.6  # an object is present the whole clip; otherwise it appears late or leaves early
    p_start: float = 0.3  # a silent present object starts sounding next second
    p_stop: float = 0.3  # a sounding object stops next second
    burst_prob: float = 0.5  # P(a clip has noise bursts)
    burst_snr_db: tuple[float, float] = (-35.0, -30.0)
    noise_db: tuple[float, float] = (-30.0, -15.0)  # background noise vs one unit-loudness source
    loudness: tuple[float, float] = (0.5, 1.0)
    pitch_jitter: float = 0.08
    peak: tuple[float, float] = (0.25, 0.9)  # the mix is normalised to this peak
    pixel_noise: float = 4.0  # std of per-frame pixel noise (uint8 levels)


@dataclass
class ObjectTrack:
    kind: int
    present: np.ndarray  # bool [S]
    pos0: tuple[float, float]  # centre at t = 0, fraction of (width, height)
    vel: tuple[float, float]  # fraction per second
    radius: float  # fraction of the shorter side
    angle0: float
    spin: float  # rad / s
    color: tuple[int, int, int]
    color2: tuple[int, int, int]
    tex_phase: float
    loudness: float
    pitch: float

    def center(self, t: float) -> tuple[float, float]:
        """Centre at time t (fractions), bouncing inside the frame."""
        out = []
        for p0, v in zip(self.pos0, self.vel):
            lo, hi = self.radius, 1.0 - self.radius
            span = hi - lo
            q = (p0 - lo + v * t) % (2 * span)
            out.append(lo + (q if q <= span else 2 * span - q))
        return out[0], out[1]


@dataclass
class ClipPlan:
    seed: int
    seconds: int
    objects: list[ObjectTrack]
    sounding: np.ndarray  # bool [S, n_objects]
    burst: np.ndarray  # bool [S]
    burst_snr_db: np.ndarray  # float [S] (NaN where no burst)
    background: dict = field(default_factory=dict)
    noise_db: float = -20.0
    peak: float = 0.5
    config: GeneratorConfig = field(default_factory=GeneratorConfig)

    @property
    def kinds(self) -> list[int]:
        return [o.kind for o in self.objects]

    def sounding_kinds(self, second: int) -> list[str]:
        return [KINDS[o.kind].name for i, o in enumerate(self.objects) if self.sounding[second, i]]

    def summary(self) -> dict:
        """JSON-able facts about the clip (stored next to generated data sets)."""
        return {
            "seed": self.seed,
            "objects": [KINDS[o.kind].name for o in self.objects],
            "present": [[bool(x) for x in o.present] for o in self.objects],
            "sounding": [self.sounding_kinds(l) for l in range(self.seconds)],
            "burst": [bool(b) for b in self.burst],
        }


def _jitter_color(rng, c, amount=25):
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)


def plan_clip(seed: int, seconds: int = 5, config: GeneratorConfig | None = None) -> ClipPlan:
    """Everything about clip ``seed``: objects, motion, presence, sound schedule, bursts."""
    cfg = config or GeneratorConfig()
    rng = np.random.default_rng(seed)
    S = int(seconds)
    w = np.asarray(cfg.object_count_weights, float)
    n_obj = int(rng.choice(np.arange(1, len(w) + 1), p=w / w.sum()))
    kinds = rng.choice(len(KINDS), size=n_obj, replace=False)
    objects = []
    for k in kinds:
        present = np.ones(S, bool)
        if S >= 3 and rng.random() > cfg.p_whole_clip:
            # appears late or leaves early (MS3-like), present at least 2 seconds
            n_on = int(rng.integers(2, S))
            first = int(rng.integers(0, S - n_on + 1))
            present[:] = False
            present[first:first + n_on] = True
        r = float(rng.uniform(*cfg.radius))
        speed = float(rng.uniform(*cfg.speed))
        direction = rng.uniform(0, 2 * np.pi)
        kind = KINDS[int(k)]
        color = _jitter_color(rng, kind.color)
        shade = float(rng.uniform(0.45, 0.7)) if rng.random() < 0.5 else float(rng.uniform(1.3, 1.6))
        objects.append(ObjectTrack(
            kind=int(k), present=present,
            pos0=(float(rng.uniform(r, 1 - r)), float(rng.uniform(r, 1 - r))),
            vel=(speed * np.cos(direction), speed * np.sin(direction)), radius=r,
            angle0=float(rng.uniform(0, 2 * np.pi)), spin=float(rng.uniform(-0.8, 0.8)),
            color=color, color2=tuple(int(np.clip(c * shade, 0, 255)) for c in color),
            tex_phase=float(rng.uniform(0, 2 * np.pi)),
            loudness=float(rng.uniform(*cfg.loudness)),
            pitch=float(1 + rng.uniform(-cfg.pitch_jitter, cfg.pitch_jitter)),
        ))

    # Sound schedule: a two-state Markov chain per object, over the seconds it is present.
    sounding = np.zeros((S, n_obj), bool)
    for i, o in enumerate(objects):
        state = rng.random() < 0.5
        for l in range(S):
            if not o.present[l]:
                state = rng.random() < 0.5  # its state when it (re)appears
                continue
            sounding[l, i] = state
            state = (rng.random() > cfg.p_stop) if state else (rng.random() < cfg.p_start)

    # Noise bursts: interior seconds, never adjacent, the sounding objects held over l-1..l+1.
    burst = np.zeros(S, bool)
    snr = np.full(S, np.nan)
    if S >= 3 and rng.random() < cfg.burst_prob:
        n_b = 2 if (S >= 5 and rng.random() < 0.3) else 1
        for l in rng.permutation(np.arange(1, S - 1)):
            if n_b == 0:
                break
            if burst[max(l - 2, 0):l + 3].any():
                continue
            span = slice(l - 1, l + 2)
            ok = [i for i, o in enumerate(objects) if o.present[span].all()]
            if not ok:
                continue
            keep = [i for i in ok if sounding[l - 1, i]]
            if not keep:
                keep = list(rng.choice(ok, size=1 if (len(ok) == 1 or rng.random() < 0.7) else 2, replace=False))
            sounding[span] = False
            sounding[span, keep] = True
            burst[l] = True
            snr[l] = rng.uniform(*cfg.burst_snr_db)
            n_b -= 1

    bg_kind = str(rng.choice(["gradient", "blobs", "stripes"]))
    background = {
        "kind": bg_kind,
        "c1": tuple(int(v) for v in rng.integers(30, 226, 3)),
        "c2": tuple(int(v) for v in rng.integers(30, 226, 3)),
        "angle": float(rng.uniform(0, np.pi)),
        "freqs": rng.uniform(0.5, 3.0, (3, 2)).tolist(),
        "phases": rng.uniform(0, 2 * np.pi, 3).tolist(),
        "period": float(rng.uniform(0.08, 0.3)),
    }
    return ClipPlan(
        seed=int(seed), seconds=S, objects=objects, sounding=sounding, burst=burst, burst_snr_db=snr,
        background=background, noise_db=float(rng.uniform(*cfg.noise_db)), peak=float(rng.uniform(*cfg.peak)),
        config=cfg,
    )


# -- pictures ----------------------------------------------------------------------------------


def _background(plan: ClipPlan, h: int, w: int) -> np.ndarray:
    b = plan.background
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    if b["kind"] == "gradient":
        m = (np.cos(b["angle"]) * u + np.sin(b["angle"]) * v)
        m = (m - m.min()) / (m.max() - m.min() + 1e-6)
    elif b["kind"] == "blobs":
        m = sum(np.sin(2 * np.pi * (f[0] * u + f[1] * v) + p) for f, p in zip(b["freqs"], b["phases"]))
        m = (m - m.min()) / (m.max() - m.min() + 1e-6)
    else:
        d = np.cos(b["angle"]) * u + np.sin(b["angle"]) * v
        m = 0.5 + 0.5 * np.sin(2 * np.pi * d / b["period"])
        m = 0.3 + 0.4 * m  # low contrast
    c1 = np.asarray(b["c1"], np.float32)
    c2 = np.asarray(b["c2"], np.float32)
    return c1 + (c2 - c1) * m[..., None]  # [h, w, 3]


def render_frame(plan: ClipPlan, t: float, size: tuple[int, int], rng: np.random.Generator | None = None):
    """The picture at time ``t`` (s). size = (width, height).

    Returns (rgb uint8 [H,W,3], labels int16 [H,W]: object index or -1).
    Objects present in second ``floor(t)`` are drawn, later objects on top.
    """
    w, h = size
    second = min(int(np.floor(t)), plan.seconds - 1)
    img = _background(plan, h, w)
    labels = np.full((h, w), -1, np.int16)
    side = min(w, h)
    for i, o in enumerate(plan.objects):
        if not o.present[second]:
            continue
        cx, cy = o.center(t)
        cx, cy, R = cx * w, cy * h, o.radius * side
        x0, x1 = max(int(cx - R) - 1, 0), min(int(cx + R) + 2, w)
        y0, y1 = max(int(cy - R) - 1, 0), min(int(cy + R) + 2, h)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = (xx + 0.5 - cx) / R, (yy + 0.5 - cy) / R
        a = o.angle0 + o.spin * t
        lx = np.cos(a) * dx + np.sin(a) * dy
        ly = -np.sin(a) * dx + np.cos(a) * dy
        inside = shape_mask(KINDS[o.kind].shape, lx, ly)
        tex = texture_weight(KINDS[o.kind].texture, lx, ly, o.tex_phase)[..., None]
        col = np.asarray(o.color, np.float32) * (1 - tex) + np.asarray(o.color2, np.float32) * tex
        patch = img[y0:y1, x0:x1]
        patch[inside] = col[inside]
        labels[y0:y1, x0:x1][inside] = i
    if rng is not None and plan.config.pixel_noise > 0:
        img = img + rng.normal(0, plan.config.pixel_noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels


def sounding_mask(plan: ClipPlan, labels: np.ndarray, second: int) -> np.ndarray:
    """Ground truth: pixels of the objects that sound in ``second``. bool [H,W]."""
    ids = np.flatnonzero(plan.sounding[second])
    return np.isin(labels, ids) if ids.size else np.zeros(labels.shape, bool)


# -- sound -------------------------------------------------------------------------------------


def segment_edges(seconds: int, n_samples: int, grid: str = "vggish") -> np.ndarray:
    """Sample index where second l's sound starts, [S+1] (the last edge is ``n_samples``)."""
    step = {"vggish": EXAMPLE_S, "seconds": 1.0}[grid] * SAMPLE_RATE
    edges = np.rint(np.arange(seconds + 1) * step).astype(np.int64)
    edges[-1] = n_samples
    return edges


def render_audio(plan: ClipPlan, duration_s: float | None = None, grid: str = "vggish") -> np.ndarray:
    """The clip's soundtrack, float32 [n] at 16 kHz, peak-normalised to ``plan.peak``."""
    rng = np.random.default_rng([plan.seed, 1])
    n = int(round((duration_s or plan.seconds) * SAMPLE_RATE))
    edges = segment_edges(plan.seconds, n, grid)
    seg = np.searchsorted(edges, np.arange(n), side="right") - 1  # second of each sample
    seg = np.clip(seg, 0, plan.seconds - 1)
    def envelope(on: np.ndarray) -> np.ndarray:
        """0/1 per second -> per sample, with 10 ms linear fades (a 160-sample moving average)."""
        x = np.concatenate([np.zeros(80), on[seg].astype(np.float64), np.zeros(80)])
        c = np.concatenate([[0.0], np.cumsum(x)])
        return (c[160:160 + n] - c[:n]) / 160

    sources = np.zeros(n)
    for i, o in enumerate(plan.objects):
        if plan.sounding[:, i].any():
            sources += o.loudness * kind_sound(KINDS[o.kind].sound, n, rng, o.pitch) * envelope(plan.sounding[:, i])
        else:
            rng.random()  # keep the stream of draws independent of the schedule's details
    mix = sources + 10 ** (plan.noise_db / 20) * band_noise(n, rng, tilt=-1.0)
    for l in np.flatnonzero(plan.burst):
        a, b = edges[l], edges[l + 1]
        level = np.sqrt(np.mean(sources[a:b] ** 2)) * 10 ** (-plan.burst_snr_db[l] / 20)
        on = np.zeros(plan.seconds, bool)
        on[l] = True
        mix += level * band_noise(n, rng) * envelope(on)
    mix *= plan.peak / (np.abs(mix).max() + 1e-12)
    return mix.astype(np.float32)


# -- whole clips -------------------------------------------------------------------------------


@dataclass
class GeneratedClip:
    """One clip as a data set item: the frames AVSBench would store, audio and masks."""

    name: str
    plan: ClipPlan
    frames: np.ndarray  # uint8 [S,H,W,3], second l at l + 15/16 s
    masks: np.ndarray  # bool [S,H,W]
    audio: np.ndarray  # float32 [n], 16 kHz

    @property
    def burst(self) -> np.ndarray:
        return self.plan.burst


def clip_name(seed: int) -> str:
    return f"gen_{seed:08d}"


def generate_clip(seed: int, seconds: int = 5, size: tuple[int, int] = (224, 224),
                  config: GeneratorConfig | None = None, grid: str = "vggish") -> GeneratedClip:
    """Clip ``seed``: the frames at l + 15/16 s, their ground truth and the soundtrack."""
    plan = plan_clip(seed, seconds, config)
    rng = np.random.default_rng([seed, 2])
    frames, masks = [], []
    for l in range(seconds):
        rgb, labels = render_frame(plan, l + FRAME_OFFSET_S, size, rng)
        frames.append(rgb)
        masks.append(sounding_mask(plan, labels, l))
    return GeneratedClip(clip_name(seed), plan, np.stack(frames), np.stack(masks), render_audio(plan, grid=grid))


# Disjoint seed ranges per split: a model never sees a test clip's seed.
SPLIT_SEED_BASE = {"train": 0, "val": 10_000_000, "test": 20_000_000, "demo": 30_000_000}


def split_seeds(split: str, n: int, start: int = 0) -> list[int]:
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; one of {', '.join(SPLIT_SEED_BASE)}")
    if n > 10_000_000:
        raise ValueError("at most 10 M clips per split")
    base = SPLIT_SEED_BASE[split]
    return [base + start + i for i in range(n)]
