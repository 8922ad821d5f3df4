"""Pseudo-attributes for sections without attributes: k-means clusters of the pre-trained encoder's
embeddings of their training clips become their classifier labels.

Without attributes (DCASE 2024-2026 names ending in _noAttribute) a section gives one label, and
telling machine types and sections apart is too easy a task to shape the embedding."""

from __future__ import annotations

import numpy as np
import torch

from .eat import EAT


def sections_without_attributes(clips) -> list[tuple[str, str]]:
    """(machine, section) pairs none of whose training clips carries an attribute (supplemental
    recordings, which never carry any, do not count)."""
    regular = clips[clips["regular"]] if "regular" in clips else clips
    has = regular.assign(_has=regular["attributes"] != "{}").groupby(["machine", "section"])["_has"].any()
    return [key for key, value in has.items() if not value]


@torch.no_grad()
def pretrained_embeddings(encoder: EAT, data, idx: np.ndarray, pooling: str, batch_size: int = 16, device=None) -> np.ndarray:
    """Embeddings of the training clips `idx` by the encoder as it is (frozen), pooled as the banks pool."""
    encoder = encoder.to(device or "cpu").eval()
    out = []
    for s in range(0, len(idx), batch_size):
        x = data.read(idx[s : s + batch_size]).unsqueeze(1).to(device or "cpu")
        out.append(EAT.pool(encoder(x), pooling).float().cpu())
    return torch.cat(out).numpy()


def cluster_labels(emb: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Seeded k-means cluster of each (L2-normalised) embedding; at most one cluster per clip."""
    from sklearn.cluster import KMeans

    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    n = min(n_clusters, len(emb))
    if n < 2:
        return np.zeros(len(emb), int)
    return KMeans(n_clusters=n, n_init=10, random_state=seed).fit_predict(emb.astype(np.float64))


def assign_pseudo_labels(data, encoder: EAT, n_clusters: int, seed: int, pooling: str, device=None) -> dict[str, list[int]]:
    """Relabel, in place, the clips of every section without attributes as machine|section|pseudo=j,
    j its k-means cluster; other sections keep their labels. Returns, per relabelled section
    (machine|section), the clips in each cluster (for the training summary)."""
    clips = data.clips
    labels = clips["aux_label"].to_numpy(dtype=object).copy()
    counts = {}
    for machine, section in sections_without_attributes(clips):
        idx = np.flatnonzero(((clips["machine"] == machine) & (clips["section"] == section)).to_numpy())
        emb = pretrained_embeddings(encoder, data, idx, pooling, device=device)
        # a clip of several views (features.channels = each) is clustered once, by its views' mean embedding
        clip = clips["clip"].to_numpy()[idx] if "clip" in clips else np.arange(len(idx))
        _, of_clip = np.unique(clip, return_inverse=True)
        per_clip = np.zeros((of_clip.max() + 1, emb.shape[1]))
        np.add.at(per_clip, of_clip, emb)
        clusters = cluster_labels(per_clip, n_clusters, seed)
        labels[idx] = [f"{machine}|{section}|pseudo={j}" for j in clusters[of_clip]]
        counts[f"{machine}|{section}"] = np.bincount(clusters).tolist()
    if counts:
        clips["aux_label"] = labels
        data.classes = sorted(clips["aux_label"].unique())
        clips["y"] = clips["aux_label"].map({c: i for i, c in enumerate(data.classes)})
    return counts
