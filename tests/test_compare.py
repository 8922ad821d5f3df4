import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import scipy.stats
from sklearn.metrics import roc_auc_score

from eat_asd.compare import compare_runs, weighted_auc
from eat_asd.metrics import dcase_metrics


def scores_table(rng, mu_anomaly=1.0, n=40, machines=("fan", "pump"), sections=("00", "01"), ties=False):
    rows = []
    for m in machines:
        for s in sections:
            for domain in ("source", "target"):
                for label, mu in (("normal", 0.0), ("anomaly", mu_anomaly)):
                    for i in range(n):
                        x = rng.normal(mu, 1.0)
                        rows.append(dict(machine=m, section=s, domain=domain, label=label,
                                         filename=f"section_{s}_{domain}_test_{label}_{i:04d}.wav",
                                         score=round(x, 1) if ties else x, decision=int(x > 1)))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("max_fpr", [None, 0.1])
def test_weighted_auc_equals_sklearn_on_repeated_clips(max_fpr):
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=60), 1)  # many ties
    positive = rng.random(60) < 0.4
    weights = rng.integers(0, 4, size=(5, 60))
    weights[:, np.flatnonzero(positive)[0]] += 1
    weights[:, np.flatnonzero(~positive)[0]] += 1
    got = weighted_auc(scores, positive, weights, max_fpr)
    for row, w in zip(got, weights):
        expected = roc_auc_score(np.repeat(positive, w), np.repeat(scores, w), max_fpr=max_fpr)
        assert row == pytest.approx(expected, abs=1e-12)


def test_one_seed_point_values_are_the_official_metrics():
    table = scores_table(np.random.default_rng(0), ties=True)
    result = compare_runs({"a": {0: table}}, "a", n_boot=20).set_index(["machine_type", "statistic"])
    _, means, summary, _ = dcase_metrics(table)
    means = means.set_index("summary")
    assert result.loc[("all", "official score"), "mean"] == pytest.approx(summary["official_score"], abs=1e-12)
    assert result.loc[("all", "AUC (source)"), "mean"] == pytest.approx(means.loc["source harmonic mean", "AUC"], abs=1e-12)
    assert result.loc[("all", "AUC (target)"), "mean"] == pytest.approx(means.loc["target harmonic mean", "AUC"], abs=1e-12)
    assert result.loc[("all", "pAUC"), "mean"] == pytest.approx(means.loc["harmonic mean", "pAUC"], abs=1e-12)
    fan = dcase_metrics(table[table["machine"] == "fan"])[2]["official_score"]
    assert result.loc[("fan", "official score"), "mean"] == pytest.approx(fan, abs=1e-12)


def test_mean_and_std_over_seeds():
    rng = np.random.default_rng(2)
    seeds = {s: scores_table(rng) for s in range(3)}
    row = compare_runs({"a": seeds}, "a", n_boot=10).query("machine_type == 'all' and statistic == 'official score'").iloc[0]
    values = [dcase_metrics(t)[2]["official_score"] for t in seeds.values()]
    assert row["mean"] == pytest.approx(np.mean(values), abs=1e-12)
    assert row["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert row["seeds"] == 3
    assert row["ci_low"] < row["mean"] < row["ci_high"]


def test_a_variant_against_itself_differs_by_exactly_zero():
    rng = np.random.default_rng(3)
    seeds = {s: scores_table(rng) for s in range(2)}
    result = compare_runs({"base": seeds, "same": {s: t.copy() for s, t in seeds.items()}}, "base", n_boot=200)
    same = result[result["variant"] == "same"]
    assert (same["diff"] == 0).all() and (same["diff_low"] == 0).all() and (same["diff_high"] == 0).all()


def binormal_official_score(mu: float) -> float:
    """Official score of one section whose normals are N(0, 1) and anomalies N(mu, 1) in both domains."""
    auc = scipy.stats.norm.cdf(mu / np.sqrt(2))
    roc = lambda f: scipy.stats.norm.sf(scipy.stats.norm.isf(f) - mu)  # noqa: E731
    partial = scipy.integrate.quad(roc, 0, 0.1)[0]
    pauc = 0.5 * (1 + (partial - 0.1**2 / 2) / (0.1 - 0.1**2 / 2))
    return scipy.stats.hmean([auc, auc, pauc])


def test_paired_interval_covers_a_known_shift_and_excludes_zero():
    rng = np.random.default_rng(4)
    base = scores_table(rng, mu_anomaly=0.5, n=60)
    better = base.copy()
    better.loc[better["label"] == "anomaly", "score"] += 0.5  # anomalies now N(1, 1): a known gain
    result = compare_runs({"base": {0: base}, "better": {0: better}}, "base", n_boot=1000, seed=7)
    row = result.query("variant == 'better' and machine_type == 'all' and statistic == 'official score'").iloc[0]
    true_gain = binormal_official_score(1.0) - binormal_official_score(0.5)
    assert row["diff_low"] <= true_gain <= row["diff_high"]
    assert row["diff_low"] > 0


def test_runs_must_score_the_same_clips():
    rng = np.random.default_rng(5)
    base = scores_table(rng)
    with pytest.raises(ValueError, match="not scored in every run"):
        compare_runs({"base": {0: base}, "other": {0: base.iloc[1:]}}, "base", n_boot=5)
    with pytest.raises(ValueError, match="reference variant"):
        compare_runs({"base": {0: base}}, "nope", n_boot=5)


def test_the_intervals_hold_the_seeds_spread():
    """Seeds are drawn with replacement too: two seeds far apart give an interval reaching both."""
    rng = np.random.default_rng(6)
    weak, strong = scores_table(rng, mu_anomaly=0.3, n=60), scores_table(rng, mu_anomaly=2.0, n=60)
    row = compare_runs({"a": {0: weak, 1: strong}}, "a", n_boot=400).query(
        "machine_type == 'all' and statistic == 'official score'").iloc[0]
    one = [dcase_metrics(t)[2]["official_score"] for t in (weak, strong)]
    assert row["ci_low"] <= min(one) + 0.01 and row["ci_high"] >= max(one) - 0.01
    with pytest.raises(ValueError, match="same seeds"):
        compare_runs({"a": {0: weak, 1: strong}, "b": {0: weak}}, "a", n_boot=5)
