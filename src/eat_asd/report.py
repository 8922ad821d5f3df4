"""What a person reads: tables (CSV + Markdown), DCASE submission files, plots and one HTML report."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .data import DOMAINS, LABELS, labelled
from .io import atomic_path, write_text


def format_number(v: float) -> str:
    """Four decimals (AUCs, fractions); small values such as kNN thresholds keep 3 significant digits."""
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:.4f}" if v == 0 or abs(v) >= 1e-3 else f"{v:.3g}"


def md_text(value) -> str:
    """Text from the data or the config as plain Markdown text: HTML and the characters that start code,
    emphasis, links or table cells are escaped, so they show as written and never become markup."""
    text = " ".join(str(value).splitlines())
    for c in "\\`*[]|":
        text = text.replace(c, "\\" + c)
    return html.escape(text, quote=False)


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(v):
        if v is pd.NA or v is None:
            return ""
        if isinstance(v, (float, np.floating)):
            return format_number(v)
        return md_text(v)

    lines = ["| " + " | ".join(map(md_text, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    """The table as CSV and as Markdown."""
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")  # significant digits: thresholds can be tiny
    write_text(md_path, markdown_table(frame))


def write_scores(frame: pd.DataFrame, path: str | Path, header: bool = True) -> None:
    """A table of anomaly scores as CSV, each float as the shortest text that reads back as the same
    number: kNN distances of near-identical clips differ only in their 4th-7th significant digit, and
    fixed decimals would tie clips the in-memory scores rank apart."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, header=header, index=False, float_format=None)


def write_submission_pair(section_scores: pd.DataFrame, scores_path: str | Path, decisions_path: str | Path) -> None:
    """The DCASE submission files of one section: rows `filename,score` and `filename,0|1`, no header."""
    for path, column in ((scores_path, "score"), (decisions_path, "decision")):
        write_scores(section_scores[["filename", column]], path, header=False)


# ----------------------------------------------------------------------------- plots


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _domain_panels(scores: pd.DataFrame) -> list[str | None]:
    """One panel per domain the labelled test clips come from; [None] (one panel, every clip) without domains."""
    lab = labelled(scores)
    return [d for d in DOMAINS if (lab["domain"] == d).any()] or [None]


def plot_roc(scores: pd.DataFrame, path: str | Path, title: str) -> dict[str, float]:
    """ROC curves of one machine type, one panel per domain with the clips the official AUC(domain)
    ranks (that domain's normals and all anomalies), per section and pooled over sections.
    Returns {curve name: AUC} of the curves drawn ("source: section 00", "target: all sections", or
    without domains "section 00", "all clips"); empty when there are no labelled normal and anomalous clips."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from .metrics import domain_selection

    plt = _figure()
    lab = labelled(scores)
    panels = _domain_panels(scores)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), dpi=100, squeeze=False)
    drawn: dict[str, float] = {}
    for ax, domain in zip(axes[0], panels):
        # "all anomalies of the section" per section is all anomalies when pooled over sections
        clips = lab if domain is None else domain_selection(lab, domain)
        prefix = "" if domain is None else f"{domain}: "
        sections = [(f"section {s}", g) for s, g in clips.groupby("section")]
        groups = [("all clips" if domain is None else "all sections", clips)] + (sections if len(sections) > 1 else [])
        for name, g in groups:
            y = (g["label"] == "anomaly").astype(int)
            if y.nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(y, g["score"])
            drawn[prefix + name] = float(roc_auc_score(y, g["score"]))
            ax.plot(fpr, tpr, label=f"{name} (AUC {drawn[prefix + name]:.3f})")
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
        ax.axvspan(0, 0.1, color="orange", alpha=0.12, label="pAUC region (FPR ≤ 0.1)")
        what = title if domain is None else f"{title}, {domain} domain\n({domain} normals vs all anomalies)"
        ax.set(xlabel="false positive rate (normals flagged)", ylabel="true positive rate (anomalies found)",
               title=what, xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=8)
    if not drawn:
        axes[0][0].text(0.5, 0.5, "no labelled normal and anomalous\ntest clips: no ROC curve", ha="center", va="center")
    _save(fig, path)
    return drawn


def histogram_bins(values: np.ndarray, n_bins: int = 30) -> tuple[np.ndarray, bool]:
    """Bin edges for score histograms and whether the axis should be logarithmic.

    kNN distances are heavy-tailed: a few far-off anomalies would squeeze every other clip
    into the first bin of a linear axis, so scores spanning more than a decade get log bins.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.linspace(0, 1, n_bins + 1), False
    positive = v[v > 0]
    if len(positive) == len(v) and positive.max() / positive.min() > 10:
        return np.geomspace(positive.min(), positive.max() * (1 + 1e-9), n_bins + 1), True
    return np.linspace(v.min(), v.max() + 1e-9, n_bins + 1), False


def plot_histogram(scores: pd.DataFrame, train_scores: np.ndarray | None, train_domains: np.ndarray | None,
                   threshold: float | None, path: str | Path, title: str) -> bool:
    """Score distributions, one panel per domain of the labelled test clips: that domain's training
    normals (leave-one-out), test normals and test anomalies; without domains one panel with every
    clip, unlabeled ones included. All panels share the bins. Returns whether the score axis is logarithmic."""
    plt = _figure()
    panels = _domain_panels(scores)
    train = np.asarray(train_scores if train_scores is not None else [], dtype=float)
    train_dom = np.asarray(train_domains if train_domains is not None else [None] * len(train), dtype=object)
    colours = {"normal": "tab:blue", "anomaly": "tab:red", "unknown": "tab:purple"}
    per_panel = []
    for domain in panels:
        series = []
        own_train = train if domain is None else train[train_dom == domain]
        if len(own_train):
            series.append(("train normals (leave-one-out)", own_train, "tab:grey"))
        clips = scores if domain is None else scores[scores["domain"] == domain]
        for label in (*LABELS, "unknown"):
            s = clips.loc[clips["label"] == label, "score"].to_numpy(dtype=float)
            if len(s):
                series.append((f"test {label}" if label != "unknown" else "test (unlabeled)", s, colours[label]))
        per_panel.append(series)
    every = [s for series in per_panel for _, s, _ in series]
    bins, log_scale = histogram_bins(np.concatenate(every) if every else np.zeros(0))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), dpi=100, squeeze=False, sharex=True)
    for ax, domain, series in zip(axes[0], panels, per_panel):
        for name, s, colour in series:
            s = s[np.isfinite(s)]  # groups differ in size: each is drawn as fractions of its own clips
            ax.hist(s, bins=bins, weights=np.full(len(s), 1 / max(1, len(s))), alpha=0.5, label=f"{name} (n={len(s)})", color=colour)
        if log_scale:
            ax.set_xscale("log")
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="black", ls="--", label=f"decision threshold {threshold:.4g}")
        ax.set(xlabel="anomaly score (kNN cosine distance" + (", log scale)" if log_scale else ")"),
               ylabel="fraction of the group's clips", title=title if domain is None else f"{title}, {domain} domain")
        ax.legend(fontsize=8)
    _save(fig, path)
    return log_scale


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.tight_layout()
        fig.savefig(tmp, format="png")
    _figure().close(fig)


# ----------------------------------------------------------------------------- HTML


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def _html_table(frame: pd.DataFrame) -> str:
    """The table in a container that scrolls sideways when it is wider than the window, so no column is clipped.
    Missing counts (the mean rows' clip counts) stay empty; missing metrics read n/a."""
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.api.extensions.ExtensionDtype) and frame[column].isna().any():
            frame[column] = frame[column].astype(object).where(frame[column].notna(), "")
    table = frame.to_html(index=False, float_format=format_number, na_rep="n/a", border=0, classes="t")
    return f"<div class='scroll'>{table}</div>"


def _html_figures(images: list[Path]) -> str:
    return "<div class='figs'>" + "".join(_img(p) for p in images) + "</div>"


def link_target(target: str | Path, page: str | Path) -> str:
    """Where `target` lies seen from the folder of the HTML page `page`, so links work wherever the page is opened."""
    return Path(os.path.relpath(Path(target).resolve(), Path(page).resolve().parent)).as_posix()


def html_report(out: str | Path, auroc: pd.DataFrame, dcase: pd.DataFrame, means: pd.DataFrame, decisions: pd.DataFrame,
                summary: dict, notes: list[str], plots: dict[str, list[Path]], config: dict, links: dict[str, str],
                training: dict | None = None) -> None:
    """One self-contained HTML page (images embedded): the official score and result table first, then
    the means, decisions, domain-split plots, the pooled AUROC table, links and the configuration."""
    import yaml

    from .metrics import EVALUATOR

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>eat-asd report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em auto;padding:0 1em;max-width:1360px;color:#222}p{max-width:75em}"
        ".scroll{overflow-x:auto;max-width:100%}"
        "table.t{border-collapse:collapse;margin:.5em 0;font-size:.85em}"
        "table.t td,table.t th{border:1px solid #ccc;padding:2px 5px;text-align:right;white-space:nowrap}"
        "table.t th{background:#f0f0f0;white-space:normal;min-width:3.5em}.figs{display:flex;flex-direction:column;gap:8px}.figs img{max-width:100%;border:1px solid #eee}"
        ".big{font-size:1.4em}"
        "pre{background:#f7f7f7;padding:1em;overflow:auto}.note{color:#a15c00}",
        "</style></head><body><h1>Anomalous sound detection report</h1>",
    ]
    decisions_html = ["<h2>Decisions</h2><p>A clip is flagged anomalous when its score exceeds the threshold: a quantile "
                      "of the gamma distribution fitted to the training clips' leave-one-out scores.</p>", _html_table(decisions)]
    plots_html = [f"<h2>{html.escape(machine)}</h2>" + _html_figures(images) for machine, images in plots.items()]
    if summary.get("evaluation_only"):
        parts += [f"<p class='big'>Evaluation mode: {int(decisions['n_test'].sum())} unlabeled test clips scored; "
                  "without labels there are no metrics.</p>"] + decisions_html + plots_html
    else:
        left_out = summary.get("left_out") or []
        overall = auroc.loc[auroc["machine_type"] == "overall", "auroc"]
        parts += [
            f"<p class='big'>Official DCASE score: <b>{format_number(summary.get('official_score'))}</b></p>",
            "<p>The harmonic mean of every section's AUC (source), AUC (target) and pAUC, computed with the formulas of "
            f"{html.escape(EVALUATOR)}.</p>",
        ]
        if left_out:
            parts.append(f"<p class='note'>The official score could not include {len(left_out)} undefined value(s): "
                         f"{html.escape(', '.join(left_out))}.</p>")
        parts += [
            "<h2>Result table</h2><p>Per machine type and section. AUC and pAUC (source/target): that domain's normals "
            "plus all anomalies of the section; pAUC: all clips of the section, FPR ≤ 0.1 (McClish-standardised); "
            "precision, recall, F1 score: the decisions on that domain's clips. Last rows: arithmetic and harmonic "
            "mean of each column over all sections.</p>", _html_table(dcase),
            "<h2>Means over all machine types, sections and domains</h2>", _html_table(means),
        ] + decisions_html + plots_html + [
            f"<h2>AUROC per machine type</h2><p>Pooled over sections and domains; overall: "
            f"{format_number(float(overall.iloc[0]) if len(overall) else None)}.</p>", _html_table(auroc),
        ]
    used = [f"training {(training or {}).get('precision') or 'n/a'}", f"embedding {summary.get('embedding_precision') or 'n/a'}"]
    parts.append(f"<p>Precision: {html.escape(', '.join(used))} (<code>precision: auto</code> picks bf16 on CUDA and, for "
                 "embedding, on CPUs with native bf16 units; scores differ slightly between precisions).</p>")
    if notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li class='note'>{html.escape(n)}</li>" for n in notes) + "</ul>")
    if training:
        rows = [(key.replace("_", " "), format_number(v) if v is None or isinstance(v, float) else str(v))
                for key, v in training.items()]
        parts.append("<h2>Encoder training</h2>" + _html_table(pd.DataFrame(rows, columns=["", "value"])))
    # links relative to the page, to files that are there (a link to a file the run did not write would be dead)
    parts.append("<h2>Files</h2><ul>" + "".join(f"<li><a href='{html.escape(link_target(t, out))}'>{html.escape(name)}</a></li>"
                                                for name, t in links.items() if Path(t).exists()) + "</ul>")
    parts.append("<h2>Configuration</h2><pre>" + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre></body></html>")
    write_text(out, "\n".join(parts))


# ----------------------------------------------------------------------------- experiments


def plot_comparison(table: pd.DataFrame, path: str | Path, reference: str, statistic: str = "official score") -> None:
    """One panel per machine type (and all together): the statistic's seed mean per variant with its
    bootstrap interval, the reference variant's mean as a dashed line."""
    plt = _figure()
    rows = table[table["statistic"] == statistic]
    panels = ["all"] + sorted(set(rows["machine_type"]) - {"all"})
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1, 3.6), squeeze=False, sharey=True)
    for ax, panel in zip(axes[0], panels):
        part = rows[rows["machine_type"] == panel].reset_index(drop=True)
        x = np.arange(len(part))
        ax.errorbar(x, part["mean"], yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
                    fmt="o", capsize=4)
        ref = part.loc[part["variant"] == reference, "mean"]
        if len(ref):
            ax.axhline(float(ref.iloc[0]), color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(x, part["variant"], rotation=30, ha="right")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(statistic)
    fig.suptitle(f"{statistic}: mean over seeds with its 95% bootstrap interval; dashed: {reference}", fontsize=10)
    _save(fig, path)


def experiments_html(out: str | Path, table: pd.DataFrame, plot: str | Path, reference: str, seeds: list[int],
                     n_boot: int, runs: dict[str, dict[str, str]]) -> None:
    """The experiments page: the comparison table, its plot and links to every run's tables."""
    shown = table.copy()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>eat-asd experiments</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;color:#222}"
        ".scroll{overflow-x:auto}table.t{border-collapse:collapse;margin:.5em 0}"
        "table.t td,table.t th{border:1px solid #ccc;padding:3px 8px;text-align:right}table.t th{background:#f0f0f0}"
        "img{max-width:100%}",
        "</style></head><body><h1>Experiments: variants × seeds</h1>",
        f"<p>Seeds {html.escape(', '.join(map(str, seeds)))}; reference variant <b>{html.escape(reference)}</b>. "
        "mean, std: over seeds. ci: 95% bootstrap interval of the seed mean, test clips resampled within each "
        f"section, domain and label ({n_boot} replicates). diff: the variant's mean minus the reference's, with the "
        "paired bootstrap interval (the same resampled clips for both); an interval that excludes 0 is a difference "
        "beyond the resampling noise of the test set and the seeds run.</p>",
        _img(Path(plot)),
        "<div class='scroll'>" + _html_table(shown) + "</div>",
        "<h2>Runs</h2><ul>",
    ]
    for name, target in runs.items():
        parts.append(f"<li><a href='{html.escape(link_target(target, out))}'>{html.escape(name)}</a></li>")
    parts.append("</ul></body></html>")
    write_text(out, "\n".join(parts))
