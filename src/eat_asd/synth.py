"""Signals of the synthetic demo machines: a hum over coloured noise, and four kinds of faint fault."""

from __future__ import annotations

import numpy as np

from .audio import SAMPLE_RATE


def _coloured_noise(rng, n: int, tilt: float, resonance_hz: float) -> np.ndarray:
    """Noise with a spectral tilt and a resonance band (the machine's housing), unit variance."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    shape = freqs ** (-tilt / 2) * (1 + 40 * np.exp(-0.5 * ((freqs - resonance_hz) / (0.12 * resonance_hz)) ** 2))
    noise = np.fft.irfft(spec * shape, n)
    return noise / (noise.std() + 1e-12)


def _machine_sound(rng, m, value_index: int, n: int) -> np.ndarray:
    """A hum whose pitch and housing resonance both follow the operating attribute."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = m.base_hz + m.step_hz * value_index + rng.normal(0, 0.8)
    wobble = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)  # slight speed variation
    phase = 2 * np.pi * f0 * np.cumsum(wobble) / SAMPLE_RATE
    tone = sum(rng.uniform(0.5, 1.0) / h * np.sin(h * phase + rng.uniform(0, 2 * np.pi)) for h in range(1, m.harmonics + 1))
    tone = tone / np.abs(tone).max()
    resonance = f0 * (12 + 3 * value_index)  # moves through the mid band with the attribute
    return 0.5 * tone + rng.uniform(0.25, 0.4) * _coloured_noise(rng, n, m.noise_tilt, resonance) / 3


def fault(rng, kind: str, n: int, f0_guess: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    if kind == "bearing_tick":  # periodic short impulses with a resonance
        period = int(SAMPLE_RATE / rng.uniform(8, 25))
        ticks = np.zeros(n)
        ticks[rng.integers(0, period) :: period] = 1.0
        ring = np.exp(-np.arange(200) / 25) * np.sin(2 * np.pi * rng.uniform(2500, 5000) * np.arange(200) / SAMPLE_RATE)
        return np.convolve(ticks, ring)[:n]
    if kind == "drifting_tone":  # a whine gliding in pitch
        f = rng.uniform(900, 2500) * (1 + rng.uniform(0.1, 0.4) * t / t[-1])
        return np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE)
    if kind == "extra_harmonic":  # a non-integer partial of the fundamental
        return np.sin(2 * np.pi * f0_guess * rng.uniform(2.3, 7.7) * t)
    if kind == "rattle":  # bursts of band noise
        bursts = (np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6)) > 0.6).astype(float)
        return bursts * rng.standard_normal(n) * 0.7
    raise ValueError(kind)


def machine_clip(rng, m, value_index: int, n: int, anomaly: str | None) -> np.ndarray:
    x = _machine_sound(rng, m, value_index, n)
    if anomaly:
        f = fault(rng, anomaly, n, m.base_hz + m.step_hz * value_index)
        x = x + rng.uniform(0.1, 0.45) * f / (np.abs(f).max() + 1e-12)
    return (0.6 * x / np.abs(x).max()).astype(np.float32)
