"""The Snakemake workflow, driven through its CLI on a small demo in a temporary folder."""

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from workflow_helpers import MACHINES, SMALL_DEMO, planned_jobs, planned_wildcards, snakemake, write_config

pytestmark = pytest.mark.slow  # Snakemake end to end


def test_dry_run_dag_shape(demo_run):
    _, dry, _ = demo_run
    jobs = planned_jobs(dry)
    assert jobs["train_encoder"] == 1
    assert jobs["embed"] == jobs["score"] == len(MACHINES)
    assert jobs["manifest"] == jobs["features"] == 2 * len(MACHINES)
    assert jobs["submission"] == len(MACHINES) and jobs["aggregate"] == jobs["report"] == jobs["model_card"] == 1


def test_full_run_writes_every_output(demo_run):
    workdir, _, _ = demo_run
    r = workdir / "results"
    auroc = pd.read_csv(r / "tables" / "auroc.csv")
    assert list(auroc.columns) == ["machine_type", "auroc", "n_normal", "n_anomaly"]
    assert auroc["machine_type"].tolist() == MACHINES + ["overall"]
    assert auroc["auroc"].between(0, 1).all() and auroc["n_anomaly"].iloc[-1] == 3 * 8
    dcase = pd.read_csv(r / "tables" / "dcase_metrics.csv")
    assert dcase["machine_type"].tolist() == MACHINES + ["arithmetic mean", "harmonic mean"]
    assert dcase[["AUC (source)", "AUC (target)", "pAUC", "F1 score (target)"]].notna().all().all()
    means = pd.read_csv(r / "tables" / "dcase_summary.csv")
    assert means["summary"].tolist() == ["arithmetic mean", "harmonic mean", "source harmonic mean", "target harmonic mean"]
    assert 0 <= json.loads((r / "tables" / "summary.json").read_text())["official_score"] <= 1
    assert (r / "tables" / "auroc.md").read_text().startswith("| machine_type |")
    decisions = pd.read_csv(r / "tables" / "decisions.csv")
    assert decisions["machine_type"].tolist() == MACHINES and (decisions["n_test"] == 16).all()
    for m in MACHINES:
        sub = pd.read_csv(r / "submission" / f"anomaly_score_{m}_section_00_test.csv", header=None)
        dec = pd.read_csv(r / "submission" / f"decision_result_{m}_section_00_test.csv", header=None)
        assert len(sub) == len(dec) == 16 and set(dec[1]) <= {0, 1}
        assert sub[0].str.startswith("section_00_").all()
        scores = pd.read_csv(r / "scores" / f"{m}.csv")
        assert set(scores.columns) >= {"filename", "section", "domain", "label", "score", "decision"}
        for kind in ("roc", "scores"):
            assert (r / "plots" / f"{m}_{kind}.png").read_bytes()[:4] == b"\x89PNG"
        assert (r / "logs" / "embed" / f"{m}.log").stat().st_size > 0
    html = (r / "report.html").read_text()
    assert html.index("Official DCASE score") < html.index("<h2>AUROC per machine type")
    assert "href='tables/dcase_metrics.csv'" in html and "data:image/png;base64," in html and "train_source" in html
    assert (r / "encoder" / "encoder" / "model.safetensors").is_file()
    assert (r / "encoder" / "encoder" / "modeling_eat.py").is_file()
    card = (r / "encoder" / "encoder" / "README.md").read_text()
    assert card.startswith("---\n") and "| fan |" in card and "snakemake" in card and "--cores 2" in card
    assert (r / "benchmarks" / "train_encoder.tsv").is_file()
    assert not list(r.rglob("*.tmp"))
    # the small demo is stereo (DCASE 2026) with features.channels = each: two views per clip, in
    # training and in the embeddings (each clip's two embeddings side by side), and the report says so
    manifest = pd.read_csv(r / "manifests" / "fan.train.csv")
    assert set(manifest["channels"]) == {2} and set(manifest["kind"]) == {"machine"}
    summary = json.loads((r / "encoder" / "summary.json").read_text())
    assert summary["n_train"] + summary["n_val"] == 2 * len(MACHINES) * len(manifest)  # every machine type alike
    with np.load(r / "embeddings" / "fan.npz") as z:
        assert z["embeddings"].shape == (len(manifest) + 16, 2 * 96)
    assert "with several channels: each channel embedded as a view of its own" in html


def test_nothing_reruns_when_nothing_changed(demo_run):
    workdir, _, _ = demo_run
    out = snakemake(workdir, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_one_machines_setting_reruns_only_that_machine(demo_run):
    workdir, _, _ = demo_run
    write_config(workdir, "k.yaml", overrides={"fan": {"scoring": {"k": 2}}})
    out = snakemake(workdir, "-n", config_file="k.yaml")
    text = out.stdout + out.stderr
    assert planned_jobs(text) == {"score": 1, "submission": 1, "aggregate": 1, "report": 1, "model_card": 1, "all": 1}
    assert planned_wildcards(text) == {"machine=fan", "machine=fan, section=00"}
    write_config(workdir, "precision.yaml", overrides={"pump": {"embedding": {"precision": "float32"}}})
    text = "".join(snakemake(workdir, "-n", config_file="precision.yaml").stdout)
    assert planned_jobs(text) == {"embed": 1, "score": 1, "submission": 1, "aggregate": 1, "report": 1, "model_card": 1,
                                  "all": 1}
    # a training setting retrains the shared encoder and so everything after it
    write_config(workdir, "lr.yaml", train={**SMALL_DEMO["train"], "lr": 0.001})
    jobs = planned_jobs(snakemake(workdir, "-n", config_file="lr.yaml").stdout)
    assert jobs["train_encoder"] == 1 and jobs["embed"] == 3 and "features" not in jobs


def test_scoring_backends_per_machine_type_rescore_only(demo_run, tmp_path):
    """The three back-ends side by side as per-machine-type overrides: only scoring and what follows reruns."""
    workdir, _, _ = demo_run
    copy = tmp_path / "wf"
    shutil.copytree(workdir, copy, symlinks=True)
    backends = {"fan": {"backend": "kmeans", "kmeans_centres": 4},
                "gearbox": {"backend": "knn_rescaled", "k": 2, "k_ref": 4},
                "pump": {"backend": "knn", "domain_strategy": "min", "smote_ratio": 0.5}}
    write_config(copy, "backends.yaml", overrides={m: {"scoring": s} for m, s in backends.items()})
    jobs = planned_jobs(snakemake(copy, "-n", config_file="backends.yaml").stdout)
    assert jobs == {"score": 3, "submission": 3, "aggregate": 1, "report": 1, "model_card": 1, "all": 1}
    snakemake(copy, "--cores", "2", config_file="backends.yaml")
    for machine, settings in backends.items():
        info = json.loads((copy / "results" / "scores" / f"{machine}.json").read_text())
        assert {k: info["settings"][k] for k in settings} == settings
        assert np.isfinite(info["threshold"]) and np.isfinite(info["train_scores"]).all()
        scores = pd.read_csv(copy / "results" / "scores" / f"{machine}.csv")
        assert np.isfinite(scores["score"]).all()
    assert 0 <= json.loads((copy / "results" / "tables" / "summary.json").read_text())["official_score"] <= 1


def test_replacing_test_clips_reruns_only_that_machine(demo_run):
    workdir, _, _ = demo_run
    clip = next((workdir / "demo/data/dev_data/raw/gearbox/test").glob("*anomaly*.wav"))
    original = clip.read_bytes()
    try:
        data, sr = sf.read(clip)
        sf.write(clip, data[::-1].copy(), sr, subtype="PCM_16")
        text = snakemake(workdir, "-n").stdout
        assert planned_jobs(text) == {"manifest": 1, "features": 1, "embed": 1, "score": 1, "submission": 1,
                                      "aggregate": 1, "report": 1, "model_card": 1, "all": 1}
        assert planned_wildcards(text) == {"machine=gearbox, part=test", "machine=gearbox", "machine=gearbox, section=00"}
    finally:
        clip.write_bytes(original)
        os.utime(clip, (0, 0))


def test_ground_truth_key_labels_the_test_clips(demo_run, tmp_path, ground_truth_writer):
    """The demo's test clips scored again with their labels taken from official-format ground truth
    (found through the attributes files by their original names): the same tables as the labelled run."""
    workdir, _, _ = demo_run
    copy = tmp_path / "wf"
    shutil.copytree(workdir, copy, symlinks=True)
    scores = pd.concat([pd.read_csv(p, dtype={"section": str}) for p in sorted((copy / "results" / "scores").glob("*.csv"))])
    ground_truth_writer(scores, tmp_path / "gt")
    labelled = {t: pd.read_csv(copy / "results" / "tables" / t) for t in ("dcase_metrics.csv", "dcase_summary.csv")}
    option = f"ground_truth={tmp_path / 'gt'}"
    jobs = planned_jobs(snakemake(copy, "-n", "--config", option).stdout)
    assert jobs == {"score": 3, "submission": 3, "aggregate": 1, "report": 1, "model_card": 1, "all": 1}
    snakemake(copy, "--cores", "2", "--config", option)
    for table, frame in labelled.items():
        assert pd.read_csv(copy / "results" / "tables" / table).equals(frame), table
    # one machine's ground truth changes: only its score job reruns, and it reads the new labels
    data = tmp_path / "gt" / "ground_truth_data" / "ground_truth_gearbox_section_00_test.csv"
    data.write_text(data.read_text().replace(",0\n", ",1\n", 1))
    text = snakemake(copy, "-n", "--config", option).stdout
    assert planned_jobs(text) == {"score": 1, "submission": 1, "aggregate": 1, "report": 1, "model_card": 1, "all": 1}
    assert planned_wildcards(text) == {"machine=gearbox", "machine=gearbox, section=00"}
    assert snakemake(copy, "--cores", "2", "--config", option, check=False).returncode != 0
    assert "contradict their file names" in (copy / "results" / "logs" / "score" / "gearbox.log").read_text()


@pytest.mark.parametrize("override, key", [
    (["scorng={k: 2}"], "scorng"),  # the schema
    (["scoring={k: 500}"], "scoring.k = 500: the smallest memory bank of fan"),  # planning
    (["results=config.yaml"], "results = config.yaml: is a file, not a folder"),
])
def test_bad_config_stops_before_any_job(tmp_path, override, key):
    """Through Snakemake: the message, no traceback, and nothing written. Every other refused setting is
    checked in-process in test_plan.py (the Snakefile calls the same validate_config and plan_workflow)."""
    write_config(tmp_path)
    out = snakemake(tmp_path, "--cores", "1", "--config", *override, check=False)
    assert out.returncode != 0
    assert key in out.stdout + out.stderr and "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "demo").exists()


def test_a_file_as_results_is_named_in_a_dry_run_without_a_traceback(tmp_path):
    """Before: a traceback from the clip hash cache's write (clip_digest.save), naming no setting."""
    for i in range(6):  # real data, as far as planning reads it: names (and bytes, for the hash cache)
        clip = tmp_path / "data" / "fan" / "train" / f"section_00_source_train_normal_{i:04d}_a_1.wav"
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.write_bytes(b"x")
    (tmp_path / "data" / "fan" / "test").mkdir()
    (tmp_path / "data" / "fan" / "test" / "section_00_source_test_anomaly_0000_a_1.wav").write_bytes(b"x")
    (tmp_path / "encoder").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "encoder" / name).write_text("{}")
    write_config(tmp_path, results="config.yaml", demo=None, data_root="data", encoder="encoder")
    out = snakemake(tmp_path, "-n", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "results = config.yaml: is a file, not a folder" in text
    assert "Traceback" not in text and "clip_digest" not in text


def test_unseen_dcase2020_folder_with_a_local_encoder(tmp_path, reference):
    """--config data_root=... encoder=... on a folder the workflow has never seen."""
    rng = np.random.default_rng(0)
    root = tmp_path / "dcase2020" / "dev_data"
    for machine, ids in (("slider", ["00", "02"]), ("valve", ["04"])):
        for mid in ids:
            for i in range(6):
                tone = np.sin(2 * np.pi * (200 + 40 * int(mid)) * np.arange(8000) / 16000) + 0.1 * rng.normal(size=8000)
                path = root / machine / "train" / f"normal_id_{mid}_{i:08d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, (0.3 * tone).astype(np.float32), 16000)
            for label in ("normal", "anomaly"):
                for i in range(3):
                    noise = rng.normal(size=8000) * (0.5 if label == "anomaly" else 0.1)
                    tone = np.sin(2 * np.pi * (200 + 40 * int(mid)) * np.arange(8000) / 16000) + noise
                    path = root / machine / "test" / f"{label}_id_{mid}_{i:08d}.wav"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, (0.3 * tone).astype(np.float32), 16000)
    # one training clip at 22.05 kHz in stereo: resampled and its channel 0 used, which the terminal and the report say
    odd = np.sin(2 * np.pi * 360 * np.arange(11025) / 22050)
    sf.write(root / "valve" / "train" / "normal_id_04_00000000.wav", 0.3 * np.stack([odd, odd], 1), 22050)
    encoder = tmp_path / "tiny_encoder"
    shutil.copytree(reference / "eat_tiny", encoder, ignore=shutil.ignore_patterns("*.npy"))
    (tmp_path / "config.yaml").write_text("data_root: unused\n")
    run = snakemake(tmp_path, "--cores", "2", "--config", "demo=false", f"data_root={root}", f"encoder={encoder}",
                    "features={target_frames: 48}", "train={epochs: 2}", "results=out")
    said = ("features changed the clips of valve.train.safetensors: 6 clips: 1 resampled to 16 kHz (from 22050 Hz: 1); "
            "1 with several channels: channel 0 used (features.channels = 0)")
    assert "eat-asd: " + said in run.stdout + run.stderr
    out = tmp_path / "out"
    auroc = pd.read_csv(out / "tables" / "auroc.csv")
    assert auroc["machine_type"].tolist() == ["slider", "valve", "overall"]
    dcase = pd.read_csv(out / "tables" / "dcase_metrics.csv", dtype={"section": str})
    assert dcase["section"].dropna().tolist()[:3] == ["00", "02", "04"]
    for name in ("anomaly_score_slider_section_00_test.csv", "decision_result_slider_section_02_test.csv",
                 "anomaly_score_valve_section_04_test.csv"):
        assert len(pd.read_csv(out / "submission" / name, header=None)) == 6
    assert (out / "report.html").is_file() and (out / "plots" / "valve_roc.png").is_file()
    assert said in (out / "report.html").read_text()

    # real data: content, not modification time, decides what is stale (rsync -a, cp -p, tar x keep the time)
    config = ["--config", "demo=false", f"data_root={root}", f"encoder={encoder}", "features={target_frames: 48}",
              "train={epochs: 2}", "results=out"]
    assert "Nothing to be done" in snakemake(tmp_path, "-n", *config).stdout

    # the data set copied elsewhere (new modification times, a space in the path), the old copy removed,
    # and both batch sizes changed: nothing is stale. Before, the manifests reran (data_root and the
    # clips' paths were tracked) and everything after them, training included; a batch size reran
    # the features (and so training) or the embeddings.
    scores = {m: pd.read_csv(out / "scores" / f"{m}.csv") for m in ("slider", "valve")}
    moved = tmp_path / "moved data" / "dcase2020"
    shutil.copytree(root, moved, copy_function=shutil.copy)
    shutil.rmtree(root)
    root = moved
    config = ["--config", "demo=false", f"data_root={root}", f"encoder={encoder}", "features={target_frames: 48}",
              "train={epochs: 2}", "results=out"]
    hashes = (out / ".clip-hashes.json").read_bytes()
    assert "Nothing to be done" in snakemake(tmp_path, "-n", *config).stdout
    assert (out / ".clip-hashes.json").read_bytes() == hashes  # a dry run writes nothing (before: the moved clips' hashes)
    batches = [*config[:4], "features={target_frames: 48, batch_size: 3}", *config[5:], "embedding={batch_size: 5}"]
    assert "Nothing to be done" in snakemake(tmp_path, "-n", *batches).stdout
    # the jobs that read clips find them at the new path, and the scores stay the same
    run = snakemake(tmp_path, "--cores", "2", *batches, "--forcerun", "out/features/valve.test.safetensors")
    assert "rule embed:" in run.stdout + run.stderr and "rule train_encoder:" not in run.stdout + run.stderr
    for m, frame in scores.items():
        assert pd.read_csv(out / "scores" / f"{m}.csv").equals(frame), m
    clip = root / "valve" / "test" / "anomaly_id_04_00000001.wav"
    stat = clip.stat()
    data, sr = sf.read(clip)
    sf.write(clip, data[::-1].copy(), sr)
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    text = snakemake(tmp_path, "-n", *config).stdout
    assert planned_jobs(text) == {"manifest": 1, "features": 1, "embed": 1, "score": 1, "submission": 1,
                                  "aggregate": 1, "report": 1, "model_card": 1, "all": 1}
    assert planned_wildcards(text) == {"machine=valve, part=test", "machine=valve", "machine=valve, section=04"}


def test_snakemake_report_includes_tables_and_plots(demo_run, tmp_path):
    workdir, _, _ = demo_run
    snakemake(workdir, "--report", str(tmp_path / "report.html"))
    text = (tmp_path / "report.html").read_text(errors="replace")
    assert "auroc.csv" in text and "fan_roc.png" in text and "dcase_metrics.csv" in text
    # captions that say what the run did: not "clips of auto machine types", no promised official-score row
    # the description reads no config (a module's report has the importing workflow's config)
    assert "auto machine types" not in text and "official DCASE result table" in text
    assert "summary rows (official score" not in text


def test_the_runs_last_lines_say_where_the_report_is(demo_run):
    workdir, _, run = demo_run
    last = run.stdout.strip().splitlines()[-2:]  # what the run prints last (Snakemake's own log is on stderr)
    assert last[0] == f"eat-asd: report: {workdir / 'results' / 'report.html'}", last


def test_global_bank_score_jobs_read_every_machines_embeddings(tmp_path):
    """scoring.bank_split = all keeps one score job per machine type; each reads all embeddings.
    A per-machine override keeps that machine type on its own bank."""
    write_config(tmp_path, scoring={"bank_split": "all"}, overrides={"pump": {"scoring": {"bank_split": "machine"}}})
    out = snakemake(tmp_path, "-n")
    text = out.stdout + out.stderr
    assert planned_jobs(text)["score"] == len(MACHINES)
    inputs = {}
    for block in text.split("rule score:")[1:]:
        machine = re.search(r"wildcards: machine=(\w+)", block)[1]
        inputs[machine] = set(re.search(r"input: (.*)", block)[1].split(", "))
    for machine in ("fan", "gearbox"):
        assert {f"results/embeddings/{m}.npz" for m in MACHINES} <= inputs[machine]
        assert {f"results/manifests/{m}.train.csv" for m in MACHINES} <= inputs[machine]
    assert [p for p in inputs["pump"] if p.startswith("results/embeddings/")] == ["results/embeddings/pump.npz"]


def test_the_training_command_does_not_depend_on_the_cores(demo_run):
    """Before, the training job got `--threads {threads}`, capped by --cores: other cores, other weights."""
    workdir, _, _ = demo_run
    commands = []
    for cores in ("1", "2"):
        out = snakemake(workdir, "-n", "-p", "--forcerun", "train_encoder", "--cores", cores)
        (command,) = [line for line in (out.stdout + out.stderr).splitlines() if "eat-asd train " in line]
        commands.append(command)
    assert commands[0] == commands[1] and "--threads" not in commands[0]


def test_a_plain_rerun_remakes_damaged_intermediate_files(demo_run, tmp_path):
    """Before, a truncated embeddings file ended the score job in zipfile.BadZipFile without its name, and every
    rerun failed the same way (Snakemake saw the file, so it never remade it); likewise a truncated feature
    file. Now planning names and removes them, and the jobs that need them remake them."""
    workdir = tmp_path / "wf"
    shutil.copytree(demo_run[0], workdir, symlinks=True)  # a copy: the other tests keep the demo run as it is
    r = workdir / "results"
    embeddings, features = r / "embeddings" / "pump.npz", r / "features" / "gearbox.test.safetensors"
    for path in (embeddings, features):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # settings that need both files again: pump's scores and gearbox's embeddings
    write_config(workdir, overrides={"pump": {"scoring": {"k": 2}}, "gearbox": {"embedding": {"precision": "float32"}}})
    out = snakemake(workdir, "--cores", "2")
    said = out.stdout + out.stderr
    for path in (embeddings, features):
        assert f"eat-asd: {path.relative_to(workdir)}: " in said
    assert said.count("removed it, so that the next run computes it again") == 2
    jobs = planned_jobs(said)
    assert jobs["features"] == 1 and jobs["embed"] == 2 and "train_encoder" not in jobs
    with np.load(embeddings) as z:
        assert len(z["keys"]) == len(z["embeddings"])
    assert "eat-asd: report: " in out.stdout


def test_eat_asd_evaluate_writes_what_the_workflow_writes(demo_run, tmp_path):
    """`eat-asd evaluate` runs the workflow's own stage functions (score, submission, aggregate) into the
    workflow's layout: on the workflow's embeddings it gives the same files, byte for byte."""
    from eat_asd.cli import main

    workdir, _, _ = demo_run
    r = workdir / "results"
    manifests = []
    for m in MACHINES:  # evaluate takes one manifest per machine type: its train and test parts together
        whole = pd.concat([pd.read_csv(r / "manifests" / f"{m}.{part}.csv", dtype=str, keep_default_na=False)
                           for part in ("train", "test")])
        whole.to_csv(tmp_path / f"{m}.csv", index=False)
        manifests.append(str(tmp_path / f"{m}.csv"))
    assert main(["evaluate", "--config", str(workdir / "config.yaml"), "--embeddings",
                 *[str(r / "embeddings" / f"{m}.npz") for m in MACHINES], "--manifests", *manifests,
                 "--out", str(tmp_path / "eval")]) == 0
    written = sorted(p.relative_to(r).as_posix() for folder in ("scores", "submission", "tables")
                     for p in (r / folder).rglob("*.*"))
    assert written and written == sorted(p.relative_to(tmp_path / "eval").as_posix()
                                         for folder in ("scores", "submission", "tables")
                                         for p in (tmp_path / "eval" / folder).rglob("*.*"))
    for rel in written:
        assert (tmp_path / "eval" / rel).read_bytes() == (r / rel).read_bytes(), rel
