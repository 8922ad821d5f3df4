"""Plots and tables a person reads: they must show what they claim."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from eat_asd.report import histogram_bins, markdown_table, plot_histogram, plot_roc


def scores_frame(rng, sections=("00", "01")):
    rows = []
    for section in sections:
        for label, centre in (("normal", 0.01), ("anomaly", 0.05)):
            for _ in range(15):
                rows.append(dict(section=section, label=label, score=rng.gamma(4.0, centre / 4)))
    return pd.DataFrame(rows)


def test_roc_plot_draws_the_pooled_and_per_section_curves(tmp_path):
    frame = scores_frame(np.random.default_rng(0))
    drawn = plot_roc(frame, tmp_path / "roc.png", "fan")
    y = frame["label"] == "anomaly"
    assert drawn["all clips"] == pytest.approx(roc_auc_score(y, frame["score"]))
    one = frame[frame["section"] == "01"]
    assert drawn["section 01"] == pytest.approx(roc_auc_score(one["label"] == "anomaly", one["score"]))
    assert set(drawn) == {"all clips", "section 00", "section 01"}
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    # unlabeled clips only: a placeholder figure, no curve
    assert plot_roc(frame.assign(label="unknown"), tmp_path / "none.png", "fan") == {}
    assert (tmp_path / "none.png").is_file()


def test_histogram_uses_a_log_axis_for_heavy_tailed_scores(tmp_path):
    edges, log_scale = histogram_bins(np.array([1e-4, 2e-3, 5e-3, 0.3]))
    assert log_scale and edges[0] == pytest.approx(1e-4) and edges[-1] >= 0.3
    assert np.allclose(np.diff(np.log(edges)), np.log(edges[1] / edges[0]))  # equal widths in log space
    edges, log_scale = histogram_bins(np.array([0.2, 0.3, 0.5]))
    assert not log_scale and edges[0] == 0.2 and edges[-1] >= 0.5
    # a zero distance (a duplicate clip) cannot go on a log axis
    assert not histogram_bins(np.array([0.0, 1e-4, 0.3]))[1]
    frame = scores_frame(np.random.default_rng(1), sections=("00",))
    assert plot_histogram(frame, np.array([0.001, 0.01, 0.02]), 0.02, tmp_path / "h.png", "fan") is True


def test_markdown_table_formats_numbers_and_missing_values():
    table = markdown_table(pd.DataFrame({"machine_type": ["fan"], "auroc": [0.123456], "pauc": [np.nan]}))
    assert table.splitlines() == ["| machine_type | auroc | pauc |", "|---|---|---|", "| fan | 0.1235 | n/a |"]


def test_small_numbers_keep_significant_digits():
    table = markdown_table(pd.DataFrame({"machine_type": ["fan"], "threshold": [6.5e-7], "auroc": [0.0]}))
    assert table.splitlines()[-1] == "| fan | 6.5e-07 | 0.0000 |"
