"""Planning refuses, before any job runs, settings and inputs the later jobs cannot honour."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REFERENCE
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
    """The reference tiny encoder's files (planning reads the config and the weights' header)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy(REFERENCE / "eat_tiny" / name, folder / name)
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


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("num_heads"), r"config.json lacks num_heads \(the attention heads per block\)"),
    (lambda c: c.pop("embed_dim"), r"config.json lacks embed_dim \(the width of the tokens\)"),
    (lambda c: c.update(embed_dim=128, num_heads=8), r"config.json does not fit model.safetensors: embed_dim 128 gives "
                                                      r"extra_tokens \[1, 1, 128\], the weights hold \[1, 1, 64\]"),
    (lambda c: c.update(depth=3), r"depth 3, the weights hold 2 block\(s\) numbered 0..1"),
    (lambda c: c.update(mlp_ratio=2.0), r"embed_dim, mlp_ratio gives blocks.0.mlp.fc1.weight \[128, 64\], the weights hold \[256, 64\]"),
    (lambda c: c.update(num_heads=5), "embed_dim 64 is not a multiple of num_heads 5"),
    (lambda c: c.update(max_length=64), r"fixed_positional_encoder.positions \[1, 512, 64\], the weights hold \[1, 256, 64\]"),
], ids=["no-num_heads", "no-embed_dim", "embed_dim", "depth", "mlp_ratio", "heads", "max_length"])
def test_encoder_config_is_checked_against_its_weights_at_planning(tmp_path, edit, message):
    """Before, a config.json without num_heads loaded with the default 12 (outputs off by 1e-3), and one without
    embed_dim failed in the training job, after every features job, with shapes that never named the key."""
    folder = make_encoder(tmp_path / "enc")
    plan_workflow(config(tmp_path / "ok", encoder=str(folder)))
    values = json.loads((folder / "config.json").read_text())
    edit(values)
    (folder / "config.json").write_text(json.dumps(values))
    with pytest.raises(ConfigError, match=rf"encoder = {folder}: .*{message}"):
        plan_workflow(config(tmp_path, encoder=str(folder)))


def test_an_encoder_config_without_an_architecture_key_does_not_load(reference, tmp_path):
    """The same check where the encoder is loaded (the CLI without the workflow)."""
    from eat_asd.eat import load_eat
    from eat_asd.errors import CheckpointError

    folder = make_encoder(tmp_path / "enc")
    values = json.loads((folder / "config.json").read_text())
    del values["num_heads"]
    (folder / "config.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match=r"config.json: lacks num_heads"):
        load_eat(folder)


def test_demo_plans_before_its_data_and_encoder_exist(tmp_path):
    cfg = validate_config({"data_root": str(tmp_path / "not_yet"), "encoder": str(tmp_path / "not_yet_either"),
                           "demo": {"seed": 0, "seconds": 2.0}, "scoring": {"domain_strategy": "min"}})
    plans = plan_workflow(cfg)
    assert list(plans) == ["fan", "gearbox", "pump"] and not (tmp_path / "not_yet").exists()
    with pytest.raises(ConfigError, match="scoring.k = 100: the smallest memory bank of fan"):
        plan_workflow({**cfg, "scoring": {**cfg["scoring"], "k": 100}})


@pytest.mark.parametrize("key", ["results", "data_root"])
@pytest.mark.parametrize("below", [False, True])
def test_a_file_where_a_folder_setting_points_is_named(tmp_path, key, below):
    """Before: results on a file ended in a traceback from the clip hash cache's write (even with -n);
    data_root on a file said "no such folder"."""
    a_file = tmp_path / "a file"
    a_file.write_text("not a folder")
    value = str(a_file / "sub" if below else a_file)
    cfg = config(tmp_path, **{key: value})
    with pytest.raises(ConfigError, match=rf"^{key} = {value}: (is a file|is below {a_file}, which is a file), not a folder"):
        plan_workflow(cfg, hash_cache=f"{cfg['results']}/.clip-hashes.json")


def test_backend_settings_are_checked_per_machine_type(tmp_path):
    # kmeans: the minimum over centres and target clips, so scoring.k does not bind it
    plan_workflow(config(tmp_path / "kmeans", scoring={"k": 2, "domain_strategy": "min", "backend": "kmeans"}))
    # knn_rescaled takes k neighbours like knn
    with pytest.raises(ConfigError, match=r"overrides.fan.scoring.k = 2: the smallest memory bank of fan"):
        plan_workflow(config(tmp_path / "rescaled", scoring={"domain_strategy": "min"},
                             overrides={"fan": {"scoring": {"backend": "knn_rescaled", "k": 2}}}))
    with pytest.raises(ConfigError, match=r"overrides.pump.scoring: smote_ratio = 0.2 .* backend = kmeans"):
        plan_workflow(config(tmp_path / "smote", scoring={"smote_ratio": 0.2},
                             overrides={"pump": {"scoring": {"backend": "kmeans"}}}))
    plan_workflow(config(tmp_path / "ok", scoring={"smote_ratio": 0.2, "domain_strategy": "min"},
                         overrides={"pump": {"scoring": {"backend": "kmeans", "smote_ratio": 0}}}))


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


def test_a_per_machine_pooling_other_than_the_trained_one_is_refused(tmp_path):
    """Before, overrides.<m>.embedding.pooling let a bank use a pooling the classifier never trained on
    (and with bank_split all, cls+mean failed in the score job)."""
    with pytest.raises(ConfigError, match=r"overrides.pump.embedding.pooling = 'mean': the shared encoder's classifier"):
        plan_workflow(config(tmp_path / "a", overrides={"pump": {"embedding": {"pooling": "mean"}}}))
    plan_workflow(config(tmp_path / "b", embedding={"pooling": "mean"}, overrides={"pump": {"embedding": {"pooling": "mean"}}}))


def test_a_dry_run_plan_writes_no_hash_cache(tmp_path):
    """Before, `snakemake -n` wrote results/.clip-hashes.json: planning saved the cache of clip hashes it read."""
    cfg = config(tmp_path, results=str(tmp_path / "results"))
    cache = tmp_path / "results" / ".clip-hashes.json"
    dry = plan_workflow(cfg, hash_cache=cache, save_hash_cache=False)
    assert not cache.exists() and not (tmp_path / "results").exists()
    real = plan_workflow(cfg, hash_cache=cache)
    assert cache.is_file() and {m: p.content for m, p in dry.items()} == {m: p.content for m, p in real.items()}


@pytest.mark.parametrize("override, key", [
    ({"ground_truth": "/no/such/gt"}, "ground_truth: /no/such/gt needs the folders"),
    ({"scoring": {"k": "abc"}}, "scoring.k"),
    ({"finetune": {"mode": "qlora"}}, "finetune.mode"),
    ({"demo": False, "data_root": "/no/such/folder"}, "/no/such/folder"),
    ({"machine_types": ["fan", "drill"]}, "drill"),
    ({"encoder_revision": "v1"}, "encoder_revision = 'v1' applies to Hub ids only"),
    ({"overrides": {"fann": {"scoring": {"k": 2}}}}, "overrides.fann: no such machine type"),
    ({"demo": False, "data_root": "results", "encoder": "no_such_encoder"}, "encoder = no_such_encoder: no such folder"),
    ({"demo": False, "data_root": "config.yaml"}, "data_root = config.yaml: is a file, not a folder"),
])
def test_the_workflows_small_demo_config_with_a_bad_setting_is_refused_at_planning(tmp_path, monkeypatch, override, key):
    """What the Snakefile runs before any job (validate_config, then plan_workflow), in-process; the
    Snakemake side of it is test_workflow.py's test_bad_config_stops_before_any_job."""
    import yaml

    from eat_asd.errors import EatAsdError
    from workflow_helpers import SMALL_DEMO

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(SMALL_DEMO))
    (tmp_path / "results").mkdir()
    assert set(plan_workflow(validate_config(dict(SMALL_DEMO)))) == {"fan", "gearbox", "pump"}  # the demo itself plans
    with pytest.raises(EatAsdError, match=re.escape(key)):
        plan_workflow(validate_config({**SMALL_DEMO, **override}), hash_cache="results/.clip-hashes.json",
                      save_hash_cache=False)
