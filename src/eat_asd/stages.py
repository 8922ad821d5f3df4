"""The workflow's stages as plain functions over files; the CLI and the Snakemake rules call these."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .data import check_manifest, discover, read_manifest, training_clips
from .io import atomic_path, write_csv, write_json
from .runtime import resolve_device

log = logging.getLogger(__name__)


PARTS = ("train", "test")


def make_manifest(data_root: str | Path, machine: str, out: str | Path, part: str | None = None) -> pd.DataFrame:
    """Discover one machine type's clips, check them, and write its manifest CSV.

    part = "train" or "test" keeps that split only: the workflow keeps the two apart so that
    replacing test clips never retrains the encoder.
    """
    manifest = discover(data_root, machines=[machine])
    check_manifest(manifest)
    if part is not None:
        if part not in PARTS:
            raise ValueError(f"manifest part {part!r}: choose train or test")
        manifest = manifest[manifest["split"] == part]
    write_csv(out, manifest)
    counts = manifest.groupby(["split", "label"]).size().to_dict()
    log.info("%s: %d clips %s", machine, len(manifest), counts)
    return manifest


def feature_clips(manifest: pd.DataFrame) -> pd.DataFrame:
    """The clips that get features: training normals (bank and training) and the test clips."""
    return pd.concat([training_clips(manifest), manifest[manifest["split"] == "test"]])


def make_features(manifest_path: str | Path, settings, out: str | Path, batch_size: int = 32, device: str = "cpu") -> None:
    from .features import build_feature_file

    clips = feature_clips(read_manifest(manifest_path))
    build_feature_file(clips["path"].tolist(), clips["key"].tolist(), settings, out, batch_size,
                       desc=f"fbank {Path(out).stem}", device=resolve_device(device))


def train(encoder: str, feature_paths: list[str], manifest_paths: list[str], feature_settings, settings, out_dir,
          device: str = "auto") -> dict:
    from .train import load_training_data, train_encoder

    manifests = [read_manifest(p) for p in manifest_paths]
    data = load_training_data(feature_paths, manifests, feature_settings, settings.granularity)
    return train_encoder(encoder, data, settings, out_dir, device=resolve_device(device))


def read_manifests(paths: list[str | Path]) -> pd.DataFrame:
    return pd.concat([read_manifest(p) for p in paths], ignore_index=True)


def embed(encoder: str | Path, feature_paths: list[str | Path], manifest_paths: list[str | Path], settings,
          out: str | Path, device: str = "auto") -> None:
    """Embeddings of a machine type's training normals (its memory bank) and test clips, as .npz.

    feature_paths[i] holds the features of the clips of manifest_paths[i].
    """
    from .eat import load_eat
    from .embed import embed_features
    from .features import FeatureFile

    if len(feature_paths) != len(manifest_paths):
        raise ValueError("embed: give one manifest per feature file, in the same order")
    model = load_eat(encoder)
    parts, all_clips = [], []
    for features_path, manifest_path in zip(feature_paths, manifest_paths):
        clips = feature_clips(read_manifest(manifest_path))
        features = FeatureFile(features_path)
        features.check_hashes(clips["path"].tolist(), clips["key"].tolist())
        rows = features.rows(clips["key"].tolist())
        parts.append(embed_features(model, (features, rows), settings, device=resolve_device(device),
                                    desc=f"embed {Path(features_path).stem}"))
        all_clips.append(clips)
    emb = np.concatenate(parts)
    clips = pd.concat(all_clips, ignore_index=True)
    roles = np.where(clips["split"].to_numpy() == "test", "test", "bank")
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, embeddings=emb.astype(np.float32), keys=clips["key"].to_numpy(str), roles=roles)


def read_embeddings(path: str | Path, manifest: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, pd.DataFrame]:
    """(bank embeddings, bank rows of the manifest, test embeddings, test rows)."""
    with np.load(path) as z:
        emb, keys, roles = z["embeddings"], z["keys"], z["roles"]
    by_key = manifest.set_index("key")
    missing = [k for k in keys if k not in by_key.index]
    if missing:
        raise ValueError(f"{path}: embeddings of clips not in the manifest, e.g. {missing[:3]}; rerun the embed step")
    meta = by_key.loc[keys].reset_index()
    bank, test = roles == "bank", roles == "test"
    return emb[bank], meta[bank].reset_index(drop=True), emb[test], meta[test].reset_index(drop=True)


def score(embeddings_path: str | Path, manifest_paths: list[str | Path], settings, scores_out: str | Path,
          info_out: str | Path, submission_dir: str | Path | None = None, plots_dir: str | Path | None = None) -> pd.DataFrame:
    """Scores, decisions, plots and (if submission_dir is given) DCASE submission files of one machine type."""
    from dataclasses import asdict

    from .report import plot_histogram, plot_roc, write_submission
    from .scoring import score_machine

    manifest = read_manifests(manifest_paths)
    bank_emb, bank_meta, test_emb, test_meta = read_embeddings(embeddings_path, manifest)
    machine = str(manifest["machine"].iloc[0])
    table, threshold, train_scores = score_machine(bank_emb, bank_meta, test_emb, test_meta, settings)
    write_csv(scores_out, table, float_format="%.8f")
    if submission_dir is not None:
        write_submission(table, submission_dir)
    write_json(info_out, dict(machine=machine, threshold=threshold, settings=asdict(settings), n_bank=len(bank_meta),
                              n_test=len(test_meta), train_scores=[float(s) for s in train_scores]))
    if plots_dir is not None:
        plot_roc(table, Path(plots_dir) / f"{machine}_roc.png", f"{machine}: ROC (k={settings.k})")
        plot_histogram(table, train_scores, threshold, Path(plots_dir) / f"{machine}_scores.png", f"{machine}: anomaly scores")
    return table


def read_scores(path: str | Path) -> pd.DataFrame:
    scores = pd.read_csv(path, dtype={"section": str, "filename": str}, keep_default_na=False)
    scores["score"] = scores["score"].astype(float)
    return scores


def submission(scores_path: str | Path, section: str, out_dir: str | Path) -> None:
    """The DCASE submission file pair of one section of a machine type's score table."""
    from .report import write_submission

    scores = read_scores(scores_path)
    part = scores[scores["section"] == section]
    if part.empty:
        raise ValueError(f"{scores_path}: no test clips of section {section}")
    write_submission(part, out_dir)


def decision_table(scores: pd.DataFrame, score_paths: list[str | Path]) -> pd.DataFrame:
    """Per machine type and section: test clips, how many the threshold flags, and the threshold
    (from the score job's JSON beside each score table)."""
    thresholds = {}
    for path in score_paths:
        info_path = Path(path).with_suffix(".json")
        if info_path.is_file():  # absent when score tables come from elsewhere: the threshold stays empty
            info = json.loads(info_path.read_text())
            thresholds[info["machine"]] = info["threshold"]
    rows = []
    for (machine, section), g in scores.groupby(["machine", "section"], sort=True):
        rows.append(dict(machine_type=machine, section=section, n_test=len(g), n_flagged=int(g["decision"].sum()),
                         flagged_fraction=float(g["decision"].mean()), threshold=thresholds.get(machine, float("nan"))))
    return pd.DataFrame(rows, columns=["machine_type", "section", "n_test", "n_flagged", "flagged_fraction", "threshold"])


def aggregate(score_paths: list[str | Path], tables_dir: str | Path) -> dict:
    """AUROC and official DCASE tables over every machine type's scores."""
    from .metrics import auroc_table, dcase_metrics
    from .report import dcase_table_with_summary, write_table

    scores = pd.concat([read_scores(p) for p in score_paths], ignore_index=True)
    tables_dir = Path(tables_dir)
    if (scores["label"] == "unknown").all():
        log.info("evaluation mode: the test clips are unlabeled, so there are scores and decisions but no metrics")
        notes = ["evaluation mode: the test clips are unlabeled; scores, decisions and submission files only"]
        auroc, _ = auroc_table(scores.iloc[:0])
        dcase, summary, _ = dcase_metrics(scores.iloc[:0])
        dnotes = []
    else:
        auroc, notes = auroc_table(scores)
        dcase, summary, dnotes = dcase_metrics(scores)
    write_table(auroc, tables_dir / "auroc.csv")
    write_table(dcase_table_with_summary(dcase, summary), tables_dir / "dcase_metrics.csv")
    write_table(decision_table(scores, score_paths), tables_dir / "decisions.csv")
    result = dict(summary, overall_auroc=float(auroc.iloc[-1]["auroc"]), notes=notes + dnotes,
                  evaluation_only=bool((scores["label"] == "unknown").all()))
    write_json(tables_dir / "summary.json", result)
    log.info("overall AUROC %.4f, official DCASE score %.4f", result["overall_auroc"], result["official_score"])
    return result


def report(tables_dir: str | Path, plots_dir: str | Path, config: dict, out: str | Path, results_dir: str | Path,
           training_summary: str | Path | None = None) -> None:
    from .report import html_report

    tables_dir, plots_dir, results_dir = Path(tables_dir), Path(plots_dir), Path(results_dir)
    auroc = pd.read_csv(tables_dir / "auroc.csv")
    dcase = pd.read_csv(tables_dir / "dcase_metrics.csv", dtype={"section": str, "n_normal": "Int64", "n_anomaly": "Int64"})
    dcase = dcase[dcase["section"].notna()]  # per-section rows; the summary rows come from summary.json
    summary = json.loads((tables_dir / "summary.json").read_text())
    decisions = pd.read_csv(tables_dir / "decisions.csv", dtype={"section": str})
    plots: dict[str, list[Path]] = {}
    for png in sorted(plots_dir.glob("*.png")):
        plots.setdefault(png.stem.rsplit("_", 1)[0], []).append(png)
    links = {name: str(results_dir / rel) for name, rel in [
        ("AUROC table (CSV)", "tables/auroc.csv"), ("AUROC table (Markdown)", "tables/auroc.md"),
        ("DCASE metrics (CSV)", "tables/dcase_metrics.csv"), ("DCASE metrics (Markdown)", "tables/dcase_metrics.md"),
        ("Decisions (CSV)", "tables/decisions.csv"),
        ("Submission files", "submission"), ("Per-clip scores", "scores"), ("Encoder training log", "encoder/train_log.csv")]}
    training = json.loads(Path(training_summary).read_text()) if training_summary else None
    if training:
        training.pop("settings", None)
    html_report(out, auroc, dcase, decisions, summary, summary.get("notes", []), plots, config, links, training)
