import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from eat_asd.metrics import EPS, MEAN_COLUMNS, METRICS, auroc_table, column_means, dcase_metrics, hmean


def frame(rows):
    """Score-table rows (machine, section, domain, label, score[, decision]); decision defaults to score > 0.5."""
    f = pd.DataFrame([r if len(r) == 6 else (*r, int(r[4] > 0.5)) for r in rows],
                     columns=["machine", "section", "domain", "label", "score", "decision"])
    return f


def test_auroc_known_answers():
    s = frame([
        ("fan", "00", "source", "normal", 0.1), ("fan", "00", "source", "normal", 0.4),
        ("fan", "00", "source", "anomaly", 0.3), ("fan", "00", "source", "anomaly", 0.9),
        ("pump", "00", "source", "normal", 0.0), ("pump", "00", "source", "anomaly", 1.0),
        ("pump", "00", "source", "unknown", 5.0),
    ])
    table, notes = auroc_table(s)
    t = table.set_index("machine_type")
    assert t.loc["fan", "auroc"] == 0.75  # 3 of 4 anomaly/normal pairs ordered right
    assert t.loc["pump", "auroc"] == 1.0
    # pooled: normals {.1,.4,0}, anomalies {.3,.9,1}: 8 of 9 pairs right
    assert t.loc["overall", "auroc"] == pytest.approx(8 / 9)
    assert t.loc["overall", ["n_normal", "n_anomaly"]].tolist() == [3, 3]
    assert list(table.columns) == ["machine_type", "auroc", "n_normal", "n_anomaly"] and notes == []


def test_source_target_inclusion_rule():
    # source normals are low, target normals high; anomalies: one per domain
    s = frame([
        ("fan", "00", "source", "normal", 0.1), ("fan", "00", "source", "normal", 0.2),
        ("fan", "00", "target", "normal", 0.6), ("fan", "00", "target", "normal", 0.8),
        ("fan", "00", "source", "anomaly", 0.5), ("fan", "00", "target", "anomaly", 0.7),
    ])
    table, _, summary, notes = dcase_metrics(s)
    row = table.iloc[0]
    # AUC(source): source normals {.1,.2} vs ALL anomalies {.5,.7}: perfect
    assert row["AUC (source)"] == 1.0
    # AUC(target): target normals {.6,.8} vs all anomalies {.5,.7}: pairs right = (.7>.6) = 1 of 4
    assert row["AUC (target)"] == 0.25
    # pAUC uses all clips of the section
    y = [0, 0, 0, 0, 1, 1]
    assert row["pAUC"] == pytest.approx(roc_auc_score(y, [0.1, 0.2, 0.6, 0.8, 0.5, 0.7], max_fpr=0.1))
    assert row["pAUC (target)"] == pytest.approx(roc_auc_score([0, 0, 1, 1], [0.6, 0.8, 0.5, 0.7], max_fpr=0.1))
    assert summary["official_score"] == pytest.approx(3 / (1 / 1.0 + 1 / 0.25 + 1 / row["pAUC"]))
    assert notes == [] and summary["left_out"] == []


def test_decision_metrics_known_answers():
    # decisions = score > 0.5; source: anomaly .9 flagged, normal .6 flagged, anomaly .3 missed
    s = frame([
        ("fan", "00", "source", "normal", 0.1), ("fan", "00", "source", "normal", 0.6),
        ("fan", "00", "source", "anomaly", 0.9), ("fan", "00", "source", "anomaly", 0.3),
        ("fan", "00", "target", "normal", 0.2), ("fan", "00", "target", "anomaly", 0.8),
    ])
    row = dcase_metrics(s)[0].iloc[0]
    assert row["precision (source)"] == 0.5 and row["recall (source)"] == 0.5 and row["F1 score (source)"] == 0.5
    # the target anomaly's decision counts only in the target domain
    assert row["precision (target)"] == 1.0 and row["recall (target)"] == 1.0


def test_pauc_is_mcclish_standardised():
    # a perfect ranking gives 1; a fully reversed one has partial area 0, standardised
    # as 0.5 * (1 + (0 - min) / (max - min)) with min = 0.5 * 0.1**2, max = 0.1
    s = frame([("m", "00", "source", "normal", v) for v in range(10)] + [("m", "00", "source", "anomaly", 20 + v) for v in range(3)])
    assert dcase_metrics(s)[0].iloc[0]["pAUC"] == 1.0
    rev = s.assign(score=-s["score"])
    assert dcase_metrics(rev)[0].iloc[0]["pAUC"] == pytest.approx(0.5 * (1 - 0.005 / 0.095))


# ---------------------------------------------------------------- the evaluator's formulas, written out


def evaluator_section(y_true, y_pred, y_domain, decision):
    """One section as the official evaluator computes it from 0/1 arrays (label 1 = anomaly, domain 1 = target)."""
    out = {"pAUC": roc_auc_score(y_true, y_pred, max_fpr=0.1)}
    for name, idx in (("source", 0), ("target", 1)):
        auc_sel = (y_domain == idx) | (y_true != 0)
        out[f"AUC ({name})"] = roc_auc_score(y_true[auc_sel], y_pred[auc_sel])
        out[f"pAUC ({name})"] = roc_auc_score(y_true[auc_sel], y_pred[auc_sel], max_fpr=0.1)
        own = y_domain == idx
        t, d = y_true[own], decision[own]
        tp, fp, fn = np.sum((t == 1) & (d == 1)), np.sum((t == 0) & (d == 1)), np.sum((t == 1) & (d == 0))
        prec, rec = tp / max(tp + fp, EPS), tp / max(tp + fn, EPS)
        out[f"precision ({name})"], out[f"recall ({name})"] = prec, rec
        out[f"F1 score ({name})"] = 2 * prec * rec / max(prec + rec, EPS)
    return out


def evaluator_closing_block(sections):
    """The evaluator's means over all machine types, sections and domains, and its official score."""
    import scipy.stats

    def col(name):
        return np.array([s[name] for s in sections], dtype=float)

    perf = {"AUC": (col("AUC (source)"), col("AUC (target)")), "pAUC": (col("pAUC"), col("pAUC"))}
    for m in ("precision", "recall", "F1 score"):
        perf[m] = (col(f"{m} (source)"), col(f"{m} (target)"))
    hm = lambda v: scipy.stats.hmean(np.maximum(v, EPS))  # noqa: E731
    block = {m: {"arithmetic mean": np.mean(np.concatenate(st)), "harmonic mean": hm(np.concatenate(st)),
                 "source harmonic mean": hm(st[0]), "target harmonic mean": hm(st[1])} for m, st in perf.items()}
    official = hm(np.concatenate([col("AUC (source)"), col("AUC (target)"), col("pAUC")]))
    return block, official


def random_scores(seed=0, machines=("fan", "pump", "valve"), sections=("00", "01")):
    rng = np.random.default_rng(seed)
    rows = []
    for machine in machines:
        for section in sections:
            for domain, n_normal in (("source", 20), ("target", 7)):
                for label, n in (("normal", n_normal), ("anomaly", 6)):
                    shift = rng.uniform(0.2, 1.5) if label == "anomaly" else 0.0
                    for _ in range(n):
                        score = rng.normal(shift)
                        rows.append((machine, section, domain, label, score, int(score > 0.8)))
    return frame(rows)


def test_table_and_means_equal_the_evaluator_formulas():
    s = random_scores()
    table, means, summary, notes = dcase_metrics(s)
    expected = []
    for (m, sec), g in s.groupby(["machine", "section"]):
        ref = evaluator_section((g["label"] == "anomaly").astype(int).to_numpy(), g["score"].to_numpy(),
                                (g["domain"] == "target").astype(int).to_numpy(), g["decision"].to_numpy())
        got = table[(table["machine_type"] == m) & (table["section"] == sec)].iloc[0]
        for name, value in ref.items():
            assert got[name] == pytest.approx(value), (m, sec, name)
        expected.append(ref)
    assert list(table.columns[2:2 + len(METRICS)]) == METRICS and notes == []
    block, official = evaluator_closing_block(expected)
    assert summary["official_score"] == pytest.approx(official) and summary["n_values"] == 18
    assert means["summary"].tolist() == ["arithmetic mean", "harmonic mean", "source harmonic mean", "target harmonic mean"]
    for _, row in means.iterrows():
        for m in MEAN_COLUMNS:
            assert row[m] == pytest.approx(block[m][row["summary"]]), (row["summary"], m)
            assert summary["means"][row["summary"]][m] == pytest.approx(row[m])
    # the evaluator's "arithmetic mean" of AUC is over the domain AUCs alone, not AUCs and pAUCs together
    assert means.loc[0, "AUC"] != pytest.approx(np.mean(list(table["AUC (source)"]) + list(table["AUC (target)"]) + list(table["pAUC"])))
    # per-column mean rows over all sections of all machine types
    rows = column_means(table).set_index("machine_type")
    for c in METRICS:
        assert rows.loc["arithmetic mean", c] == pytest.approx(table[c].mean())
        assert rows.loc["harmonic mean", c] == pytest.approx(hmean(table[c]))
    assert rows["section"].isna().all() and rows["n_normal"].isna().all()


def test_one_domain_section_is_named_in_the_summary():
    s = random_scores(seed=1, machines=("fan",))
    s = s[~((s["section"] == "01") & (s["domain"] == "target"))]  # section 01: source-domain labels only
    table, means, summary, notes = dcase_metrics(s)
    row = table.set_index("section").loc["01"]
    assert all(np.isnan(row[c]) for c in METRICS if "(target)" in c)
    assert np.isfinite(row["AUC (source)"]) and np.isfinite(row["pAUC"])
    assert summary["left_out"] == ["AUC (target) of fan section 01"]
    assert any("AUC (target) of fan section 01" in n for n in notes)
    # the official score pools the five defined values; the one-domain section's source values count as usual
    r00 = table.set_index("section").loc["00"]
    defined = [r00["AUC (source)"], r00["AUC (target)"], r00["pAUC"], row["AUC (source)"], row["pAUC"]]
    assert summary["official_score"] == pytest.approx(len(defined) / sum(1 / v for v in defined))
    assert summary["n_values"] == 5
    assert means.set_index("summary").loc["target harmonic mean", "AUC"] == pytest.approx(r00["AUC (target)"])


def test_one_class_section_follows_the_evaluator():
    # no anomalies: every AUC is undefined (noted); precision and recall are 0, as the evaluator's
    # epsilon-floored denominators give
    s = frame([("fan", "00", "source", "normal", 0.1), ("fan", "00", "source", "normal", 0.7),
               ("fan", "00", "target", "normal", 0.2),
               ("pump", "00", "source", "normal", 0.1), ("pump", "00", "source", "anomaly", 0.9),
               ("pump", "00", "target", "normal", 0.3), ("pump", "00", "target", "anomaly", 0.8)])
    table, notes = auroc_table(s)
    assert np.isnan(table.set_index("machine_type").loc["fan", "auroc"])
    assert notes == ["machine type fan: no anomalous test clips, so its AUC is undefined"]
    table, _, summary, notes = dcase_metrics(s)
    fan = table.set_index("machine_type").loc["fan"]
    assert np.isnan(fan["AUC (source)"]) and np.isnan(fan["pAUC"])
    assert fan["precision (source)"] == 0.0 and fan["recall (source)"] == 0.0 and fan["F1 score (source)"] == 0.0
    assert any("fan section 00" in n and "undefined" in n for n in notes)
    assert summary["left_out"] == ["AUC (source) of fan section 00", "AUC (target) of fan section 00", "pAUC of fan section 00"]
    assert summary["official_score"] == 1.0  # pump's three values are all perfect


def test_no_domains_uses_auc_over_all_clips():
    s = frame([("fan", "00", "none", "normal", 0.1), ("fan", "00", "none", "anomaly", 0.2), ("fan", "00", "none", "normal", 0.3)])
    table, means, summary, _ = dcase_metrics(s)
    assert np.isnan(table.iloc[0]["AUC (source)"]) and table.iloc[0]["AUC (all)"] == 0.5
    assert summary["n_values"] == 2 and summary["left_out"] == []
    assert means.loc[0, "AUC"] == 0.5


def test_no_labelled_clips_gives_empty_tables():
    table, means, summary, notes = dcase_metrics(frame([("fan", "00", "unknown", "unknown", 0.1)]))
    assert table.empty and np.isnan(summary["official_score"]) and means["AUC"].isna().all() and notes == []


def test_official_score_ci95_is_the_evaluators_jackknife():
    """The evaluator's row: mean of the jackknife 95% half-widths of the pooled AUC and pAUC,
    recomputed here clip by clip with sklearn."""
    import scipy.stats
    from sklearn.metrics import roc_auc_score

    from eat_asd.metrics import official_score_ci95

    rng = np.random.default_rng(0)
    n = 70
    labels = np.where(rng.random(n) < 0.4, "anomaly", "normal")
    scores = pd.DataFrame(dict(machine=rng.choice(["fan", "pump"], n), section="00", domain="source",
                               label=labels, score=np.round(rng.normal(size=n) + (labels == "anomaly"), 1)))
    y, s = (labels == "anomaly").astype(int), scores["score"].to_numpy()
    widths = []
    for max_fpr in (None, 0.1):
        parts = np.array([roc_auc_score(np.delete(y, i), np.delete(s, i), max_fpr=max_fpr) for i in range(n)])
        sigma = np.sqrt(((parts - parts.mean()) ** 2).sum() / (n * (n - 1)))
        widths.append(abs(scipy.stats.t.ppf(0.025, n - 1)) * sigma)
    assert official_score_ci95(scores) == pytest.approx(np.mean(widths), abs=1e-12)
