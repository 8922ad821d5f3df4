"""The experiments grid: variants as overlays, jobs shared by key, fuse definitions checked while planning."""

import numpy as np
import pandas as pd
import pytest

from eat_asd.config import validate_config
from eat_asd.errors import ConfigError
from eat_asd.experiments import overlay, plan_experiments

MACHINES = ["fan", "gearbox", "pump"]


def grid(variants, seeds=(0, 1), reference="base", **config):
    raw = {"data_root": "data", "experiments": {"seeds": list(seeds), "reference": reference, "variants": variants}, **config}
    return plan_experiments(validate_config(raw), MACHINES, MACHINES)


def jobs(g, variant, seed, machine):
    """(training, embedding, scoring) keys of one run and machine type."""
    kind, key = g.scores[(variant, seed, machine)]
    assert kind == "score"
    scoring = g.scorings[key]
    return g.embeddings[scoring.embedding].training, scoring.embedding, key


def test_a_scoring_only_variant_shares_training_and_embedding():
    g = grid({"base": {}, "k3": {"scoring": {"k": 3}}})
    for seed in (0, 1):
        for m in MACHINES:
            base, k3 = jobs(g, "base", seed, m), jobs(g, "k3", seed, m)
            assert base[:2] == k3[:2] and base[2] != k3[2]
    assert len(g.trainings) == 2 and len(g.embeddings) == 6 and len(g.scorings) == 12


def test_a_training_variant_and_a_new_seed_add_only_their_own_jobs():
    before = grid({"base": {}})
    after = grid({"base": {}, "arc": {"train": {"loss": "arcface"}}}, seeds=(0, 1, 2))
    assert set(before.trainings) < set(after.trainings)
    assert set(before.scorings) < set(after.scorings)
    assert len(after.trainings) == 6  # 2 variants x 3 seeds
    # the seed reaches training, and nothing else differs between seeds
    assert {t.settings["seed"] for t in after.trainings.values()} == {0, 1, 2}


def test_one_machines_override_changes_only_that_machines_jobs():
    g = grid({"base": {}, "fan_k3": {"overrides": {"fan": {"scoring": {"k": 3}}}}})
    assert jobs(g, "base", 0, "fan")[2] != jobs(g, "fan_k3", 0, "fan")[2]
    for m in ("gearbox", "pump"):
        assert jobs(g, "base", 0, m) == jobs(g, "fan_k3", 0, m)


def test_a_global_bank_scoring_names_the_other_machines_embeddings():
    g = grid({"base": {"scoring": {"bank_split": "all"}}})
    _, embedding, key = jobs(g, "base", 0, "fan")
    others = {g.embeddings[k].machine for k in g.scorings[key].bank_embeddings}
    assert others == {"gearbox", "pump"}


def test_variants_are_validated_like_the_config():
    with pytest.raises(ConfigError, match=r"experiments\.variants\.bad: train\.loss"):
        grid({"base": {}, "bad": {"train": {"loss": "nope"}}})
    with pytest.raises(ConfigError, match="reference"):
        grid({"base": {}}, reference="missing")


def test_fuse_members_must_exist_and_not_form_a_cycle():
    with pytest.raises(ConfigError, match=r"variants\.f\.fuse: member 'ghost'"):
        grid({"base": {}, "f": {"fuse": ["base", "ghost"]}})
    with pytest.raises(ConfigError, match="cycle"):
        grid({"base": {}, "a": {"fuse": ["base", "b"]}, "b": {"fuse": ["a"]}})
    with pytest.raises(ConfigError, match="takes only `fuse`"):
        grid({"base": {}, "f": {"fuse": ["base"], "scoring": {"k": 2}}})


def test_fuse_of_fuses_follows_its_members():
    g = grid({"base": {}, "k2": {"scoring": {"k": 2}}, "f": {"fuse": ["base", "k2"]}, "ff": {"fuse": ["f", "base"]}})
    kind, key = g.scores[("ff", 0, "fan")]
    assert kind == "fuse" and g.fusions[key].members == (g.scores[("f", 0, "fan")], g.scores[("base", 0, "fan")])


def test_overlay_merges_mappings_and_replaces_the_rest():
    base = {"train": {"loss": "softmax", "lr": 1.0}, "lora": {"target_modules": ["qkv", "proj"]}}
    out = overlay(base, {"train": {"lr": 2.0}, "lora": {"target_modules": ["qkv"]}})
    assert out == {"train": {"loss": "softmax", "lr": 2.0}, "lora": {"target_modules": ["qkv"]}}
    assert base["train"]["lr"] == 1.0


# ----------------------------------------------------------------------------- fusion


def member(rng, n_train=12, scale=1.0):
    sections = np.array(["00"] * (n_train // 2) + ["01"] * (n_train - n_train // 2))
    train = rng.gamma(4, 0.05, n_train) * scale
    rows = [dict(filename=f"section_{s}_source_test_{lab}_{i:04d}.wav", machine="fan", section=s, domain="source",
                 label=lab, attribute_string="", score=float(rng.gamma(4, 0.05) * scale * (2 if lab == "anomaly" else 1)),
                 decision=0)
            for s in ("00", "01") for lab in ("normal", "anomaly") for i in range(8)]
    return pd.DataFrame(rows), {"machine": "fan", "train_scores": train.tolist(), "train_sections": sections.tolist()}


def test_fuse_of_one_member_keeps_its_section_aucs():
    from eat_asd.fusion import fuse
    from eat_asd.metrics import dcase_metrics

    table, info = member(np.random.default_rng(0))
    fused, threshold, _ = fuse([(table, info)], 0.9)
    a = dcase_metrics(table)[0].set_index("section")
    b = dcase_metrics(fused)[0].set_index("section")
    pd.testing.assert_frame_equal(a[["AUC (source)", "pAUC"]], b[["AUC (source)", "pAUC"]])
    assert threshold > 0


def test_fuse_normalises_each_member_by_its_sections_mean_training_score():
    from eat_asd.fusion import fuse

    rng = np.random.default_rng(1)
    a, info_a = member(rng)
    b, info_b = member(rng, scale=100.0)
    b["filename"], info_b["train_sections"] = a["filename"], info_a["train_sections"]
    fused, _, fused_train = fuse([(a, info_a), (b, info_b)], 0.9)
    sections = np.array(info_a["train_sections"])
    for s in ("00", "01"):
        mean_a = np.mean(np.array(info_a["train_scores"])[sections == s])
        mean_b = np.mean(np.array(info_b["train_scores"])[sections == s])
        rows = a["section"] == s
        expected = (a.loc[rows, "score"] / mean_a + b.loc[rows, "score"] / mean_b) / 2
        got = fused.set_index("filename").loc[a.loc[rows, "filename"], "score"].to_numpy()
        np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-12)
        assert np.mean(fused_train[sections == s]) == pytest.approx(1.0)


def test_the_demo_grid_overlay_plans():
    """config/experiments_demo.yaml on top of the demo config, merged as Snakemake merges config files."""
    from conftest import overlaid_config

    config = overlaid_config("config.yaml", "demo.yaml", "experiments_demo.yaml")
    g = plan_experiments(validate_config(config), MACHINES, MACHINES)
    assert g.variants == ["base", "k3", "fused"] and len(g.seeds) == 3
    assert len(g.trainings) == 3  # k3 differs from base in scoring only


def test_the_precision_grid_trains_each_seed_in_both_precisions():
    from conftest import overlaid_config

    config = overlaid_config("config.yaml", "demo.yaml", "experiments_precision.yaml")
    g = plan_experiments(validate_config(config), MACHINES, MACHINES)
    assert len(g.seeds) >= 5 and g.reference == "base"
    precisions = sorted(t.settings["precision"] for t in g.trainings.values())
    assert precisions == ["auto"] * len(g.seeds) + ["bfloat16"] * len(g.seeds)
