"""Clip embeddings from cached features: batched, in inference mode, on any device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .runtime import autocast, check_precision, inference_weights, resolve_device, resolve_precision, to_device

POOLINGS = ("cls", "mean", "cls+mean")
LONG_CLIPS = ("crop", "sliding")
# On the CPU the encoder runs a few segments at a time: larger batches only push activations out
# of cache (EAT-base, 2 cores, float32: 2.0 clips/s at 4 segments, 1.76 at 32; bf16: 0.80-0.81 of the
# bf16 matmul peak at 1, 2 and 4 segments alike, 1 keeps a segment's attention scores, 6 MB, in cache).
# GPUs take the whole batch.
CPU_MICRO_BATCH = {"float32": 4, "bfloat16": 1}


@dataclass(frozen=True)
class EmbedSettings:
    pooling: str = "cls"  # CLS token, mean of patch tokens, or both concatenated
    segment_frames: int | None = None  # encoder input length; None = the whole cached clip
    long_clips: str = "crop"  # clips longer than segment_frames: first segment, or mean over sliding windows
    hop_frames: int | None = None  # sliding-window hop; None = segment_frames (no overlap)
    batch_size: int = 32
    precision: str = "auto"  # auto: bf16 where the hardware multiplies bf16 natively (runtime.resolve_precision)

    def __post_init__(self):
        check_precision(self.precision, "embedding.precision")
        if self.pooling not in POOLINGS:
            raise ValueError(f"embedding.pooling = {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        if self.long_clips not in LONG_CLIPS:
            raise ValueError(f"embedding.long_clips = {self.long_clips!r}: choose one of {', '.join(LONG_CLIPS)}")
        for name in ("segment_frames", "hop_frames"):
            v = getattr(self, name)
            if v is not None and (v <= 0 or (name == "segment_frames" and v % 16)):
                raise ValueError(f"embedding.{name} = {v}: must be a positive multiple of 16")


def pool_tokens(tokens: torch.Tensor, pooling: str) -> torch.Tensor:
    cls, patches = tokens[:, 0], tokens[:, 1:].mean(dim=1)
    if pooling == "cls":
        return cls
    if pooling == "mean":
        return patches
    return torch.cat([cls, patches], dim=1)


def windows(features: torch.Tensor, settings: EmbedSettings) -> torch.Tensor:
    """(B, T, F) -> (B, W, S, F): the segments each clip is embedded from."""
    seg = settings.segment_frames or features.shape[1]
    if features.shape[1] < seg:
        features = torch.nn.functional.pad(features, (0, 0, 0, seg - features.shape[1]))
    if settings.long_clips == "crop" or features.shape[1] == seg:
        return features[:, None, :seg]
    hop = settings.hop_frames or seg
    return features.unfold(1, seg, hop).permute(0, 1, 3, 2)


@torch.inference_mode()
def embed_features(model, features, settings: EmbedSettings = EmbedSettings(), device=None, desc: str = "embed") -> np.ndarray:
    """Embeddings (N, D) of cached features. `features` is a tensor (N, T, 128) or a
    FeatureFile plus rows given as (file, rows), read batch by batch."""
    device = resolve_device(device)
    precision = resolve_precision(settings.precision, device)
    model = inference_weights(model.to(device).eval(), device, precision)
    if isinstance(features, tuple):
        source, rows = features
        n, read = len(rows), lambda a, b: source.read(rows[a:b])
    else:
        n, read = len(features), lambda a, b: features[a:b]
    out = []
    for start in tqdm(range(0, n, settings.batch_size), desc=desc, unit="batch", mininterval=2, disable=n == 0):
        batch = read(start, start + settings.batch_size)
        segs = windows(batch, settings)
        b, w = segs.shape[:2]
        x = to_device(segs.reshape(b * w, 1, *segs.shape[2:]), device)
        step = CPU_MICRO_BATCH[precision] if device.type == "cpu" else len(x)
        pooled = []
        for s in range(0, len(x), step):
            with autocast(device, precision):
                tokens = model(x[s : s + step])
            pooled.append(pool_tokens(tokens.float(), settings.pooling))
        emb = torch.cat(pooled).view(b, w, -1).mean(dim=1)
        out.append(emb.cpu())
    if not out:  # no clips (e.g. a machine type without test clips)
        dim = model.config.embed_dim * (2 if settings.pooling == "cls+mean" else 1)
        return np.zeros((0, dim), np.float32)
    return torch.cat(out).numpy()
