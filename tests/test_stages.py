"""Stages end to end without Snakemake: the CLI's three steps, evaluation mode, submission files, report."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from eat_asd.cli import main
from eat_asd.demo import DemoSizes, make_demo_data, make_demo_encoder
from eat_asd.report import write_scores
from eat_asd.stages import submission
from helpers import read_submission

SIZES = ["--seconds", "0.6", "--train-source", "8", "--train-target", "3", "--test-per-cell", "4"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """discover -> features -> train -> embed -> evaluate -k, all through `eat-asd`."""
    torch.set_num_threads(2)
    t = tmp_path_factory.mktemp("cli")
    assert main(["demo", str(t / "demo"), *SIZES]) == 0
    cfg = t / "c.yaml"
    cfg.write_text("data_root: unused\nfeatures: {target_frames: 64}\ntrain: {epochs: 2, lr: 0.003}\n")
    machines = ["fan", "gearbox", "pump"]
    for m in machines:
        assert main(["discover", str(t / "demo" / "data"), "--machine", m, "--out", str(t / f"{m}.csv")]) == 0
        assert main(["features", "--config", str(cfg), "--manifest", str(t / f"{m}.csv"), "--data-root", str(t / "demo" / "data"),
                     "--out", str(t / f"{m}.safetensors")]) == 0
    assert main(["train", "--config", str(cfg), "--encoder", str(t / "demo" / "encoder"), "--device", "cpu",
                 "--features", *[str(t / f"{m}.safetensors") for m in machines],
                 "--manifests", *[str(t / f"{m}.csv") for m in machines], "--out", str(t / "trained")]) == 0
    for m in machines:
        assert main(["embed", "--encoder", str(t / "trained" / "encoder"), "--device", "cpu",
                     "--features", str(t / f"{m}.safetensors"), "--manifests", str(t / f"{m}.csv"),
                     "--data-root", str(t / "demo" / "data"), "--out", str(t / f"{m}.npz")]) == 0
    return t, machines


def test_three_step_cli(cli_run, capsys):
    t, machines = cli_run
    assert main(["evaluate", "-k", "2", "--embeddings", *[str(t / f"{m}.npz") for m in machines],
                 "--manifests", *[str(t / f"{m}.csv") for m in machines], "--out", str(t / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "| overall |" in printed
    info = json.loads((t / "eval" / "scores" / "fan.json").read_text())
    assert info["settings"]["k"] == 2 and info["n_test"] == 16
    assert (t / "eval" / "submission" / "anomaly_score_pump_section_00_test.csv").is_file()
    summary = json.loads((t / "trained" / "summary.json").read_text())
    assert summary["mode"] == "lora" and summary["classes"] == 9


def test_same_config_same_scores(cli_run):
    t, machines = cli_run
    for run in ("a", "b"):
        assert main(["score", "--embeddings", str(t / "fan.npz"), "--manifests", str(t / "fan.csv"),
                     "--out", str(t / run / "fan.csv"), "--info", str(t / run / "fan.json")]) == 0
    assert (t / "a" / "fan.csv").read_bytes() == (t / "b" / "fan.csv").read_bytes()


def test_scores_json_reports_the_k_actually_used(cli_run):
    """Before, a k larger than the bank was clamped while the JSON reported the requested k."""
    t, _ = cli_run
    assert main(["score", "-k", "500", "--embeddings", str(t / "fan.npz"), "--manifests", str(t / "fan.csv"),
                 "--out", str(t / "k" / "fan.csv"), "--info", str(t / "k" / "fan.json")]) == 0
    info = json.loads((t / "k" / "fan.json").read_text())
    assert info["settings"]["k"] == 500 and info["n_bank"] < 500
    assert info["k_used"] == {"test": info["n_bank"], "threshold": info["n_bank"] - 1}


def test_evaluation_mode_without_labels(cli_run, tmp_path):
    t, _ = cli_run
    manifest = pd.read_csv(t / "fan.csv", dtype=str, keep_default_na=False)
    test = manifest["split"] == "test"
    manifest.loc[test, "label"] = "unknown"
    manifest.loc[test, "domain"] = "unknown"
    manifest.to_csv(tmp_path / "fan.csv", index=False)
    assert main(["score", "--embeddings", str(t / "fan.npz"), "--manifests", str(tmp_path / "fan.csv"),
                 "--out", str(tmp_path / "scores.csv"), "--info", str(tmp_path / "scores.json"),
                 "--roc", str(tmp_path / "plots" / "fan_roc.png"), "--histogram", str(tmp_path / "plots" / "fan_scores.png")]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 16 and scores["score"].notna().all() and set(scores["decision"]) <= {0, 1}
    assert main(["submission", "--scores", str(tmp_path / "scores.csv"), "--section", "00",
                 "--out-scores", str(tmp_path / "sub" / "s.csv"), "--out-decisions", str(tmp_path / "sub" / "d.csv")]) == 0
    assert len(read_submission(tmp_path / "sub" / "d.csv")) == 16
    assert main(["aggregate", "--scores", str(tmp_path / "scores.csv"), "--infos", str(tmp_path / "scores.json"),
                 "--tables-dir", str(tmp_path / "tables")]) == 0
    summary = json.loads((tmp_path / "tables" / "summary.json").read_text())
    assert summary["evaluation_only"] and "evaluation mode" in summary["notes"][0]
    assert summary["official_score"] is None  # strict JSON: no NaN
    decisions = pd.read_csv(tmp_path / "tables" / "decisions.csv")
    assert decisions[["n_test", "n_flagged"]].iloc[0].tolist() == [16, int(scores["decision"].sum())]
    assert decisions["threshold"].iloc[0] == pytest.approx(json.loads((tmp_path / "scores.json").read_text())["threshold"])
    tables = tmp_path / "tables"
    assert main(["report", "--auroc", str(tables / "auroc.csv"), "--dcase", str(tables / "dcase_metrics.csv"),
                 "--means", str(tables / "dcase_summary.csv"), "--decisions", str(tables / "decisions.csv"),
                 "--summary", str(tables / "summary.json"), "--plots", str(tmp_path / "plots" / "fan_roc.png"),
                 "--results-dir", str(tmp_path), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Evaluation mode: 16 unlabeled test clips scored" in page and "Overall AUROC" not in page
    assert "features changed the clips" not in page  # no feature files given, nothing to say


def test_submission_files_parse_back(tmp_path):
    scores = pd.DataFrame({"filename": ["a.wav", "b.wav", "c.wav"], "machine": "fan", "section": ["00", "00", "01"],
                           "score": [0.5, 0.25, 1.0], "decision": [1, 0, 1]})
    write_scores(scores, tmp_path / "fan.csv")
    for section in ("00", "01"):
        submission(tmp_path / "fan.csv", section, tmp_path / f"anomaly_score_fan_section_{section}_test.csv",
                   tmp_path / f"decision_result_fan_section_{section}_test.csv")
    back = read_submission(tmp_path / "anomaly_score_fan_section_00_test.csv")
    assert back["filename"].tolist() == ["a.wav", "b.wav"] and np.allclose(back["value"], [0.5, 0.25])
    text = (tmp_path / "decision_result_fan_section_01_test.csv").read_text()
    assert text == "c.wav,1\n"  # no header


def test_bad_inputs_give_a_clear_error_and_exit_code(tmp_path, caplog):
    assert main(["discover", str(tmp_path / "missing"), "--out", str(tmp_path / "m.csv")]) == 1
    assert "no such folder" in caplog.text and not (tmp_path / "m.csv").exists()
    assert main(["embed", "--encoder", str(tmp_path / "nope"), "--features", "x", "--manifests", "y", "--data-root", "d",
                 "--out", "z"]) == 1


def test_global_bank_through_score_and_evaluate(cli_run, tmp_path):
    t, machines = cli_run
    train_normals = {m: int(((pd.read_csv(t / f"{m}.csv")["split"] == "train") & (pd.read_csv(t / f"{m}.csv")["label"] == "normal")).sum())
                     for m in machines}
    assert main(["score", "--embeddings", str(t / "fan.npz"), "--manifests", str(t / "fan.csv"), "--settings", '{"bank_split": "all"}',
                 "--bank-embeddings", str(t / "gearbox.npz"), str(t / "pump.npz"),
                 "--bank-manifests", str(t / "gearbox.csv"), str(t / "pump.csv"),
                 "--out", str(tmp_path / "fan.csv"), "--info", str(tmp_path / "fan.json")]) == 0
    info = json.loads((tmp_path / "fan.json").read_text())
    assert info["bank_machines"] == machines and info["n_bank"] == sum(train_normals.values())
    assert len(info["train_scores"]) == train_normals["fan"]
    cfg = tmp_path / "all.yaml"
    cfg.write_text("data_root: unused\nscoring: {bank_split: all}\n")
    assert main(["evaluate", "--config", str(cfg), "--embeddings", *[str(t / f"{m}.npz") for m in machines],
                 "--manifests", *[str(t / f"{m}.csv") for m in machines], "--out", str(tmp_path / "eval")]) == 0
    pump = json.loads((tmp_path / "eval" / "scores" / "pump.json").read_text())
    assert pump["bank_machines"] == machines and pump["settings"]["bank_split"] == "all"
    scores = pd.read_csv(tmp_path / "eval" / "scores" / "fan.csv")
    assert np.allclose(scores["score"], pd.read_csv(tmp_path / "fan.csv")["score"])


def anonymise(t, machine, names, out):
    """The machine type's manifest and embeddings as an evaluation set ships: test clips renamed to
    section_XX_NNNN.wav, no labels, no domains, no attributes."""
    manifest = pd.read_csv(t / f"{machine}.csv", dtype=str, keep_default_na=False)
    test = manifest["split"] == "test"
    manifest.loc[test, "filename"] = manifest.loc[test, "filename"].map(names)
    manifest.loc[test, "key"] = "test/" + manifest.loc[test, "filename"]
    manifest.loc[test, ["label", "domain", "attribute_string"]] = ["unknown", "unknown", ""]
    manifest.loc[test, "attributes"] = "{}"
    manifest.to_csv(out / f"{machine}.csv", index=False)
    old_keys = pd.read_csv(t / f"{machine}.csv", dtype=str, keep_default_na=False)["key"].tolist()
    rename = dict(zip(old_keys, manifest["key"]))
    with np.load(t / f"{machine}.npz") as z:
        np.savez(out / f"{machine}.npz", embeddings=z["embeddings"], keys=np.array([rename[k] for k in z["keys"]]), roles=z["roles"])


def test_ground_truth_mode_reproduces_the_labelled_run(cli_run, tmp_path, ground_truth_writer, caplog):
    t, machines = cli_run
    args = ["evaluate", "-k", "1", "--embeddings", *[str(t / f"{m}.npz") for m in machines],
            "--manifests", *[str(t / f"{m}.csv") for m in machines], "--out", str(tmp_path / "labelled")]
    assert main(args) == 0
    test_clips = pd.concat([pd.read_csv(t / f"{m}.csv", dtype=str, keep_default_na=False) for m in machines])
    names = ground_truth_writer(test_clips[test_clips["split"] == "test"], tmp_path / "gt")
    for m in machines:
        anonymise(t, m, names, tmp_path)
    assert main(["evaluate", "-k", "1", "--embeddings", *[str(tmp_path / f"{m}.npz") for m in machines],
                 "--manifests", *[str(tmp_path / f"{m}.csv") for m in machines], "--out", str(tmp_path / "eval"),
                 "--ground-truth", str(tmp_path / "gt")]) == 0
    for table in ("dcase_metrics.csv", "dcase_summary.csv", "auroc.csv"):
        labelled = pd.read_csv(tmp_path / "labelled" / "tables" / table)
        assert pd.read_csv(tmp_path / "eval" / "tables" / table).equals(labelled), table
    a, b = (json.loads((tmp_path / run / "tables" / "summary.json").read_text()) for run in ("labelled", "eval"))
    assert b["official_score"] == a["official_score"] and b["means"] == a["means"] and not b["evaluation_only"]
    scores = pd.read_csv(tmp_path / "eval" / "scores" / "fan.csv", keep_default_na=False)
    assert scores["filename"].str.fullmatch(r"section_00_\d{4}\.wav").all()  # scored under the anonymised names
    assert set(scores["domain"]) == {"source", "target"} and set(scores["label"]) == {"normal", "anomaly"}
    sub = read_submission(tmp_path / "eval" / "submission" / "anomaly_score_fan_section_00_test.csv")
    assert set(sub["filename"]) == set(scores["filename"])
    # a clip the ground truth does not list stops the run with its name
    for folder in ("ground_truth_data", "ground_truth_domain"):
        (tmp_path / "gt" / folder / "ground_truth_pump_section_00_test.csv").write_text("section_00_0001.wav,0\n")
    assert main(["evaluate", "--embeddings", str(tmp_path / "pump.npz"), "--manifests", str(tmp_path / "pump.csv"),
                 "--out", str(tmp_path / "bad"), "--ground-truth", str(tmp_path / "gt")]) == 1
    assert "15 scored clip(s) of pump are not listed in ground_truth_data/" in caplog.text


def test_features_job_stops_on_a_nan_test_clip_naming_it(cli_run, tmp_path, caplog):
    """Before, NaN samples in a test clip passed features, training and embedding and failed only
    in the score job with scikit-learn's 'Input contains NaN', naming no file."""
    import shutil

    import soundfile as sf

    t, _ = cli_run
    data = tmp_path / "data"
    shutil.copytree(t / "demo" / "data" / "dev_data" / "raw" / "fan", data / "fan")
    bad = sorted((data / "fan" / "test").glob("*.wav"))[0]
    wav, rate = sf.read(bad, dtype="float32")
    wav[100] = np.nan
    sf.write(bad, wav, rate, subtype="FLOAT")
    assert main(["discover", str(data), "--machine", "fan", "--part", "test", "--out", str(tmp_path / "fan.test.csv")]) == 0
    out = tmp_path / "fan.test.safetensors"
    assert main(["features", "--settings", '{"target_frames": 64}', "--manifest", str(tmp_path / "fan.test.csv"),
                 "--data-root", str(data), "--out", str(out)]) == 1
    assert f"{bad}: 1 of {len(wav)} samples are NaN or infinite" in caplog.text and not out.exists()


def test_every_cli_option_has_help_and_the_version_prints(capsys):
    import argparse

    from eat_asd import __version__
    from eat_asd.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {action.option_strings or action.dest}" for name, sub in subparsers.choices.items()
               for action in sub._actions if not action.help]
    assert not missing, missing
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"eat-asd {__version__}"


def test_an_error_of_the_package_is_one_line(cli_run, tmp_path, caplog, monkeypatch):
    """An unreachable Hub id (a TrainingError) is one line naming the encoder, not a traceback."""
    from eat_asd.errors import EatAsdError, TrainingError

    t, _ = cli_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert issubclass(TrainingError, EatAsdError)
    code = main(["train", "--encoder", "someone/not-cached", "--features", str(t / "fan.safetensors"),
                 "--manifests", str(t / "fan.csv"), "--feature-settings", '{"target_frames": 64}',
                 "--out", str(tmp_path / "out")])
    assert code == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and not errors[0].exc_info
    assert errors[0].getMessage().startswith("train: encoder someone/not-cached: ")  # the useful line first


def test_the_device_is_an_execution_setting(monkeypatch):
    """Not a config key (changing it must rerun nothing): the environment, or --device for one command."""
    from eat_asd.cli import DEVICE_ENV, build_parser
    from eat_asd.config import ConfigError, validate_config

    args = ["embed", "--encoder", "e", "--features", "f", "--manifests", "m", "--data-root", "d", "--out", "o"]
    assert build_parser().parse_args(args).device == "auto"
    monkeypatch.setenv(DEVICE_ENV, "cuda:1")
    assert build_parser().parse_args(args).device == "cuda:1"
    assert build_parser().parse_args([*args, "--device", "cpu"]).device == "cpu"
    with pytest.raises(ConfigError, match="device"):
        validate_config({"data_root": ".", "device": "cpu"})
