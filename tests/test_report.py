"""Plots and tables a person reads: they must show what they claim."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from eat_asd.metrics import dcase_metrics
from eat_asd.report import histogram_bins, html_report, link_target, markdown_table, plot_histogram, plot_roc


def scores_frame(rng, sections=("00", "01"), domains=("none",)):
    rows = []
    for section in sections:
        for domain in domains:
            for label, centre in (("normal", 0.01 if domain != "target" else 0.02), ("anomaly", 0.05)):
                for _ in range(15):
                    score = rng.gamma(4.0, centre / 4)
                    rows.append(dict(machine="fan", section=section, domain=domain, label=label, score=score,
                                     decision=int(score > 0.03)))
    return pd.DataFrame(rows)


def png_size(path):
    data = path.read_bytes()
    assert data[:4] == b"\x89PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_roc_plot_without_domains_draws_the_pooled_and_per_section_curves(tmp_path):
    frame = scores_frame(np.random.default_rng(0))
    drawn = plot_roc(frame, tmp_path / "roc.png", "fan")
    y = frame["label"] == "anomaly"
    assert drawn["all clips"] == pytest.approx(roc_auc_score(y, frame["score"]))
    one = frame[frame["section"] == "01"]
    assert drawn["section 01"] == pytest.approx(roc_auc_score(one["label"] == "anomaly", one["score"]))
    assert set(drawn) == {"all clips", "section 00", "section 01"}
    assert png_size(tmp_path / "roc.png") == (600, 450)  # one panel
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
    assert plot_histogram(frame, np.array([0.001, 0.01, 0.02]), None, 0.02, tmp_path / "h.png", "fan") is True


def test_roc_curves_are_split_by_domain_as_the_official_auc(tmp_path):
    frame = scores_frame(np.random.default_rng(2), domains=("source", "target"))
    drawn = plot_roc(frame, tmp_path / "roc.png", "fan")
    assert set(drawn) == {f"{d}: {c}" for d in ("source", "target") for c in ("all sections", "section 00", "section 01")}
    table = dcase_metrics(frame)[0].set_index("section")
    for domain in ("source", "target"):  # each section's curve is the one its AUC (domain) measures
        for section in ("00", "01"):
            assert drawn[f"{domain}: section {section}"] == pytest.approx(table.loc[section, f"AUC ({domain})"])
    pooled = frame[((frame["domain"] == "target") & (frame["label"] == "normal")) | (frame["label"] == "anomaly")]
    assert drawn["target: all sections"] == pytest.approx(roc_auc_score(pooled["label"] == "anomaly", pooled["score"]))
    assert png_size(tmp_path / "roc.png") == (1200, 450)  # two panels side by side
    # a domain with no labelled clips gets no panel
    assert set(plot_roc(frame[frame["domain"] == "source"], tmp_path / "s.png", "fan")) == {
        "source: all sections", "source: section 00", "source: section 01"}
    assert png_size(tmp_path / "s.png") == (600, 450)


def test_histogram_panels_per_domain(tmp_path):
    frame = scores_frame(np.random.default_rng(3), sections=("00",), domains=("source", "target"))
    train = np.array([0.01, 0.012, 0.02, 0.03])
    plot_histogram(frame, train, np.array(["source", "source", "target", "target"]), 0.03, tmp_path / "h.png", "fan")
    assert png_size(tmp_path / "h.png") == (1200, 450)
    plot_histogram(frame.assign(label="unknown", domain="unknown"), train, None, 0.03, tmp_path / "u.png", "fan")
    assert png_size(tmp_path / "u.png") == (600, 450)  # unlabeled evaluation clips: one panel


def test_report_links_work_from_the_report_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert link_target("results/tables/auroc.csv", "results/report.html") == "tables/auroc.csv"
    assert link_target(tmp_path / "results" / "scores", tmp_path / "results" / "report.html") == "scores"
    assert link_target("elsewhere/x.csv", "results/report.html") == "../elsewhere/x.csv"


def test_report_leads_with_the_official_score_and_names_left_out_values(tmp_path):
    frame = scores_frame(np.random.default_rng(4), domains=("source", "target"))
    frame = frame[~((frame["section"] == "01") & (frame["domain"] == "target"))]
    table, means, summary, notes = dcase_metrics(frame)
    auroc = pd.DataFrame({"machine_type": ["fan", "overall"], "auroc": [0.9, 0.9], "n_normal": [45, 45], "n_anomaly": [45, 45]})
    decisions = pd.DataFrame({"machine_type": ["fan"], "section": ["00"], "n_test": [90], "n_flagged": [40]})
    (tmp_path / "tables").mkdir()
    table.to_csv(tmp_path / "tables" / "dcase_metrics.csv")  # links name files that are there
    html_report(tmp_path / "r.html", auroc, table, means, decisions, dict(summary, evaluation_only=False), notes, {},
                {}, {"Result table (CSV)": str(tmp_path / "tables" / "dcase_metrics.csv")})
    page = (tmp_path / "r.html").read_text()
    order = [page.index(t) for t in ("Official DCASE score", "<h2>Result table", "Means over all", "<h2>AUROC per machine type")]
    assert order == sorted(order)
    assert "could not include 1 undefined value(s): AUC (target) of fan section 01" in page
    assert "dcase2024_task2_evaluator" in page and "href='tables/dcase_metrics.csv'" in page


def test_markdown_table_formats_numbers_and_missing_values():
    table = markdown_table(pd.DataFrame({"machine_type": ["fan"], "auroc": [0.123456], "pauc": [np.nan]}))
    assert table.splitlines() == ["| machine_type | auroc | pauc |", "|---|---|---|", "| fan | 0.1235 | n/a |"]


def test_small_numbers_keep_significant_digits():
    table = markdown_table(pd.DataFrame({"machine_type": ["fan"], "threshold": [6.5e-7], "auroc": [0.0]}))
    assert table.splitlines()[-1] == "| fan | 6.5e-07 | 0.0000 |"


def test_written_scores_read_back_without_new_ties(tmp_path):
    """A bank of near-identical normals gives kNN distances around 1e-5; with 8 decimals the score table
    and the submission files kept 3-4 significant digits, and clips the in-memory scores rank apart tied."""
    from eat_asd.report import write_scores, write_submission_pair
    from helpers import read_submission
    from eat_asd.scoring import ScoreSettings, score_machine
    from eat_asd.stages import read_scores

    rng = np.random.default_rng(0)
    centre = rng.normal(size=64)
    bank = (centre + 3e-3 * rng.normal(size=(20, 64))).astype(np.float32)
    test = (centre + 3e-3 * rng.normal(size=(40, 64))).astype(np.float32)
    meta = lambda n, split: pd.DataFrame(dict(filename=[f"{split}_{i:04d}.wav" for i in range(n)], machine="fan",  # noqa: E731
                                              section="00", domain="source", label="normal", attribute_string=""))
    # the mean over k neighbours: finer steps than one float32 cosine distance has
    table, *_ = score_machine(bank, meta(20, "train"), test, meta(40, "test"), ScoreSettings(k=10))
    scores = table["score"].to_numpy()
    distinct = len(np.unique(scores))
    assert scores.max() < 1e-4 and distinct > 30  # near-identical clips, nearly all apart in memory
    assert len(np.unique(np.round(scores, 8))) < distinct  # what 8 decimals kept: new ties
    write_scores(table, tmp_path / "fan.csv")
    back = read_scores(tmp_path / "fan.csv")["score"].to_numpy()
    assert np.array_equal(back, scores)
    write_submission_pair(table, tmp_path / "scores.csv", tmp_path / "decisions.csv")
    assert np.array_equal(read_submission(tmp_path / "scores.csv")["value"].to_numpy(), scores)


def test_report_as_the_workflow_calls_it_has_no_dead_links_nor_na(tmp_path, monkeypatch):
    """Before, the report's Markdown links pointed to ../dcase_metrics.md, ../dcase_summary.md and ../auroc.md
    (the working folder, not the tables folder), and the mean rows showed <NA> for their clip counts."""
    import re

    from eat_asd.cli import main
    from eat_asd.stages import Tables, aggregate

    rng = np.random.default_rng(0)
    results = tmp_path / "results"
    scores = scores_frame(rng, domains=("source", "target")).assign(filename=lambda f: [f"c{i}.wav" for i in range(len(f))],
                                                                   attribute_string="")
    (results / "scores").mkdir(parents=True)
    scores.to_csv(results / "scores" / "fan.csv", index=False)
    tables = Tables.in_folder(results / "tables")
    aggregate([results / "scores" / "fan.csv"], [], tables)
    monkeypatch.chdir(tmp_path)  # the workflow's working folder: not where the tables are
    assert main(["report", "--auroc", "results/tables/auroc.csv", "--dcase", "results/tables/dcase_metrics.csv",
                 "--means", "results/tables/dcase_summary.csv", "--decisions", "results/tables/decisions.csv",
                 "--summary", "results/tables/summary.json", "--results-dir", "results", "--out", "results/report.html"]) == 0
    page = (results / "report.html").read_text()
    links = re.findall(r"href='([^']+)'", page)
    assert "tables/dcase_metrics.md" in links and "tables/auroc.md" in links and "tables/dcase_summary.md" in links
    assert all((results / link).exists() for link in links), [link for link in links if not (results / link).exists()]
    assert "&lt;NA&gt;" not in page and "<NA>" not in page
    # every table scrolls sideways inside its own box rather than overflowing the page
    assert page.count("<table") == page.count("<div class='scroll'><table")
    assert "Precision: training n/a, embedding n/a" in page
