"""Noise augmentation for training (train.noise_mix): noise-only recordings of a clip's machine type
(the DCASE 2025 supplemental/ noise clips) mixed into the clip's waveform at a random signal-to-noise
ratio, before the fbank. The feature cache keeps the clean clips; the training job mixes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # numpy loads lazily: planning checks the settings (NoiseMix) without it
    import numpy as np


@dataclass(frozen=True)
class NoiseMix:
    prob: float  # chance a training clip (view) gets noise, per clip and epoch
    snr_db: tuple[float, float]  # the range the SNR of a mix is drawn from, uniformly

    def __post_init__(self):
        low, high = self.snr_db
        if low > high:
            raise ConfigError(f"train.noise_mix.snr_db = {list(self.snr_db)}: give [low, high] with low <= high")
        object.__setattr__(self, "snr_db", (float(low), float(high)))

    @classmethod
    def of(cls, values: dict | None) -> "NoiseMix | None":
        """The mix of train.noise_mix (keys it lacks take the schema's defaults), or None when it is off (prob 0)."""
        from .config import section_schema

        defaults = {k: v["default"] for k, v in section_schema("train")["properties"]["noise_mix"]["properties"].items()}
        values = {**defaults, **(values or {})}
        if not values["prob"]:
            return None
        return cls(float(values["prob"]), tuple(values["snr_db"]))


def power(x: "np.ndarray") -> float:
    import numpy as np

    return float(np.mean(np.square(x, dtype=np.float64)))


def mix_at_snr(clean: "np.ndarray", noise: "np.ndarray", snr_db: float, offset: int = 0) -> "np.ndarray":
    """clean + noise scaled so that 10 log10(P(clean) / P(scaled noise)) = snr_db, the noise read from
    `offset` on and repeated (or cut) to the clip's length. Silent clean or noise: the clip unchanged."""
    import numpy as np

    n = len(clean)
    start = offset % len(noise)
    segment = np.resize(np.roll(noise, -start), n)  # np.resize repeats the noise when it is shorter
    p_clean, p_noise = power(clean), power(segment)
    if p_clean == 0 or p_noise == 0:
        return clean.copy()
    gain = math.sqrt(p_clean / (p_noise * 10 ** (snr_db / 10)))
    return (clean + gain * segment).astype(np.float32)


class NoiseMixer:
    """Mixes noise recordings into training clips, with every random choice drawn from the training
    loop's torch generator (same seed, same mixes)."""

    def __init__(self, mix: NoiseMix, noise_paths: dict[str, list[str]], channels, target_frames: int):
        self.mix, self.noise_paths, self.channels, self.target_frames = mix, noise_paths, channels, target_frames
        self._noise: dict[tuple[str, int], "np.ndarray"] = {}

    def _read(self, path: str, view: int) -> "np.ndarray":
        """View `view` of a clip at 16 kHz (the channel setting of the features, `view` under each)."""
        from .audio import SAMPLE_RATE, _to_16k, read_clip

        clip = read_clip(path, self.channels)
        wave = clip.views[min(view, len(clip.views) - 1)]
        return wave if clip.sample_rate == SAMPLE_RATE else _to_16k(wave, clip.sample_rate).numpy()

    def noise(self, path: str, view: int) -> "np.ndarray":
        if (path, view) not in self._noise:  # the noise recordings are few: each is read once
            self._noise[(path, view)] = self._read(path, view)
        return self._noise[(path, view)]

    def draw(self, machine: str, gen) -> tuple[str, float, float] | None:
        """(noise file, SNR in dB, offset as a fraction of the noise) for one clip, or None for no mix."""
        import torch

        paths = self.noise_paths.get(machine)
        if not paths:
            return None
        u, pick, snr, offset = torch.rand(4, generator=gen, dtype=torch.float64).tolist()
        if u >= self.mix.prob:
            return None
        low, high = self.mix.snr_db
        return paths[min(int(pick * len(paths)), len(paths) - 1)], low + (high - low) * snr, offset

    def features(self, path: str, view: int, noise_path: str, snr_db: float, offset: float):
        """The normalised fbank (target_frames, 128) of the clip's view with the noise mixed in."""
        from .audio import SAMPLE_RATE, eat_fbank

        clean = self._read(path, view)
        noise = self.noise(noise_path, view)
        return eat_fbank(mix_at_snr(clean, noise, snr_db, int(offset * len(noise))), SAMPLE_RATE, self.target_frames)


def noise_recordings(manifests, machines: set[str]) -> dict[str, list[str]]:
    """Machine type -> its noise-only supplemental recordings, from the training manifests."""
    from .data import supplemental_clips

    out: dict[str, list[str]] = {}
    for manifest in manifests:
        noise = supplemental_clips(manifest, "noise")
        for machine, group in noise.groupby("machine"):
            if machine in machines:
                out.setdefault(str(machine), []).extend(sorted(group["path"], key=lambda p: Path(p).name))
    return out
