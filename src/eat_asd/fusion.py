"""Score-level ensembles: the members' scores of one machine type, each normalised on its own
training clips, averaged; decisions from the same gamma threshold procedure as single systems."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError
from .threshold import gamma_threshold

SCORE_COLUMNS = ["filename", "machine", "section", "domain", "label", "attribute_string"]


def section_scale(train_scores: np.ndarray, train_sections: np.ndarray, section: str) -> float:
    """The mean leave-one-out score of the member's normal training clips of a section (of all its
    training clips when the section has none): dividing by it puts every member on one scale and
    keeps scores positive, as the gamma threshold needs."""
    finite = np.isfinite(train_scores)
    own = finite & (train_sections == section)
    values = train_scores[own] if own.any() else train_scores[finite]
    scale = float(values.mean()) if len(values) else float("nan")
    if not np.isfinite(scale) or scale <= 0:
        raise DataError(f"section {section}: the training scores give no positive scale to normalise by ({scale})")
    return scale


def fuse(members: list[tuple[pd.DataFrame, dict]], threshold_quantile: float) -> tuple[pd.DataFrame, float, np.ndarray]:
    """(score table, threshold, fused training scores) of the members' mean normalised scores.

    members: each (score table, score info) of one machine type; the tables must hold the same
    test clips and the infos the same training clips (train_scores and train_sections)."""
    base = members[0][0].sort_values("filename", kind="stable").reset_index(drop=True)
    sections = base["section"].astype(str).to_numpy()
    train_sections = np.asarray(members[0][1]["train_sections"], dtype=str)
    test_sum, train_sum = np.zeros(len(base)), np.zeros(len(train_sections))
    for i, (table, info) in enumerate(members):
        table = table.sort_values("filename", kind="stable").reset_index(drop=True)
        if not table["filename"].equals(base["filename"]):
            raise DataError(f"fuse member {i + 1} scored other test clips than member 1")
        if list(info["train_sections"]) != list(train_sections):
            raise DataError(f"fuse member {i + 1} has other training clips than member 1")
        train = np.asarray(info["train_scores"], dtype=float)
        scales = {s: section_scale(train, train_sections, s) for s in set(sections) | set(train_sections)}
        test_sum += table["score"].to_numpy(float) / np.array([scales[s] for s in sections])
        train_sum += train / np.array([scales[s] for s in train_sections])
    fused_train = train_sum / len(members)
    threshold = gamma_threshold(fused_train, threshold_quantile)
    out = base[SCORE_COLUMNS].copy()
    out["score"] = test_sum / len(members)
    out["decision"] = (out["score"] > threshold).astype(int)
    return out, threshold, fused_train
