"""AUROC tables and the official DCASE Task 2 metrics (2023-2025 definitions; data of earlier years is scored by the same rules)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.stats
from sklearn.metrics import roc_auc_score

log = logging.getLogger(__name__)

MAX_FPR = 0.1


def _auc(labels: pd.Series, scores: pd.Series, what: str, notes: list[str], max_fpr: float | None = None) -> float:
    """ROC AUC (or McClish-standardised pAUC) with a message instead of a crash when one class is missing."""
    y = (labels == "anomaly").astype(int).to_numpy()
    n_anom, n_norm = int(y.sum()), int(len(y) - y.sum())
    if n_anom == 0 or n_norm == 0:
        missing = "anomalous" if n_anom == 0 else "normal"
        notes.append(f"{what}: no {missing} test clips, so its {'pAUC' if max_fpr else 'AUC'} is undefined")
        return float("nan")
    return float(roc_auc_score(y, scores.to_numpy(), max_fpr=max_fpr))


def labelled(scores: pd.DataFrame) -> pd.DataFrame:
    return scores[scores["label"].isin(["normal", "anomaly"])]


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


def hmean(values) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan")
    return float(scipy.stats.hmean(np.maximum(v, np.finfo(float).eps)))


def dcase_section_metrics(g: pd.DataFrame, where: str, notes: list[str]) -> dict:
    """AUC(source), AUC(target), AUC over all clips and pAUC for one machine type's section.

    AUC(domain) uses that domain's normals and ALL anomalies of the section (both domains);
    pAUC (FPR <= 0.1) uses every clip of the section.
    """
    anomalies = g[g["label"] == "anomaly"]
    row = {}
    domains = set(g["domain"])
    for domain in ("source", "target"):
        if domain in domains:
            sub = pd.concat([g[(g["domain"] == domain) & (g["label"] == "normal")], anomalies])
            row[f"auc_{domain}"] = _auc(sub["label"], sub["score"], f"{where} {domain} domain", notes)
        else:
            row[f"auc_{domain}"] = float("nan")
    row["auc"] = _auc(g["label"], g["score"], where, notes)
    row["pauc"] = _auc(g["label"], g["score"], where, notes, max_fpr=MAX_FPR)
    row["n_normal"] = int((g["label"] == "normal").sum())
    row["n_anomaly"] = int(len(anomalies))
    return row


def dcase_metrics(scores: pd.DataFrame) -> tuple[pd.DataFrame, dict, list[str]]:
    """Per machine type and section metrics, plus the summary scores.

    The official score is the harmonic mean over the flat list of every AUC(source),
    AUC(target) and pAUC (DCASE 2023-2025). Data without domains (DCASE 2020, the simple
    layout) contribute their AUC over all clips in place of the two domain AUCs.
    """
    scores = labelled(scores)
    notes: list[str] = []
    rows, aucs = [], []
    for (machine, section), g in scores.groupby(["machine", "section"], sort=True):
        row = dcase_section_metrics(g, f"{machine} section {section}", notes)
        rows.append(dict(machine_type=machine, section=section, **row))
        present = [d for d in ("source", "target") if (g["domain"] == d).any()]
        aucs += [row[f"auc_{d}"] for d in present] if present else [row["auc"]]
    table = pd.DataFrame(rows, columns=["machine_type", "section", "auc_source", "auc_target", "auc", "pauc", "n_normal", "n_anomaly"])
    flat = aucs + list(table["pauc"])
    summary = dict(
        official_score=hmean(flat),
        arithmetic_mean=float(np.nanmean(flat)) if np.isfinite(flat).any() else float("nan"),
        hmean_source=hmean(table["auc_source"]),
        hmean_target=hmean(table["auc_target"]),
        hmean_auc=hmean(aucs),
        hmean_pauc=hmean(table["pauc"]),
        n_values=int(np.isfinite(flat).sum()),
    )
    if len(flat) > summary["n_values"]:
        notes.append(f"official score: {len(flat) - summary['n_values']} undefined value(s) left out of the harmonic mean")
    for note in notes:
        log.warning(note)
    return table, summary, notes
