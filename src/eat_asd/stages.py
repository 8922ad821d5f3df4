"""The workflow's stages as plain functions over files; the CLI and the Snakemake rules call these."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .data import PART_SPLITS, PARTS, check_manifest, discover, read_manifest, supplemental_clips, training_clips
from .embeddings import EmbeddingsFile
from .errors import DataError
from .io import write_csv, write_json
from .layout import SUBMISSION_KINDS, Run, Tables, plot_machine
from .runtime import resolve_device, resolve_precision

log = logging.getLogger(__name__)


def stored_paths(manifest: pd.DataFrame, data_root: str | Path) -> pd.DataFrame:
    """The manifest as it is written: clip paths relative to the data root. A manifest then holds
    nothing of where the data set lies, and stays valid when it is moved or copied: the jobs that read
    clips join these paths to the data root they are given (`clip_files`)."""
    root = Path(data_root).expanduser()
    return manifest.assign(path=[Path(os.path.relpath(p, root)).as_posix() for p in manifest["path"]])


def clip_files(clips: pd.DataFrame, data_root: str | Path) -> list[str]:
    """The files of a manifest's clips under `data_root` (a path that is already absolute stays as it is)."""
    root = Path(data_root).expanduser()
    return [str(root / p) for p in clips["path"]]


def make_manifest(data_root: str | Path, machine: str, out: str | Path, part: str | None = None) -> pd.DataFrame:
    """Discover one machine type's clips, check them, and write its manifest CSV.

    part = "train" or "test" keeps that part only (the train part holds the supplemental recordings
    too): the workflow keeps the two apart so that replacing test clips never retrains the encoder.
    """
    manifest = discover(data_root, machines=[machine])
    check_manifest(manifest)
    if part is not None:
        if part not in PARTS:
            raise ValueError(f"manifest part {part!r}: choose train or test")
        manifest = manifest[manifest["split"].isin(PART_SPLITS[part])]
    write_csv(out, stored_paths(manifest, data_root))
    counts = manifest.groupby(["split", "kind", "label"]).size().to_dict()
    log.info("%s: %d clips %s", machine, len(manifest), counts)
    return manifest


def feature_clips(manifest: pd.DataFrame) -> pd.DataFrame:
    """The clips that get features: training normals (bank and training), the supplemental machine
    recordings (training with train.supplemental = normal, banks with scoring.bank_supplemental) and the
    test clips. Noise-only recordings get none: train.noise_mix reads their waveforms."""
    return pd.concat([training_clips(manifest), supplemental_clips(manifest), manifest[manifest["split"] == "test"]])


def make_features(manifest_path: str | Path, data_root: str | Path, settings, out: str | Path, batch_size: int = 32,
                  device: str | None = None) -> None:
    from .features import build_feature_file

    clips = feature_clips(read_manifest(manifest_path))
    build_feature_file(clip_files(clips, data_root), clips["key"].tolist(), settings, out, batch_size,
                       desc=f"fbank {Path(out).stem}", device=resolve_device(device))


def train(encoder: str, feature_paths: list[str], manifest_paths: list[str], feature_settings, settings, out_dir,
          device: str | None = None, revision: str | None = None, data_root: str | Path | None = None) -> dict:
    """Fine-tune the shared encoder. data_root: where the manifests' clips lie (train.noise_mix reads
    their waveforms); None leaves their paths as they are."""
    from .train import load_training_data, train_encoder

    manifests = [read_manifest(p) for p in manifest_paths]
    if data_root is not None:
        manifests = [m.assign(path=clip_files(m, data_root)) for m in manifests]
    data = load_training_data(feature_paths, manifests, feature_settings, settings.granularity, settings.pseudo_labels,
                              settings.supplemental, settings.noise_mix)
    try:
        return train_encoder(encoder, data, settings, out_dir, device=resolve_device(device), revision=revision)
    finally:
        for features in data.files:
            features.close()


def read_manifests(paths: list[str | Path]) -> pd.DataFrame:
    return pd.concat([read_manifest(p) for p in paths], ignore_index=True)


def embed(encoder: str | Path, feature_paths: list[str | Path], manifest_paths: list[str | Path], data_root: str | Path,
          settings, out: str | Path, device: str | None = None) -> None:
    """Embeddings of a machine type's training normals (its memory bank), supplemental machine recordings
    and test clips, as .npz. A clip of several views (features.channels = each) gets its views'
    embeddings concatenated in channel order.

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
        with FeatureFile(features_path) as features:
            features.check_hashes(clip_files(clips, data_root), clips["key"].tolist())
            rows = features.rows(clips["key"].tolist())
            views = embed_features(model, (features, rows), settings, device=resolve_device(device),
                                   desc=f"embed {Path(features_path).stem}")
        parts.append(views.reshape(len(clips), -1))  # rows are clip-major, channel-minor
        all_clips.append(clips)
    widths = {p.shape[1] for p in parts if len(p)}
    if len(widths) > 1:
        raise DataError(f"{out}: the train and test clips give embeddings of widths {sorted(widths)}: with "
                        "features.channels = each, they need the same number of channels")
    emb = np.concatenate([p for p in parts if len(p)] or parts[:1])
    clips = pd.concat(all_clips, ignore_index=True)
    roles = clips["split"].map({"test": "test", "supplemental": "supplemental"}).fillna("bank").to_numpy(str)
    precision = resolve_precision(settings.precision, resolve_device(device))  # what embed_features ran in
    EmbeddingsFile(emb, clips["key"].to_numpy(str), roles, precision).write(out)


def read_embeddings(source: str | Path | EmbeddingsFile, manifest: pd.DataFrame, bank_only: bool = False,
                    bank_supplemental: bool = False) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, pd.DataFrame]:
    """(bank embeddings, bank rows of the manifest, test embeddings, test rows) of an embeddings file (its
    path, or the file read already); with bank_only, the test clips are skipped (the manifest then needs
    only the training clips). The supplemental machine recordings join the bank with bank_supplemental,
    else they are left out."""
    stored = source if isinstance(source, EmbeddingsFile) else EmbeddingsFile.read(source)
    emb, keys, roles = stored.embeddings, stored.keys, stored.roles
    roles = np.where(roles == "supplemental", "bank" if bank_supplemental else "none", roles)
    keep = roles == "bank" if bank_only else roles != "none"
    emb, keys, roles = emb[keep], keys[keep], roles[keep]
    by_key = manifest.set_index("key")
    missing = [k for k in keys if k not in by_key.index]
    if missing:
        raise ValueError(f"{stored.path}: embeddings of clips not in the manifest, e.g. {missing[:3]}; rerun the embed step")
    meta = by_key.loc[keys].reset_index()
    bank, test = roles == "bank", roles == "test"
    return emb[bank], meta[bank].reset_index(drop=True), emb[test], meta[test].reset_index(drop=True)


def other_banks(embedding_paths: list[str | Path], manifest_paths: list[str | Path],
                bank_supplemental: bool = False) -> tuple[np.ndarray | None, pd.DataFrame | None]:
    """The memory-bank embeddings and rows of other machine types (for scoring.bank_split = all)."""
    if not embedding_paths:
        return None, None
    manifest = read_manifests(manifest_paths)
    parts = [read_embeddings(p, manifest, bank_only=True, bank_supplemental=bank_supplemental)[:2] for p in embedding_paths]
    dims = {Path(p).name: e.shape[1] for p, (e, _) in zip(embedding_paths, parts)}
    if len(set(dims.values())) > 1:
        raise DataError(f"scoring.bank_split = all: embeddings of different sizes {dims} (use one embedding.pooling for all)")
    return np.concatenate([e for e, _ in parts]), pd.concat([m for _, m in parts], ignore_index=True)


def score(embeddings_path: str | Path, manifest_paths: list[str | Path], settings, scores_out: str | Path,
          info_out: str | Path, roc_out: str | Path | None = None, histogram_out: str | Path | None = None,
          ground_truth: str | Path | None = None, bank_embeddings: list[str | Path] = (),
          bank_manifests: list[str | Path] = ()) -> pd.DataFrame:
    """Scores and decisions of one machine type, its threshold and settings (JSON), and its plots if asked for.

    ground_truth: a folder in the official evaluators' layout (see eat_asd.groundtruth) that gives
    the test clips their labels and domains; scores and decisions do not depend on it.
    bank_embeddings/bank_manifests: the other machine types' embeddings and training manifests, whose
    training clips join the memory bank when settings.bank_split is "all".
    """
    from dataclasses import asdict

    from .report import plot_histogram, plot_roc, write_scores
    from .scoring import score_machine

    manifest = read_manifests(manifest_paths)
    stored = EmbeddingsFile.read(embeddings_path)
    bank_emb, bank_meta, test_emb, test_meta = read_embeddings(stored, manifest, bank_supplemental=settings.bank_supplemental)
    machine = str(manifest["machine"].iloc[0])
    if settings.bank_split == "all" and not bank_embeddings:
        log.warning("%s: scoring.bank_split = all, but no other machine types' embeddings given: the bank holds %s only",
                    machine, machine)
    other_emb, other_meta = (other_banks(list(bank_embeddings), list(bank_manifests), settings.bank_supplemental)
                             if settings.bank_split == "all" else (None, None))
    table, threshold, train_scores, k_used = score_machine(bank_emb, bank_meta, test_emb, test_meta, settings, other_emb, other_meta)
    if ground_truth is not None:
        from .groundtruth import apply_ground_truth

        table = apply_ground_truth(table, ground_truth, machine)
    write_scores(table, scores_out)
    bank_machines = sorted({machine, *([] if other_meta is None else other_meta["machine"].astype(str))})
    write_json(info_out, dict(machine=machine, threshold=threshold, settings=asdict(settings), k_used=k_used,
                              embedding_precision=stored.precision,
                              n_bank=len(bank_meta) + (0 if other_meta is None else len(other_meta)), bank_machines=bank_machines,
                              n_test=len(test_meta), train_scores=[float(s) for s in train_scores],
                              train_sections=[str(s) for s in bank_meta["section"]]))
    if roc_out is not None:
        plot_roc(table, roc_out, f"{machine}: ROC (k={k_used['test']})")
    if histogram_out is not None:
        plot_histogram(table, train_scores, bank_meta["domain"].to_numpy(), threshold, histogram_out,
                       f"{machine}: anomaly scores")
    return table


def read_scores(path: str | Path) -> pd.DataFrame:
    scores = pd.read_csv(path, dtype={"section": str, "filename": str}, keep_default_na=False)
    scores["score"] = scores["score"].astype(float)
    return scores


def submission(scores_path: str | Path, section: str, scores_out: str | Path, decisions_out: str | Path) -> None:
    """The DCASE submission file pair of one section of a machine type's score table."""
    from .report import write_submission_pair

    scores = read_scores(scores_path)
    part = scores[scores["section"] == section]
    if part.empty:
        raise DataError(f"{scores_path}: no test clips of section {section}")
    write_submission_pair(part, scores_out, decisions_out)


def decision_table(scores: pd.DataFrame, infos: list[dict]) -> pd.DataFrame:
    """Per machine type and section: test clips, how many the threshold flags, and the threshold
    (from the score jobs' JSON files, read; without them the threshold stays empty)."""
    thresholds = {info["machine"]: info["threshold"] for info in infos}
    rows = []
    for (machine, section), g in scores.groupby(["machine", "section"], sort=True):
        rows.append(dict(machine_type=machine, section=section, n_test=len(g), n_flagged=int(g["decision"].sum()),
                         flagged_fraction=float(g["decision"].mean()), threshold=thresholds.get(machine, float("nan"))))
    return pd.DataFrame(rows, columns=["machine_type", "section", "n_test", "n_flagged", "flagged_fraction", "threshold"])


def aggregate(score_paths: list[str | Path], info_paths: list[str | Path], tables: Tables) -> dict:
    """AUROC table, the official DCASE result table and its means, and the decisions table over every
    machine type's scores."""
    from .metrics import auroc_table, column_means, dcase_metrics
    from .report import write_table

    scores = pd.concat([read_scores(p) for p in score_paths], ignore_index=True)
    evaluation_only = bool((scores["label"] == "unknown").all())
    if evaluation_only:
        log.info("evaluation mode: the test clips are unlabeled, so there are scores and decisions but no metrics")
        notes = ["evaluation mode: the test clips are unlabeled; scores, decisions and submission files only"]
        scores_for_metrics = scores.iloc[:0]
    else:
        notes, scores_for_metrics = [], scores
    auroc, auroc_notes = auroc_table(scores_for_metrics)
    dcase, means, summary, dcase_notes = dcase_metrics(scores_for_metrics)
    write_table(auroc, *tables.auroc)
    write_table(pd.concat([dcase, column_means(dcase)], ignore_index=True)
                .astype({"n_normal": "Int64", "n_anomaly": "Int64"}).fillna({"section": ""}), *tables.dcase)
    write_table(means, *tables.means)
    infos = [json.loads(Path(p).read_text()) for p in info_paths]
    write_table(decision_table(scores, infos), *tables.decisions)
    precisions = sorted({p for p in (info.get("embedding_precision") for info in infos) if p})
    result = dict(summary, overall_auroc=float(auroc.iloc[-1]["auroc"]), notes=notes + auroc_notes + dcase_notes,
                  evaluation_only=evaluation_only, embedding_precision=", ".join(precisions) or None)
    write_json(tables.summary, result)
    log.info("official DCASE score %.4f, overall AUROC %.4f", result["official_score"], result["overall_auroc"])
    return result


def report(tables: Tables, plot_paths: list[str | Path], config: dict, out: str | Path, results_dir: str | Path,
           training_summary: str | Path | None = None, feature_paths: list[str | Path] = ()) -> None:
    """The HTML report; plot files are named <machine>_<kind>.png. What the features changed about the
    clips of `feature_paths` (resampling, mix-down, padding) is listed among the notes."""
    from .audio_notes import changed_summaries
    from .report import html_report

    results_dir = Path(results_dir)
    auroc = pd.read_csv(tables.auroc[0])
    dcase = pd.read_csv(tables.dcase[0], dtype={"section": str, "n_normal": "Int64", "n_anomaly": "Int64"})
    dcase["section"] = dcase["section"].fillna("")  # the mean rows have no section
    means = pd.read_csv(tables.means[0])
    summary = json.loads(Path(tables.summary).read_text())
    decisions = pd.read_csv(tables.decisions[0], dtype={"section": str})
    plots: dict[str, list[Path]] = {}
    for png in map(Path, plot_paths):
        plots.setdefault(plot_machine(png), []).append(png)
    links = {"Result table (CSV)": tables.dcase[0], "Result table (Markdown)": tables.dcase[1],
             "Means (CSV)": tables.means[0], "Means (Markdown)": tables.means[1], "Summary (JSON)": tables.summary,
             "AUROC table (CSV)": tables.auroc[0], "AUROC table (Markdown)": tables.auroc[1],
             "Decisions (CSV)": tables.decisions[0]}
    run = Run(str(results_dir))
    links.update({"Submission files": run.submission_folder, "Per-clip scores": run.scores_folder,
                  "Encoder training log": run.training.log})
    links = {name: str(path) for name, path in links.items()}
    training = json.loads(Path(training_summary).read_text()) if training_summary else None
    if training:
        training.pop("settings", None)
    notes = summary.get("notes", []) + [f"features changed the clips of {line}" for line in changed_summaries(feature_paths)]
    html_report(out, auroc, dcase, means, decisions, summary, notes, plots, config, links, training)


def evaluate(embedding_paths: list[str | Path], manifest_paths: list[str | Path], settings_of, out: str | Path,
             ground_truth: str | Path | None = None) -> dict:
    """The workflow's steps after embedding, for every machine type at once, into a results folder in the
    workflow's layout (eat_asd.layout.Run): score, submission files per section, then the tables.

    manifest_paths[i] is the manifest of embedding_paths[i]; settings_of(machine) gives a machine type's
    ScoreSettings. With bank_split = all, every other machine type's clips join a bank.
    """
    if len(embedding_paths) != len(manifest_paths):
        raise ValueError("evaluate: give one manifest per embeddings file, in the same order")
    run = Run(str(out))
    machines = [str(read_manifest(m)["machine"].iloc[0]) for m in manifest_paths]
    for i, machine in enumerate(machines):
        others = [j for j in range(len(machines)) if j != i]
        table = score(embedding_paths[i], [manifest_paths[i]], settings_of(machine), run.scores(machine),
                      run.score_info(machine), run.plot(machine, "roc"), run.plot(machine, "scores"), ground_truth,
                      [embedding_paths[j] for j in others], [manifest_paths[j] for j in others])
        for section in sorted(table["section"].astype(str).unique()):
            submission(run.scores(machine), section, *(run.submission(kind, machine, section) for kind in SUBMISSION_KINDS))
    return aggregate([run.scores(m) for m in machines], [run.score_info(m) for m in machines], run.tables)


def fuse(score_paths: list[str | Path], info_paths: list[str | Path], threshold_quantile: float, scores_out: str | Path,
         info_out: str | Path) -> pd.DataFrame:
    """A score-level ensemble of one machine type's member score tables (see eat_asd.fusion)."""
    from .fusion import fuse as fuse_members
    from .report import write_scores

    members = [(read_scores(s), json.loads(Path(i).read_text())) for s, i in zip(score_paths, info_paths)]
    table, threshold, train_scores = fuse_members(members, threshold_quantile)
    write_scores(table, scores_out)
    first = members[0][1]
    write_json(info_out, dict(machine=first["machine"], threshold=threshold, members=[str(p) for p in score_paths],
                              threshold_quantile=threshold_quantile, n_test=len(table),
                              train_scores=[float(s) for s in train_scores], train_sections=first["train_sections"]))
    return table


def compare(runs: dict[str, dict[str, list[str]]], reference: str, n_boot: int, table_out: tuple[str | Path, str | Path],
            plot_out: str | Path, html_out: str | Path, run_tables: dict[str, str], seed: int = 0) -> pd.DataFrame:
    """The comparison of every variant with the reference over seeds (see eat_asd.compare): table as
    CSV and Markdown, plot, and an HTML page linking each run's tables (`run_tables`: name -> file)."""
    from .compare import compare_runs
    from .report import experiments_html, plot_comparison, write_table

    tables = {variant: {s: pd.concat([read_scores(p) for p in paths], ignore_index=True) for s, paths in seeds.items()}
              for variant, seeds in runs.items()}
    table = compare_runs(tables, reference, n_boot=n_boot, seed=seed)
    write_table(table, *table_out)
    plot_comparison(table, plot_out, reference)
    seeds = sorted({int(s) for v in runs.values() for s in v})
    experiments_html(html_out, table, plot_out, reference, seeds, n_boot, run_tables)
    return table
