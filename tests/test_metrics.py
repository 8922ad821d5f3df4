import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from eat_asd.metrics import auroc_table, dcase_metrics, hmean


def frame(rows):
    return pd.DataFrame(rows, columns=["machine", "section", "domain", "label", "score"])


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
    table, summary, notes = dcase_metrics(s)
    row = table.iloc[0]
    # AUC(source): source normals {.1,.2} vs ALL anomalies {.5,.7}: perfect
    assert row["auc_source"] == 1.0
    # AUC(target): target normals {.6,.8} vs all anomalies {.5,.7}: pairs right = (.7>.6) = 1 of 4
    assert row["auc_target"] == 0.25
    # pAUC uses all clips of the section
    y = [0, 0, 0, 0, 1, 1]
    assert row["pauc"] == pytest.approx(roc_auc_score(y, [0.1, 0.2, 0.6, 0.8, 0.5, 0.7], max_fpr=0.1))
    assert summary["official_score"] == pytest.approx(3 / (1 / 1.0 + 1 / 0.25 + 1 / row["pauc"]))
    assert notes == []


def test_pauc_is_mcclish_standardised():
    # a perfect ranking gives 1; a fully reversed one has partial area 0, standardised
    # as 0.5 * (1 + (0 - min) / (max - min)) with min = 0.5 * 0.1**2, max = 0.1
    s = frame([("m", "00", "source", "normal", v) for v in range(10)] + [("m", "00", "source", "anomaly", 20 + v) for v in range(3)])
    assert dcase_metrics(s)[0].iloc[0]["pauc"] == 1.0
    rev = s.assign(score=-s["score"])
    assert dcase_metrics(rev)[0].iloc[0]["pauc"] == pytest.approx(0.5 * (1 - 0.005 / 0.095))


def test_official_score_equals_direct_computation():
    rng = np.random.default_rng(0)
    rows = []
    for machine in ("fan", "pump", "valve"):
        for section in ("00", "01"):
            for domain in ("source", "target"):
                for label in ("normal", "anomaly"):
                    shift = 0.5 if label == "anomaly" else 0.0
                    rows += [(machine, section, domain, label, rng.normal(shift)) for _ in range(15)]
    s = frame(rows)
    table, summary, _ = dcase_metrics(s)
    values = []
    for (m, sec), g in s.groupby(["machine", "section"]):
        y = (g["label"] == "anomaly").astype(int)
        for d in ("source", "target"):
            sel = (g["domain"] == d) | (g["label"] == "anomaly")
            values.append(roc_auc_score(y[sel], g["score"][sel]))
        values.append(roc_auc_score(y, g["score"], max_fpr=0.1))
    assert len(table) == 6 and summary["n_values"] == 18
    assert summary["official_score"] == pytest.approx(len(values) / sum(1 / v for v in values))
    assert summary["arithmetic_mean"] == pytest.approx(np.mean(values))
    assert summary["hmean_source"] == pytest.approx(hmean(table["auc_source"]))


def test_no_domains_uses_auc_over_all_clips():
    s = frame([("fan", "00", "none", "normal", 0.1), ("fan", "00", "none", "anomaly", 0.2), ("fan", "00", "none", "normal", 0.3)])
    table, summary, _ = dcase_metrics(s)
    assert np.isnan(table.iloc[0]["auc_source"]) and table.iloc[0]["auc"] == 0.5
    assert summary["n_values"] == 2


def test_one_class_gives_a_message():
    s = frame([("fan", "00", "source", "normal", 0.1), ("fan", "00", "source", "normal", 0.2),
               ("pump", "00", "source", "normal", 0.1), ("pump", "00", "source", "anomaly", 0.3)])
    table, notes = auroc_table(s)
    assert np.isnan(table.set_index("machine_type").loc["fan", "auroc"])
    assert notes == ["machine type fan: no anomalous test clips, so its AUC is undefined"]
    _, summary, notes = dcase_metrics(s)
    assert any("fan section 00" in n and "undefined" in n for n in notes)
    assert any("left out of the harmonic mean" in n for n in notes)
    assert np.isfinite(summary["official_score"])
