"""Anomaly scores of a machine type's clips against memory banks of normal training embeddings (with
the back-end scoring.backend names, see eat_asd.backends), and the decision threshold."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .backends import knn_distance, l2_normalise, make_backend  # noqa: F401  (knn_distance, l2_normalise: re-exported)
from .banks import bank_group, memory_banks
from .config import schema_settings
from .errors import DataError
from .threshold import gamma_threshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
@schema_settings("scoring")
class ScoreSettings:
    k: int
    bank_split: str  # one bank per machine type, one per section, or one of every machine type
    domain_strategy: str  # one bank for both domains, or min over source and target banks
    threshold_quantile: float  # of the gamma fitted to the training clips' leave-one-out scores
    backend: str  # knn, kmeans or knn_rescaled (eat_asd.backends)
    kmeans_centres: int
    smote_ratio: float  # knn: target clips enlarged to this fraction of the source clips; 0 = off
    smote_neighbours: int
    k_ref: int  # knn_rescaled: neighbours of a bank clip that set its local density
    bank_supplemental: bool  # supplemental machine recordings join the banks

    def __post_init__(self):
        if self.smote_ratio > 0 and self.backend != "knn":
            raise ValueError(f"scoring.smote_ratio = {self.smote_ratio} applies to scoring.backend knn only, "
                             f"not {self.backend!r}: set it to 0")


def score_against_banks(bank_emb: np.ndarray, bank_meta: pd.DataFrame, query_emb: np.ndarray, query_meta: pd.DataFrame,
                        settings: ScoreSettings, leave_one_out: bool = False) -> tuple[np.ndarray, int]:
    """Anomaly score per query (higher = more anomalous) against the bank(s) its settings select, and the
    smallest number of neighbours any score was computed with.

    With leave_one_out, the queries are the first len(query_meta) bank clips (same order) and none
    is compared with itself: that gives the training scores the decision threshold is fitted on.
    """
    bank_meta, query_meta = bank_meta.reset_index(drop=True), query_meta.reset_index(drop=True)
    scores = np.full(len(query_meta), np.nan)
    banks = memory_banks(bank_meta["section"].astype(str).tolist(), bank_meta["domain"].tolist(),
                         settings.bank_split, settings.domain_strategy)
    query_groups = query_meta["section"].astype(str).map(lambda s: bank_group(s, settings.bank_split))
    domains = bank_meta["domain"].to_numpy()
    k_used = settings.k
    for group in query_groups.unique():
        q_idx = np.flatnonzero(query_groups == group)
        if group not in banks:
            raise ValueError(f"no training clips in the memory bank for section {group}")
        members = np.sort(np.concatenate([np.asarray(b, dtype=int) for b in banks[group]]))
        backend = make_backend(settings).fit(bank_emb[members], domains[members])
        if leave_one_out:
            # the queries are the first bank rows: their positions in this group's bank
            scores[q_idx] = backend.loo_scores(np.searchsorted(members, q_idx))
        else:
            scores[q_idx] = backend.score_samples(query_emb[q_idx])
        k_used = k_used if backend.k_used_ is None else min(k_used, backend.k_used_)
    return scores, k_used


def score_machine(train_emb: np.ndarray, train_meta: pd.DataFrame, test_emb: np.ndarray, test_meta: pd.DataFrame,
                  settings: ScoreSettings, other_emb: np.ndarray | None = None,
                  other_meta: pd.DataFrame | None = None) -> tuple[pd.DataFrame, float, np.ndarray, dict[str, int]]:
    """Scores and decisions for one machine type's test clips: (table, threshold, training scores,
    k used): a bank smaller than settings.k gives fewer neighbours, and k_used says how many
    ({"test": fewest for a test score, "threshold": fewest for a training score}).

    With bank_split "all", the training clips of the other machine types (other_emb, other_meta)
    join the bank; the threshold still comes from this machine type's training clips."""
    bank_emb, bank_meta = train_emb, train_meta
    if settings.bank_split == "all" and other_emb is not None and len(other_emb):
        if other_emb.shape[1] != train_emb.shape[1]:
            raise DataError(f"scoring.bank_split = all: the other machine types' embeddings have {other_emb.shape[1]} "
                            f"dimensions, this one's {train_emb.shape[1]} (use one embedding.pooling for all)")
        bank_emb = np.concatenate([train_emb, other_emb])
        bank_meta = pd.concat([train_meta, other_meta], ignore_index=True)
    # leave-one-out: this machine type's training clips are the first rows of the bank
    train_scores, k_threshold = score_against_banks(bank_emb, bank_meta, train_emb, train_meta, settings, leave_one_out=True)
    threshold = gamma_threshold(train_scores, settings.threshold_quantile)
    scores, k_test = score_against_banks(bank_emb, bank_meta, test_emb, test_meta, settings)
    k_used = {"test": k_test, "threshold": k_threshold}
    if k_test < settings.k or k_threshold < settings.k:
        log.warning("scoring.k = %d is more than the smallest memory bank gives: k used %s", settings.k, k_used)
    table = test_meta[["filename", "machine", "section", "domain", "label", "attribute_string"]].reset_index(drop=True).copy()
    table["score"] = scores
    table["decision"] = (scores > threshold).astype(int)
    return table, threshold, train_scores, k_used
