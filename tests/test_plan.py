"""Planning refuses, before any job runs, settings and inputs the later jobs cannot honour."""

import subprocess
import sys

import pytest

from eat_asd.config import ConfigError, validate_config
from eat_asd.data import DataError
from eat_asd.plan import plan_workflow


def make_data(root, banks, test_sections=("00",)):
    """banks: machine -> {(section, domain): normal training clips}; names only, no audio is read."""
    for machine, cells in banks.items():
        for (section, domain), n in cells.items():
            for i in range(n):
                path = root / machine / "train" / f"section_{section}_{domain}_train_normal_{i:04d}_a_1.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"x")
        for section in test_sections:
            for label in ("normal", "anomaly"):
                path = root / machine / "test" / f"section_{section}_source_test_{label}_0000_a_1.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"x")
    return root


def make_encoder(folder, files=("config.json", "model.safetensors")):
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).write_text("{}")
    return folder


def config(tmp_path, banks=None, **values):
    banks = banks or {"fan": {("00", "source"): 5, ("00", "target"): 2}, "pump": {("00", "source"): 4}}
    root = make_data(tmp_path / "data", banks, values.pop("test_sections", ("00",)))
    encoder = values.pop("encoder", None) or str(make_encoder(tmp_path / "encoder"))
    return validate_config({"data_root": str(root), "encoder": encoder, **values})


def test_planning_imports_no_torch():
    code = ("import sys, eat_asd.plan, eat_asd.audio_notes, eat_asd.banks, eat_asd.encoder_source; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_valid_plan(tmp_path):
    plans = plan_workflow(config(tmp_path, scoring={"k": 1, "domain_strategy": "min"}))
    assert list(plans) == ["fan", "pump"] and len(plans["fan"].bank) == 7


def test_override_of_a_machine_type_that_is_not_there(tmp_path):
    """Before, with machine_types: auto, the override was ignored."""
    with pytest.raises(ConfigError, match=r"overrides.fann: no such machine type .* \(machine types: \['fan', 'pump'\]\)"):
        plan_workflow(config(tmp_path, overrides={"fann": {"scoring": {"k": 3}}}))


def test_k_larger_than_the_smallest_bank(tmp_path):
    """Before, k was clamped to the bank at scoring time while the scores JSON showed the requested k."""
    with pytest.raises(ConfigError, match=r"scoring.k = 2: the smallest memory bank of fan \(section 00, target domain\) "
                                          r"has 2 clips.*k can be at most 1"):
        plan_workflow(config(tmp_path, scoring={"k": 2, "domain_strategy": "min"}))
    plan_workflow(config(tmp_path / "pooled", scoring={"k": 3}))  # pooled: banks of 7 and 4
    with pytest.raises(ConfigError, match=r"overrides.pump.scoring.k = 4: the smallest memory bank of pump "
                                          r"\(section 00\) has 4 clips"):
        plan_workflow(config(tmp_path / "override", overrides={"pump": {"scoring": {"k": 4}}}))


def test_bank_per_section(tmp_path):
    banks = {"fan": {("00", "source"): 6, ("01", "source"): 3}, "pump": {("00", "source"): 6}}
    with pytest.raises(ConfigError, match=r"scoring.k = 3: the smallest memory bank of fan \(section 01\) has 3 clips"):
        plan_workflow(config(tmp_path, banks, scoring={"k": 3, "bank_split": "section"}))
    plan_workflow(config(tmp_path / "machine", banks, scoring={"k": 3}))
    with pytest.raises(DataError, match=r"fan: test clips of section\(s\) \['02'\] but no normal training clips"):
        plan_workflow(config(tmp_path / "sections", banks, test_sections=("00", "02"), scoring={"bank_split": "section"}))


def test_too_few_training_clips(tmp_path):
    """Before, two training clips failed only in the score job, after training and embedding."""
    banks = {"fan": {("00", "source"): 2}, "pump": {("00", "source"): 4}}
    with pytest.raises(DataError, match=r"machine type fan: 2 normal training clip\(s\).*needs at least 3"):
        plan_workflow(config(tmp_path, banks))


@pytest.mark.parametrize("make, message", [
    (lambda t: str(t / "no_such_folder"), "no_such_folder: no such folder, and not a Hugging Face Hub id"),
    (lambda t: "./models/eat", "no such folder, and not a Hugging Face Hub id"),
    (lambda t: "owner/name/extra", "owner/name/extra: no such folder, and not a Hugging Face Hub id"),
    (lambda t: "owner--x/name", "not a Hugging Face Hub id"),
    (lambda t: str(make_encoder(t / "half", ["config.json"])), "half: the folder has no model.safetensors"),
    (lambda t: str(make_encoder(t / "empty", [])), "the folder has no config.json and no model.safetensors"),
], ids=["missing-folder", "relative-path", "three-parts", "double-dash", "no-weights", "empty-folder"])
def test_unusable_encoder_is_refused_at_planning(tmp_path, make, message):
    """Before, a missing encoder was reported by the training job, after every feature file was built."""
    with pytest.raises(ConfigError, match=r"encoder = .*" + message):
        plan_workflow(config(tmp_path, encoder=make(tmp_path)))


def test_hub_id_offline_must_be_in_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    plan_workflow(config(tmp_path / "online", encoder="worstchan/EAT-base_epoch30_pretrain"))  # resolved by the job
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="worstchan/EAT-base_epoch30_pretrain: HF_HUB_OFFLINE is set and it is not in the local"):
        plan_workflow(config(tmp_path / "offline", encoder="worstchan/EAT-base_epoch30_pretrain"))
    repo = cache / "models--worstchan--EAT-base_epoch30_pretrain"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    make_encoder(repo / "snapshots" / "abc123", ["config.json"])
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache with config.json and weights"):
        plan_workflow(config(tmp_path / "no_weights", encoder="worstchan/EAT-base_epoch30_pretrain"))
    make_encoder(repo / "snapshots" / "abc123")
    plan_workflow(config(tmp_path / "cached", encoder="worstchan/EAT-base_epoch30_pretrain"))


def test_demo_plans_before_its_data_and_encoder_exist(tmp_path):
    cfg = validate_config({"data_root": str(tmp_path / "not_yet"), "encoder": str(tmp_path / "not_yet_either"),
                           "demo": {"seed": 0, "seconds": 2.0}, "scoring": {"domain_strategy": "min"}})
    plans = plan_workflow(cfg)
    assert list(plans) == ["fan", "gearbox", "pump"] and not (tmp_path / "not_yet").exists()
    with pytest.raises(ConfigError, match="scoring.k = 100: the smallest memory bank of fan"):
        plan_workflow({**cfg, "scoring": {**cfg["scoring"], "k": 100}})


def test_supplemental_recordings_are_planned_in_the_train_part(tmp_path):
    cfg = config(tmp_path)
    sup = tmp_path / "data" / "fan" / "supplemental"
    sup.mkdir()
    for name in ("section_00_machine_source_0000_noAttribute.wav", "section_00_machine_source_0001_noAttribute.wav",
                 "section_00_noise_source_0000_noAttribute.wav", "recorded_outside.wav"):
        (sup / name).write_bytes(b"x")
    fan = plan_workflow(cfg)["fan"]
    assert sorted(p.rsplit("/", 1)[1] for p in fan.train_files if "/supplemental/" in p) == [
        "recorded_outside.wav", "section_00_machine_source_0000_noAttribute.wav",
        "section_00_machine_source_0001_noAttribute.wav", "section_00_noise_source_0000_noAttribute.wav"]
    assert [p.rsplit("/", 1)[1] for p in fan.noise_files] == ["section_00_noise_source_0000_noAttribute.wav"]
    assert len(fan.bank) == 7 and not fan.test_files or all("/supplemental/" not in p for p in fan.test_files)
    banked = plan_workflow(validate_config({**cfg, "scoring": {"bank_supplemental": True}}))["fan"]
    assert len(banked.bank) == 9  # the two machine recordings join the bank
    assert plan_workflow(validate_config({**cfg, "train": {"noise_mix": {"prob": 0.5}}}))["fan"].noise_files
    with pytest.raises(ConfigError, match=r"snr_db = \[10, 0\]: give \[low, high\]"):
        plan_workflow(validate_config({**cfg, "train": {"noise_mix": {"prob": 0.5, "snr_db": [10, 0]}}}))
    with pytest.raises(ConfigError, match="train.noise_mix.prob = 0.5, but no training machine type"):
        plan_workflow(validate_config({**cfg, "train": {"noise_mix": {"prob": 0.5}}, "score_only_machine_types": ["fan"]}))
