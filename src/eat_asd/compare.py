"""Comparing runs: official score and its parts per variant over seeds, bootstrap intervals over
test clips, and paired differences against a reference variant.

A bootstrap replicate resamples the test clips of every section with replacement, within each
cell of (machine type, section, domain, label), so every AUC stays defined, and resamples the seeds
with replacement; the same resampled clips and seeds serve every variant (clips are matched by
machine type and file name), so a difference between two variants is paired. A replicate's
statistic is the mean over its drawn seeds: the intervals hold the spread of the seeds as well as
that of the test set.

The AUCs come from clip weights (how often the bootstrap drew each clip), all replicates in one
vectorised pass (metrics.weighted_auc).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import DOMAINS, labelled
from .metrics import MAX_FPR, hmean_rows, weighted_auc

CELL = ["machine", "section", "domain", "label"]
# the statistics of a run that the comparison reports, from its DCASE result table
STATISTICS = ["official score", "AUC (source)", "AUC (target)", "pAUC"]


# ----------------------------------------------------------------------------- one run's statistics


@dataclass
class Section:
    """The clips of one section of one machine type, in the order the bootstrap draws them."""

    machine: str
    section: str
    filenames: np.ndarray
    cells: np.ndarray  # cell index of each clip (domain x label), for stratified resampling
    domains: np.ndarray
    anomalous: np.ndarray


def sections_of(scores: pd.DataFrame) -> list[Section]:
    """The labelled test clips per (machine type, section), sorted, as the bootstrap sees them;
    a section without both normal and anomalous clips has no AUC and is left out, as the metrics
    module leaves its values out of the official score."""
    out = []
    for (machine, section), g in labelled(scores).groupby(["machine", "section"], sort=True):
        if g["label"].nunique() < 2:
            continue
        g = g.sort_values("filename", kind="stable")
        cells = g.groupby(["domain", "label"], sort=True).ngroup().to_numpy()
        out.append(Section(str(machine), str(section), g["filename"].to_numpy(str), cells, g["domain"].to_numpy(str),
                           (g["label"] == "anomaly").to_numpy()))
    return out


def _aligned_scores(scores: pd.DataFrame, sections: list[Section]) -> list[np.ndarray]:
    """Each section's scores in its clip order; a run must have scored exactly the same test clips."""
    by_name = labelled(scores).set_index(["machine", "filename"])["score"]
    out = []
    for sec in sections:
        keys = pd.MultiIndex.from_arrays([[sec.machine] * len(sec.filenames), sec.filenames])
        missing = keys.difference(by_name.index)
        if len(missing):
            raise ValueError(f"{sec.machine} section {sec.section}: {len(missing)} test clip(s) not scored in every run, "
                             f"e.g. {missing[0][1]}")
        out.append(by_name.loc[keys].to_numpy(float))
    return out


def run_values(sections: list[Section], scores: list[np.ndarray], weights: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per weight row: the official score, the harmonic means of AUC (source), AUC (target) and
    pAUC, and each machine type's official score ("official score | <machine>")."""
    values: dict[str, list[np.ndarray]] = {"AUC (source)": [], "AUC (target)": [], "pAUC": []}
    per_machine: dict[str, list[np.ndarray]] = {}
    for sec, s, w in zip(sections, scores, weights):
        parts = []
        for domain in DOMAINS:
            if not ((sec.domains == domain) & ~sec.anomalous).any():
                continue  # no normals of this domain: its AUC is undefined and left out
            # AUC (domain): the domain's normals and every anomaly of the section
            keep = ((sec.domains == domain) & ~sec.anomalous) | sec.anomalous
            auc = weighted_auc(s[keep], sec.anomalous[keep], w[:, keep])
            values[f"AUC ({domain})"].append(auc)
            parts.append(auc)
        if not parts:  # no domains (DCASE 2020): AUC over the whole section, as the metrics module does
            parts.append(weighted_auc(s, sec.anomalous, w))
        pauc = weighted_auc(s, sec.anomalous, w, max_fpr=MAX_FPR)
        values["pAUC"].append(pauc)
        per_machine.setdefault(sec.machine, []).extend([*parts, pauc])
    out = {"official score": hmean_rows(np.column_stack([v for m in per_machine.values() for v in m]))}
    for name, columns in values.items():
        if columns:
            out[name] = hmean_rows(np.column_stack(columns))
    for machine, columns in per_machine.items():
        out[f"official score | {machine}"] = hmean_rows(np.column_stack(columns))
    return out


def bootstrap_weights(sections: list[Section], n_boot: int, seed: int) -> list[np.ndarray]:
    """Clip multiplicities (n_boot, n_clips) per section: each cell's clips drawn with replacement."""
    rng = np.random.default_rng(seed)
    out = []
    for sec in sections:
        w = np.zeros((n_boot, len(sec.cells)))
        for cell in np.unique(sec.cells):
            idx = np.flatnonzero(sec.cells == cell)
            draws = rng.integers(0, len(idx), size=(n_boot, len(idx)))
            np.add.at(w, (np.arange(n_boot)[:, None], idx[draws]), 1)
        out.append(w)
    return out


# ----------------------------------------------------------------------------- comparison


def compare_runs(runs: dict[str, dict[int, pd.DataFrame]], reference: str, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> pd.DataFrame:
    """One row per variant and statistic: mean and std over seeds, the bootstrap interval of the
    seed mean, and the paired difference to the reference variant with its bootstrap interval.

    runs: variant -> seed -> score table (columns machine, section, domain, label, filename, score)
    of every machine type. The intervals are percentile intervals at `level`.
    """
    if reference not in runs:
        raise ValueError(f"reference variant {reference!r} is not among the runs {sorted(runs)}")
    first = next(iter(next(iter(runs.values())).values()))
    sections = sections_of(first)
    if not sections:
        raise ValueError("no labelled test clips: nothing to compare")
    seed_lists = {variant: sorted(seeds) for variant, seeds in runs.items()}
    if len({tuple(v) for v in seed_lists.values()}) > 1:
        raise ValueError(f"every variant needs the same seeds to be compared: {seed_lists}")
    weights = bootstrap_weights(sections, n_boot, seed)
    # the seeds drawn with replacement too, the same draws for every variant: differences stay paired
    # by seed (variants that differ only in scoring share each seed's training), and the intervals
    # hold the seeds' spread as well as the test set's
    n_seeds = len(seed_lists[reference])
    drawn = np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(n_boot, n_seeds))
    ones = [np.ones((1, len(sec.cells))) for sec in sections]
    point, boot = {}, {}
    for variant, seeds in runs.items():
        per_seed_point, per_seed_boot = [], []
        for s in seed_lists[variant]:
            aligned = _aligned_scores(seeds[s], sections)
            per_seed_point.append({k: v[0] for k, v in run_values(sections, aligned, ones).items()})
            per_seed_boot.append(run_values(sections, aligned, weights))
        point[variant] = pd.DataFrame(per_seed_point)
        replicate = np.arange(n_boot)[:, None]
        boot[variant] = {k: np.stack([b[k] for b in per_seed_boot])[drawn, replicate].mean(axis=1) for k in per_seed_boot[0]}
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    rows = []
    for variant in runs:
        for name in point[variant].columns:
            values = point[variant][name].to_numpy()
            diff = boot[variant][name] - boot[reference][name]
            statistic, _, machine = name.partition(" | ")
            rows.append(dict(variant=variant, machine_type=machine or "all", statistic=statistic, seeds=len(values),
                             mean=values.mean(), std=values.std(ddof=1) if len(values) > 1 else float("nan"),
                             ci_low=np.percentile(boot[variant][name], lo), ci_high=np.percentile(boot[variant][name], hi),
                             diff=values.mean() - point[reference][name].to_numpy().mean(),
                             diff_low=np.percentile(diff, lo), diff_high=np.percentile(diff, hi)))
    return pd.DataFrame(rows)
