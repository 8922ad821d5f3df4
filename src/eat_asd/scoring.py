"""Memory banks of normal training embeddings and k-nearest-neighbour cosine-distance scores."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .banks import MIN_THRESHOLD_CLIPS, bank_group, memory_banks, usable_k
from .config import schema_settings
from .errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
@schema_settings("scoring")
class ScoreSettings:
    k: int
    bank_split: str  # one bank per machine type, one per section, or one of every machine type
    domain_strategy: str  # one bank for both domains, or min over source and target banks
    threshold_quantile: float  # of the gamma fitted to the training clips' leave-one-out scores
    bank_supplemental: bool  # supplemental machine recordings join the banks


def l2_normalise(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def knn_distance(queries, bank, k: int = 1, exclude_self: bool = False, query_chunk: int = 1024,
                 bank_chunk: int = 16384, device=None) -> np.ndarray:
    """Mean cosine distance of each query to its k nearest bank embeddings, exactly.

    Queries and bank are walked in chunks with a running top-k, so memory stays at
    query_chunk x bank_chunk similarities whatever the bank size. With
    exclude_self, queries are the bank itself and each row skips its own entry
    (leave-one-out).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    q, b = l2_normalise(queries).to(device), l2_normalise(bank).to(device)
    n_bank = b.shape[0] - (1 if exclude_self else 0)
    if n_bank < 1:
        raise ValueError("memory bank is empty" + (" after leaving one out" if exclude_self else ""))
    if k > n_bank:
        raise ValueError(f"k = {k} exceeds the memory bank size {n_bank}")
    out = torch.empty(q.shape[0])
    for qs in range(0, q.shape[0], query_chunk):
        qc = q[qs : qs + query_chunk]
        best = torch.full((qc.shape[0], k), -float("inf"), device=device)
        for bs in range(0, b.shape[0], bank_chunk):
            sims = qc @ b[bs : bs + bank_chunk].T
            if exclude_self:
                rows = torch.arange(qc.shape[0], device=device)
                cols = rows + qs - bs
                keep = (cols >= 0) & (cols < sims.shape[1])
                sims[rows[keep], cols[keep]] = -float("inf")
            # top-k of the chunk first, then merge: concatenating the whole chunk would copy it
            chunk_best = torch.topk(sims, min(k, sims.shape[1]), dim=1).values
            best = torch.topk(torch.cat([best, chunk_best], dim=1), k, dim=1).values
        out[qs : qs + qc.shape[0]] = (1 - best).mean(dim=1).cpu()
    return out.numpy()


def score_against_banks(bank_emb: np.ndarray, bank_meta: pd.DataFrame, query_emb: np.ndarray, query_meta: pd.DataFrame,
                        settings: ScoreSettings, leave_one_out: bool = False) -> np.ndarray:
    """Anomaly score per query (higher = more anomalous) against the bank(s) its settings select.

    With leave_one_out, the queries are the first len(query_meta) bank clips (same order) and none
    is compared with itself: that gives the training scores the decision threshold is fitted on.
    """
    return _scores_and_k(bank_emb, bank_meta, query_emb, query_meta, settings, leave_one_out)[0]


def _scores_and_k(bank_emb, bank_meta, query_emb, query_meta, settings: ScoreSettings,
                  leave_one_out: bool = False) -> tuple[np.ndarray, int]:
    """The scores, and the smallest number of neighbours any of them was computed with."""
    bank_meta, query_meta = bank_meta.reset_index(drop=True), query_meta.reset_index(drop=True)
    scores = np.full(len(query_meta), np.nan)
    banks = memory_banks(bank_meta["section"].astype(str).tolist(), bank_meta["domain"].tolist(),
                         settings.bank_split, settings.domain_strategy)
    query_groups = query_meta["section"].astype(str).map(lambda s: bank_group(s, settings.bank_split))
    k_used = settings.k
    for group in query_groups.unique():
        q_idx = np.flatnonzero(query_groups == group)
        if group not in banks:
            raise ValueError(f"no training clips in the memory bank for section {group}")
        per_bank = []
        for b_idx in map(np.asarray, banks[group]):
            if leave_one_out:
                # each query that is also in this bank skips itself; others see the full bank
                d, k = _loo_scores(bank_emb, b_idx, q_idx, settings.k)
            else:
                k = usable_k(settings.k, len(b_idx))
                d = knn_distance(query_emb[q_idx], bank_emb[b_idx], k)
            per_bank.append(d)
            k_used = min(k_used, k)
        scores[q_idx] = np.min(per_bank, axis=0)
    return scores, k_used


def _loo_scores(emb: np.ndarray, bank_idx: np.ndarray, query_idx: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    out = np.empty(len(query_idx))
    inside = np.isin(query_idx, bank_idx)
    k_used = k
    if inside.any():
        sub = bank_idx[np.isin(bank_idx, query_idx[inside])]
        # queries inside the bank: order the bank so those come first and exclude the diagonal
        rest = bank_idx[~np.isin(bank_idx, sub)]
        order = np.concatenate([sub, rest])
        kk = k_used = usable_k(k, len(order), leave_one_out=True)
        if kk < 1:
            out[inside] = np.inf  # a bank of one clip cannot score itself
        else:
            d = knn_distance(emb[sub], emb[order], kk, exclude_self=True)
            pos = {c: i for i, c in enumerate(sub)}
            out[inside] = d[[pos[c] for c in query_idx[inside]]]
    if (~inside).any():
        kk = usable_k(k, len(bank_idx))
        out[~inside] = knn_distance(emb[query_idx[~inside]], emb[bank_idx], kk)
        k_used = min(k_used, kk)
    return out, k_used


def gamma_threshold(train_scores: np.ndarray, quantile: float) -> float:
    """Decision threshold: the quantile of a gamma distribution fitted to normal training scores."""
    import scipy.stats

    s = np.asarray(train_scores, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) < MIN_THRESHOLD_CLIPS:
        raise ValueError(f"need at least {MIN_THRESHOLD_CLIPS} finite training scores to fit the threshold, got {len(s)}")
    if np.ptp(s) == 0:
        return float(s[0])
    try:
        # Distances are >= 0: fixing the location at 0 keeps the fit stable when a few
        # training clips lie far out (a free location can run off to a huge threshold).
        params = scipy.stats.gamma.fit(np.maximum(s, 1e-8), floc=0)
        threshold = float(scipy.stats.gamma.ppf(quantile, *params))
    except Exception as err:  # scipy's fit can fail on degenerate data
        log.warning("gamma fit failed (%s); using the empirical %.2f quantile", err, quantile)
        return float(np.quantile(s, quantile))
    if not np.isfinite(threshold):
        log.warning("gamma fit gave a non-finite threshold; using the empirical %.2f quantile", quantile)
        return float(np.quantile(s, quantile))
    return threshold


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
    train_scores, k_threshold = _scores_and_k(bank_emb, bank_meta, train_emb, train_meta, settings, leave_one_out=True)
    threshold = gamma_threshold(train_scores, settings.threshold_quantile)
    scores, k_test = _scores_and_k(bank_emb, bank_meta, test_emb, test_meta, settings)
    k_used = {"test": k_test, "threshold": k_threshold}
    if k_test < settings.k or k_threshold < settings.k:
        log.warning("scoring.k = %d is more than the smallest memory bank gives: k used %s", settings.k, k_used)
    table = test_meta[["filename", "machine", "section", "domain", "label", "attribute_string"]].reset_index(drop=True).copy()
    table["score"] = scores
    table["decision"] = (scores > threshold).astype(int)
    return table, threshold, train_scores, k_used
