"""A small synthetic dataset in the DCASE 2023 layout (or, stereo, as DCASE 2026), and a small random EAT
checkpoint, for the demo.

Each machine type hums at a fundamental set by its operating attribute (which shifts between
the source and the target domain) over coloured noise. Anomalies are faint faults of four
kinds at random strengths, so that detection is possible but not trivial.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .audio import SAMPLE_RATE
from .data import DOMAINS
from .io import atomic_path

log = logging.getLogger(__name__)

ANOMALY_KINDS = ("bearing_tick", "drifting_tone", "extra_harmonic", "rattle")  # see synth.fault


@dataclass(frozen=True)
class DemoMachine:
    name: str
    attribute: str  # key of the operating attribute in the file names
    source_values: tuple[str, ...]
    target_values: tuple[str, ...]
    base_hz: float  # fundamental at attribute index 0
    step_hz: float  # change of the fundamental per attribute index
    harmonics: int
    noise_tilt: float  # 0 white, 1 brown-ish


MACHINES = (
    DemoMachine("fan", "vel", ("6", "8"), ("10",), 110.0, 18.0, 6, 0.6),
    DemoMachine("pump", "volt", ("1.5", "2.0"), ("2.5",), 180.0, 25.0, 4, 0.3),
    DemoMachine("gearbox", "wt", ("150", "200"), ("250",), 70.0, 12.0, 9, 0.8),
)


@dataclass(frozen=True)
class DemoSizes:
    seconds: float = 2.0
    train_source: int = 24  # per source attribute value
    train_target: int = 4  # per target attribute value (DCASE: few target-domain training clips)
    test_per_cell: int = 10  # normals and anomalies, per domain
    channels: int = 1  # 2: stereo, the near microphone (the mono clip) left and a far one right, as in DCASE 2026


@dataclass(frozen=True)
class DemoClip:
    machine: DemoMachine
    split: str
    domain: str
    label: str
    value_index: int
    anomaly: str | None
    name: str

    @property
    def relpath(self) -> str:
        return f"dev_data/raw/{self.machine.name}/{self.split}/{self.name}"


def demo_plan(sizes: DemoSizes = DemoSizes()) -> list[DemoClip]:
    """Every clip the demo writes, in order (the workflow plans its jobs from this list)."""
    plan = []
    for m in MACHINES:
        values = [("source", i, v) for i, v in enumerate(m.source_values)]
        values += [("target", len(m.source_values) + i, v) for i, v in enumerate(m.target_values)]
        cells = []  # (split, domain, label, value index, value, anomaly kind)
        for domain, vi, v in values:
            count = sizes.train_source if domain == "source" else sizes.train_target
            cells += [("train", domain, "normal", vi, v, None)] * count
        for domain in DOMAINS:
            options = [(vi, v) for d, vi, v in values if d == domain]
            for k in range(sizes.test_per_cell):
                vi, v = options[k % len(options)]
                cells.append(("test", domain, "normal", vi, v, None))
                cells.append(("test", domain, "anomaly", vi, v, ANOMALY_KINDS[k % len(ANOMALY_KINDS)]))
        counters: dict[tuple, int] = {}
        for split, domain, label, vi, v, kind in cells:
            num = counters[(split, domain, label)] = counters.get((split, domain, label), -1) + 1
            name = f"section_00_{domain}_{split}_{label}_{num:04d}_{m.attribute}_{v}.wav"
            plan.append(DemoClip(m, split, domain, label, vi, kind, name))
    return plan


def make_demo_data(root: str | Path, seed: int = 0, sizes: DemoSizes = DemoSizes()) -> Path:
    """Write dev_data/raw/<machine>/{train,test}/section_00_*.wav and attributes_00.csv below root."""
    import csv

    import numpy as np
    import soundfile as sf

    from .synth import machine_clip

    root = Path(root)
    n = int(sizes.seconds * SAMPLE_RATE)
    plan = demo_plan(sizes)
    for mi, m in enumerate(MACHINES):
        rng = np.random.default_rng([seed, mi])
        far_rng = np.random.default_rng([seed, mi, 1])  # its own stream: channel 0 equals the mono demo's clip
        clips = [c for c in plan if c.machine is m]
        for c in clips:
            audio = machine_clip(rng, m, c.value_index, n, c.anomaly)
            if sizes.channels == 2:
                audio = np.stack([audio, far_microphone(far_rng, audio)], axis=1)
            with atomic_path(root / c.relpath) as tmp:
                sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        with atomic_path(root / "dev_data" / "raw" / m.name / "attributes_00.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file_name", "d1p", "d1v"])
            for c in clips:
                writer.writerow([f"{m.name}/{c.split}/{c.name}", m.attribute, c.name.rsplit("_", 1)[1][:-4]])
    log.info("demo data: %d clips of %d machine types in %s", len(plan), len(MACHINES), root)
    return root


def far_microphone(rng, near):
    """The far microphone's signal: the machine quieter (a quarter of the near level) and a little
    later, under room noise about as loud as the machine there."""
    import numpy as np

    delay = 40  # samples, 2.5 ms: about 85 cm more path than the near microphone
    machine = 0.25 * np.concatenate([np.zeros(delay, np.float32), near[:-delay]])
    room = np.cumsum(rng.standard_normal(len(near))) * 0.02  # brown-ish room noise
    room = (room - np.convolve(room, np.ones(400) / 400, mode="same")) * 0.8  # without its slow drift
    noise = 0.7 * machine.std() * (room / (room.std() + 1e-12) + 0.5 * rng.standard_normal(len(near)))
    return np.clip(machine + noise, -1, 1).astype(np.float32)


def make_demo_encoder(directory: str | Path, seed: int = 0, embed_dim: int = 96, depth: int = 3, num_heads: int = 4,
                      max_length: int = 64) -> Path:
    """A small randomly initialised EAT checkpoint in the Hub layout (stands in for EAT-base offline)."""
    import torch

    from .eat import EAT, EATConfig, save_eat

    torch.manual_seed(seed)
    config = EATConfig(embed_dim=embed_dim, depth=depth, num_heads=num_heads, max_length=max_length,
                       img_size=[max_length * 16, 128])
    model = EAT(config)
    for name, p in model.named_parameters():  # ViT-style init: truncated normal weights, zero biases
        if p.dim() > 1:
            torch.nn.init.trunc_normal_(p, std=0.02)
        elif name.endswith("bias"):
            torch.nn.init.zeros_(p)
    return save_eat(model, directory)
