"""Clip embeddings from cached features: batched, in inference mode, on any device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .config import schema_settings
from .eat import EAT
from .runtime import autocast, inference_weights, resolve_device, resolve_precision, to_device

# On the CPU the encoder runs a few segments at a time: larger batches only push activations out
# of cache (EAT-base, 2 cores, float32: 2.0 clips/s at 4 segments, 1.76 at 32; bf16: 0.80-0.81 of the
# bf16 matmul peak at 1, 2 and 4 segments alike, 1 keeps a segment's attention scores, 6 MB, in cache).
# GPUs take the whole batch.
CPU_MICRO_BATCH = {"float32": 4, "bfloat16": 1}


@dataclass(frozen=True)
@schema_settings("embedding")
class EmbedSettings:
    pooling: str  # CLS token, mean of patch tokens, or both concatenated
    segment_frames: int | None  # encoder input length; None = the whole cached clip
    long_clips: str  # clips longer than segment_frames: first segment, or mean over sliding windows
    hop_frames: int | None  # sliding-window hop; None = segment_frames (no overlap)
    batch_size: int
    precision: str  # auto: bf16 where the hardware multiplies bf16 natively (runtime.resolve_precision)


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
    # On the CPU, read batches of whole micro-batches: the encoder then sees the same groups of segments
    # whatever embedding.batch_size is (float32 matmuls of 2 and of 4 rows round differently, by up
    # to 7e-7), so the batch size changes no embedding and is an execution setting.
    micro = CPU_MICRO_BATCH[precision] if device.type == "cpu" else None
    per_read = settings.batch_size if micro is None else -(-settings.batch_size // micro) * micro
    out = []
    for start in tqdm(range(0, n, per_read), desc=desc, unit="batch", mininterval=2, disable=n == 0):
        batch = read(start, start + per_read)
        segs = windows(batch, settings)
        b, w = segs.shape[:2]
        x = to_device(segs.reshape(b * w, 1, *segs.shape[2:]), device)
        step = micro or len(x)
        pooled = []
        for s in range(0, len(x), step):
            with autocast(device, precision):
                tokens = model(x[s : s + step])
            pooled.append(EAT.pool(tokens.float(), settings.pooling))
        emb = torch.cat(pooled).view(b, w, -1).mean(dim=1)
        out.append(emb.cpu())
    if not out:  # no clips (e.g. a machine type without test clips)
        return np.zeros((0, model.pooled_dim(settings.pooling)), np.float32)
    return torch.cat(out).numpy()
