"""The object kinds of the generated sounding-object videos: how each looks and sounds.

Each kind has its own shape, colour, texture and sound (a timbre and a
rhythm of its own), so that a model can only tell which object sounds by
listening. Everything here is a pure function of its arguments (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Kind:
    name: str
    shape: str
    color: tuple[int, int, int]
    texture: str
    sound: str


KINDS: tuple[Kind, ...] = (
    Kind("bell_disc", "circle", (225, 40, 40), "solid", "vibrato_tone"),
    Kind("drum_box", "square", (40, 80, 225), "stripes", "pulsed_square"),
    Kind("bird_tri", "triangle", (40, 190, 60), "checker", "chirp"),
    Kind("clap_star", "star", (235, 215, 40), "dots", "claps"),
    Kind("gong_ring", "ring", (205, 50, 205), "solid", "bell"),
    Kind("hum_diamond", "diamond", (40, 205, 215), "checker", "sawtooth"),
    Kind("beep_cross", "cross", (240, 140, 25), "stripes", "beeps"),
    Kind("siren_hex", "hexagon", (125, 55, 170), "rings", "two_tone"),
)
KIND_NAMES = tuple(k.name for k in KINDS)


# -- shapes and textures (object-local coordinates, units of the object's radius) -----------------


def _regular_polygon(x: np.ndarray, y: np.ndarray, n: int, phase: float) -> np.ndarray:
    """Inside a regular n-gon of circumradius 1: every edge's half-plane."""
    inside = np.ones(x.shape, bool)
    apothem = np.cos(np.pi / n)
    for k in range(n):
        a = phase + 2 * np.pi * (k + 0.5) / n
        inside &= x * np.cos(a) + y * np.sin(a) <= apothem
    return inside


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """bool mask of ``shape`` over local coordinates x, y (radius 1)."""
    r = np.hypot(x, y)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 0.82
    if shape == "triangle":
        return _regular_polygon(x, y, 3, -np.pi / 2)
    if shape == "star":
        th = np.arctan2(y, x)
        return r <= 0.55 + 0.45 * np.cos(5 * th) ** 2
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= 1.0
    if shape == "cross":
        return ((np.abs(x) <= 0.32) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.32) & (np.abs(x) <= 1.0))
    if shape == "hexagon":
        return _regular_polygon(x, y, 6, 0.0)
    raise ValueError(f"unknown shape {shape!r}")


def texture_weight(texture: str, x: np.ndarray, y: np.ndarray, phase: float) -> np.ndarray:
    """Where the texture's second colour shows: float in [0, 1] over local coordinates."""
    if texture == "solid":
        return np.zeros(x.shape, np.float32)
    if texture == "stripes":
        return (np.sin(7.0 * x + phase) > 0).astype(np.float32)
    if texture == "checker":
        return ((np.floor(2.5 * x + phase) + np.floor(2.5 * y)) % 2).astype(np.float32)
    if texture == "dots":
        return ((np.sin(9.0 * x + phase) * np.sin(9.0 * y)) > 0.45).astype(np.float32)
    if texture == "rings":
        return (np.sin(12.0 * np.hypot(x, y) + phase) > 0).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}")


# -- sounds ------------------------------------------------------------------------------------


def _gate(t: np.ndarray, rate: float, duty: float, offset: float) -> np.ndarray:
    """A 0/1 rhythm of ``rate`` pulses per second, each ``duty`` of the period, 5 ms ramps."""
    ph = ((t + offset) * rate) % 1.0
    on = ph < duty
    ramp = np.clip(np.minimum(ph, duty - ph) * (1.0 / rate) / 0.005, 0, 1)
    return on * ramp


def _harmonics(t: np.ndarray, f0, amps, phase0: float) -> np.ndarray:
    out = np.zeros_like(t)
    for n, a in enumerate(amps, start=1):
        out += a * np.sin(2 * np.pi * n * f0 * t + phase0 * n)
    return out


def kind_sound(sound: str, n: int, rng: np.random.Generator, pitch: float = 1.0) -> np.ndarray:
    """``n`` samples (16 kHz) of one kind's sound, unit RMS, phase-continuous over the clip.

    ``pitch`` scales every frequency (a per-clip jitter); ``rng`` draws the
    phases and rhythm offsets (and the noise of the noisy sounds).
    """
    t = np.arange(n) / SAMPLE_RATE
    off = rng.uniform(0, 1)
    ph = rng.uniform(0, 2 * np.pi)
    if sound == "vibrato_tone":
        f = 440 * pitch * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
        x = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE + ph)
    elif sound == "pulsed_square":
        x = _harmonics(t, 196 * pitch, [1, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7], ph) * _gate(t, 4.0, 0.6, off)
    elif sound == "chirp":
        rate = 2.5
        u = ((t + off) * rate) % 1.0  # position in the sweep
        f = (500 + 1000 * u) * pitch
        x = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE + ph) * _gate(t, rate, 0.8, off)
    elif sound == "claps":
        noise = rng.standard_normal(n)
        spec = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spec[(freqs < 2500 * pitch) | (freqs > 5000 * pitch)] = 0
        band = np.fft.irfft(spec, n)
        u = ((t + off) * 6.0) % 1.0
        x = band * np.exp(-u / 0.05)
    elif sound == "bell":
        u = ((t + off) * 2.5) % 1.0 / 2.5  # seconds since the last strike
        env = np.exp(-u / 0.12)
        x = sum(a * np.sin(2 * np.pi * 660 * pitch * r * t + ph * r) for r, a in ((1, 1), (2.76, 0.6), (5.4, 0.35))) * env
    elif sound == "sawtooth":
        x = _harmonics(t, 110 * pitch, [1 / k for k in range(1, 21)], ph)
    elif sound == "beeps":
        x = np.sin(2 * np.pi * 2200 * pitch * t + ph) * _gate(t, 8.0, 0.5, off)
    elif sound == "two_tone":
        hi = (((t + off) * 4.0) % 1.0) < 0.5
        f = np.where(hi, 780.0, 520.0) * pitch
        x = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE + ph)
    else:
        raise ValueError(f"unknown sound {sound!r}")
    x = np.asarray(x, np.float64)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def band_noise(n: int, rng: np.random.Generator, lo: float = 125.0, hi: float = 7500.0, tilt: float = 0.0) -> np.ndarray:
    """Unit-RMS noise band-limited to [lo, hi] Hz; ``tilt`` -1 gives pink-like 1/f power."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    keep = (freqs >= lo) & (freqs <= hi)
    spec[~keep] = 0
    if tilt:
        spec[keep] *= (freqs[keep] / lo) ** (tilt / 2)
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)
