"""AUROC tables and the official DCASE Task 2 metrics.

The per-section columns, the summary rows and the official score follow the formulas of
nttcslab's dcase2024_task2_evaluator (the DCASE 2023-2025 evaluators compute them the same way);
data of earlier years is scored by the same rules.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import scipy.stats
from sklearn.metrics import roc_auc_score

from .data import DOMAINS, labelled

log = logging.getLogger(__name__)

EVALUATOR = "nttcslab's dcase2024_task2_evaluator"
MAX_FPR = 0.1
# the per-section columns of the official baseline and evaluator, in their order
METRICS = ["AUC (source)", "AUC (target)", "pAUC", "pAUC (source)", "pAUC (target)",
           "precision (source)", "precision (target)", "recall (source)", "recall (target)",
           "F1 score (source)", "F1 score (target)"]
# AUC over every clip of a section: the evaluator's "AUC (all)"; data without domains scores with it
AUC_ALL = "AUC (all)"
SECTION_COLUMNS = ["machine_type", "section", *METRICS, AUC_ALL, "n_normal", "n_anomaly"]
# the evaluator's closing block: one row per mean, one column per metric over both domains
MEAN_ROWS = ["arithmetic mean", "harmonic mean", "source harmonic mean", "target harmonic mean"]
MEAN_COLUMNS = ["AUC", "pAUC", "precision", "recall", "F1 score"]
EPS = sys.float_info.epsilon


def _auc(labels: pd.Series, scores: pd.Series, what: str, notes: list[str], max_fpr: float | None = None) -> float:
    """ROC AUC (or McClish-standardised pAUC) with a message instead of a crash when one class is missing."""
    y = (labels == "anomaly").astype(int).to_numpy()
    n_anom, n_norm = int(y.sum()), int(len(y) - y.sum())
    if n_anom == 0 or n_norm == 0:
        missing = "anomalous" if n_anom == 0 else "normal"
        notes.append(f"{what}: no {missing} test clips, so its {'pAUC' if max_fpr else 'AUC'} is undefined")
        return float("nan")
    return float(roc_auc_score(y, scores.to_numpy(), max_fpr=max_fpr))


def auroc_table(scores: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Columns machine_type, auroc, n_normal, n_anomaly; a final row 'overall' pooled over every clip."""
    scores = labelled(scores)
    notes: list[str] = []
    rows = []
    for machine, g in scores.groupby("machine", sort=True):
        rows.append(dict(machine_type=machine, auroc=_auc(g["label"], g["score"], f"machine type {machine}", notes),
                         n_normal=int((g["label"] == "normal").sum()), n_anomaly=int((g["label"] == "anomaly").sum())))
    rows.append(dict(machine_type="overall", auroc=_auc(scores["label"], scores["score"], "all machine types", notes),
                     n_normal=int((scores["label"] == "normal").sum()), n_anomaly=int((scores["label"] == "anomaly").sum())))
    for note in notes:
        log.warning(note)
    return pd.DataFrame(rows), notes


def _defined(values) -> np.ndarray:
    return np.asarray([x for x in values if np.isfinite(x)], dtype=float)


def hmean(values) -> float:
    """Harmonic mean of the defined values, each floored at machine epsilon as the evaluator does
    (a zero would otherwise make the mean undefined)."""
    v = _defined(values)
    return float(scipy.stats.hmean(np.maximum(v, EPS))) if len(v) else float("nan")


def amean(values) -> float:
    v = _defined(values)
    return float(v.mean()) if len(v) else float("nan")


def domain_selection(g: pd.DataFrame, domain: str) -> pd.DataFrame:
    """The clips of a section that AUC(domain) and pAUC(domain) rank: that domain's normals plus
    ALL anomalies of the section (both domains)."""
    return g[((g["domain"] == domain) & (g["label"] == "normal")) | (g["label"] == "anomaly")]


def decision_metrics(g: pd.DataFrame) -> tuple[float, float, float]:
    """Precision, recall and F1 of the decisions (1 = anomaly) over the given clips, with the
    evaluator's epsilon-floored denominators (0 instead of undefined)."""
    y = (g["label"] == "anomaly").to_numpy()
    d = g["decision"].to_numpy().astype(int) == 1
    tp, fp, fn = int((y & d).sum()), int((~y & d).sum()), int((y & ~d).sum())
    precision = tp / max(tp + fp, EPS)
    recall = tp / max(tp + fn, EPS)
    return precision, recall, 2 * precision * recall / max(precision + recall, EPS)


def dcase_section_metrics(g: pd.DataFrame, where: str, notes: list[str]) -> dict:
    """The evaluator's columns for one machine type's section (labelled clips only).

    AUC(domain), pAUC(domain): that domain's normals and all anomalies of the section;
    pAUC: every clip of the section; precision, recall, F1 (domain): the decisions on that
    domain's clips (normal and anomalous). A domain without clips in the section gets undefined values.
    """
    row = {}
    for domain in DOMAINS:
        if not (g["domain"] == domain).any():
            for metric in ("AUC", "pAUC", "precision", "recall", "F1 score"):
                row[f"{metric} ({domain})"] = float("nan")
            continue
        sub = domain_selection(g, domain)
        row[f"AUC ({domain})"] = _auc(sub["label"], sub["score"], f"{where} {domain} domain", notes)
        row[f"pAUC ({domain})"] = _auc(sub["label"], sub["score"], f"{where} {domain} domain", notes, max_fpr=MAX_FPR)
        own = g[g["domain"] == domain]
        p, r, f = decision_metrics(own)
        row[f"precision ({domain})"], row[f"recall ({domain})"], row[f"F1 score ({domain})"] = p, r, f
    row[AUC_ALL] = _auc(g["label"], g["score"], where, notes)
    row["pAUC"] = _auc(g["label"], g["score"], where, notes, max_fpr=MAX_FPR)
    row["n_normal"] = int((g["label"] == "normal").sum())
    row["n_anomaly"] = int((g["label"] == "anomaly").sum())
    return row


def column_means(table: pd.DataFrame) -> pd.DataFrame:
    """The rows "arithmetic mean" and "harmonic mean" of every metric column over all sections of
    all machine types (undefined values left out)."""
    return pd.DataFrame([
        dict(machine_type=name, **{c: fn(table[c]) for c in [*METRICS, AUC_ALL]})
        for name, fn in (("arithmetic mean", amean), ("harmonic mean", hmean))
    ], columns=SECTION_COLUMNS)


def dcase_metrics(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict, list[str]]:
    """Per-section table, the evaluator's closing block of means, the summary, and notes.

    Closing block (over all machine types, sections and domains): per metric, the arithmetic
    and harmonic means of the source and target values together (pAUC, which has no domain,
    counts once per domain as in the evaluator, so its means are those of the pAUC column),
    and the harmonic means of the source and of the target values.
    Official score: the harmonic mean of every section's AUC(source), AUC(target) and pAUC, pooled.
    Data without domains (DCASE 2020, the simple layout) contribute their AUC (all) in place of
    the two domain AUCs.
    """
    scores = labelled(scores)
    notes: list[str] = []
    rows, aucs, left_out = [], [], []
    for (machine, section), g in scores.groupby(["machine", "section"], sort=True):
        where = f"{machine} section {section}"
        row = dcase_section_metrics(g, where, notes)
        rows.append(dict(machine_type=machine, section=section, **row))
        has_domains = any((g["domain"] == d).any() for d in DOMAINS)
        names = [f"AUC ({d})" for d in DOMAINS] if has_domains else [AUC_ALL]
        aucs += [row[n] for n in names]
        left_out += [f"{n} of {where}" for n in names + ["pAUC"] if not np.isfinite(row[n])]
    table = pd.DataFrame(rows, columns=SECTION_COLUMNS)
    official = aucs + list(table["pAUC"])

    means = {}
    for metric in MEAN_COLUMNS:
        if metric == "pAUC":
            source = target = list(table["pAUC"])
        else:
            source, target = list(table[f"{metric} (source)"]), list(table[f"{metric} (target)"])
        # the AUC row pools the same AUCs as the official score (AUC (all) of domain-less sections included)
        pooled = aucs if metric == "AUC" else source + target
        means[metric] = {"arithmetic mean": amean(pooled), "harmonic mean": hmean(pooled),
                         "source harmonic mean": hmean(source), "target harmonic mean": hmean(target)}
    mean_table = pd.DataFrame([dict(summary=r, **{m: means[m][r] for m in MEAN_COLUMNS}) for r in MEAN_ROWS],
                              columns=["summary", *MEAN_COLUMNS])
    summary = dict(official_score=hmean(official), official_score_ci95=official_score_ci95(scores),
                   n_values=int(np.isfinite(official).sum()), left_out=left_out,
                   means={r: {m: means[m][r] for m in MEAN_COLUMNS} for r in MEAN_ROWS})
    if left_out:
        notes.append(f"official score: {len(left_out)} undefined value(s) left out of the harmonic mean: {', '.join(left_out)}")
    for note in notes:
        log.warning(note)
    return table, mean_table, summary, notes


# ----------------------------------------------------------------------------- resampling


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray, max_fpr: float | None = None) -> np.ndarray:
    """ROC AUC (or the McClish-standardised partial AUC up to max_fpr) for each row of `weights`.

    scores, positive: (n,) per clip; weights: (B, n) non-negative clip multiplicities. Ties count
    one half, as in the Mann-Whitney statistic (and sklearn's trapezoids).
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    s, pos, w = np.asarray(scores, dtype=float)[order], np.asarray(positive, bool)[order], weights[:, order]
    # one ROC point per distinct score (tied clips move together), from the highest score down
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    tp = np.add.reduceat(w * pos, starts, axis=1).cumsum(axis=1)
    fp = np.add.reduceat(w * ~pos, starts, axis=1).cumsum(axis=1)
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    zero = np.zeros((len(w), 1))
    tpr = np.hstack([zero, tp / np.maximum(n_pos, EPS)])
    fpr = np.hstack([zero, fp / np.maximum(n_neg, EPS)])
    if max_fpr is None:
        return np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, axis=1)
    f0, f1, t0, t1 = fpr[:, :-1], fpr[:, 1:], tpr[:, :-1], tpr[:, 1:]
    right = np.minimum(f1, max_fpr)
    width = np.clip(right - f0, 0, None)
    slope = np.divide(t1 - t0, f1 - f0, out=np.zeros_like(t0), where=f1 > f0)
    t_right = t0 + slope * (right - f0)
    partial = np.sum(width * (t0 + t_right) / 2, axis=1)
    low, high = max_fpr**2 / 2, max_fpr  # the areas of the diagonal and of a perfect ranking
    return 0.5 * (1 + (partial - low) / (high - low))


def hmean_rows(values: np.ndarray) -> np.ndarray:
    """Harmonic mean along axis 1, each value floored at machine epsilon (as the evaluator does)."""
    v = np.maximum(values, EPS)
    return v.shape[1] / np.sum(1 / v, axis=1)


def official_score_ci95(scores: pd.DataFrame, chunk: int = 256) -> float:
    """The evaluator's "official score ci95" row: the mean of the jackknife 95% half-widths of the
    AUC and of the pAUC of every labelled test clip pooled (machine types and sections together).
    Its jackknife divides by N(N-1), so it is not an interval of the official score; a comparison
    of runs uses the bootstrap of eat_asd.compare instead."""
    scores = labelled(scores)
    y, s = (scores["label"] == "anomaly").to_numpy(), scores["score"].to_numpy(float)
    n = len(s)
    if n < 3 or y.all() or not y.any():
        return float("nan")
    half_widths = []
    for max_fpr in (None, MAX_FPR):
        left_out = np.empty(n)  # the statistic without clip i
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk))
            w = np.ones((len(rows), n))
            w[np.arange(len(rows)), rows] = 0
            left_out[rows] = weighted_auc(s, y, w, max_fpr)
        sigma = np.sqrt(np.sum((left_out - left_out.mean()) ** 2) / (n * (n - 1)))
        half_widths.append(abs(scipy.stats.t.ppf(0.025, n - 1)) * sigma)
    return float(np.mean(half_widths))
