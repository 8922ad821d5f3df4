import pytest

from eat_asd.config import ConfigError, load_config, machine_settings, train_values, validate_config


def train_settings(config):
    from eat_asd.train import TrainSettings

    return TrainSettings(**train_values(config))


def score_settings(config, machine):
    from eat_asd.scoring import ScoreSettings

    return ScoreSettings(**machine_settings(config, machine, "scoring"))


def embed_settings(config, machine):
    from eat_asd.embed import EmbedSettings

    return EmbedSettings(**machine_settings(config, machine, "embedding"))


def test_defaults_filled_and_settings_built():
    cfg = validate_config({"data_root": "x"})
    assert cfg["encoder"] == "worstchan/EAT-base_epoch30_pretrain" and cfg["finetune"]["mode"] == "lora"
    t = train_settings(cfg)
    assert (t.r, t.alpha, t.dropout, t.target_modules) == (8, 32, 0.1, ("qkv", "proj"))
    assert score_settings(cfg, "fan").k == 1 and embed_settings(cfg, "fan").pooling == "cls"


def test_per_machine_overrides():
    cfg = validate_config({"data_root": "x", "scoring": {"k": 2}, "overrides": {"fan": {"scoring": {"k": 5}}}})
    assert score_settings(cfg, "fan").k == 5 and score_settings(cfg, "pump").k == 2


@pytest.mark.parametrize("config, key", [
    ({"data_root": "x", "scorng": {}}, "unknown key"),
    ({"data_root": "x", "scoring": {"k": "three"}}, "scoring.k"),
    ({"data_root": "x", "scoring": {"kk": 3}}, "scoring"),
    ({"data_root": "x", "finetune": {"mode": "qlora"}}, "finetune.mode"),
    ({"data_root": "x", "features": {"target_frames": 1000}}, "features.target_frames"),
    ({}, "data_root"),
    ({"data_root": "x", "machine_types": ["fan"], "overrides": {"pump": {"scoring": {"k": 2}}}}, "overrides.pump"),
])
def test_bad_config_names_the_key(config, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config)


def test_load_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "c.yaml").write_text("data_root: d\ntrain:\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.epochs"):
        load_config(tmp_path / "c.yaml")


def test_strings_from_the_command_line_are_coerced():
    # snakemake --config hands nested values over as strings
    cfg = validate_config({"data_root": "x", "demo": "null", "scoring": {"k": "3", "threshold_quantile": "0.8"},
                           "train": {"max_steps": "null", "epochs": "2"}, "overrides": {"fan": {"scoring": {"k": "5"}}},
                           "lora": {"blocks": ["10", "11"]}})
    assert cfg["demo"] is None and cfg["scoring"]["k"] == 3 and cfg["scoring"]["threshold_quantile"] == 0.8
    assert cfg["train"]["max_steps"] is None and cfg["train"]["epochs"] == 2
    assert cfg["overrides"]["fan"]["scoring"]["k"] == 5 and cfg["lora"]["blocks"] == [10, 11]
    with pytest.raises(ConfigError, match="scoring.k"):
        validate_config({"data_root": "x", "scoring": {"k": "abc"}})


def test_classifier_pooling_schedule_and_revision_from_config():
    cfg = validate_config({"data_root": "x", "embedding": {"pooling": "mean"}, "train": {"lr_schedule": "constant"},
                           "encoder_revision": "v1.0"})
    t = train_settings(cfg)
    assert t.pooling == "mean" and t.lr_schedule == "constant" and cfg["encoder_revision"] == "v1.0"
    assert validate_config({"data_root": "x"})["encoder_revision"] is None
    with pytest.raises(ConfigError, match=r"train\.lr_schedule"):
        validate_config({"data_root": "x", "train": {"lr_schedule": "linear"}})


def test_seed_recipe_overlay_gives_the_seeds_settings():
    """config/recipes/seed_recipe.yaml on top of config/config.yaml, merged the way Snakemake merges config files."""
    from conftest import overlaid_config

    cfg = validate_config(overlaid_config("config.yaml", "recipes/seed_recipe.yaml"))
    t = train_settings(cfg)
    assert (t.granularity, t.epochs, t.lr, t.lr_schedule, t.warmup_fraction, t.batch_size, t.pooling, t.mode) == \
        ("machine", 1, 1e-4, "constant", 0.0, 16, "cls", "lora")
    s = score_settings(cfg, "fan")
    assert (s.k, s.bank_split, s.domain_strategy) == (1, "all", "pooled")
    assert cfg["features"]["target_frames"] == 1024 and embed_settings(cfg, "fan").pooling == "cls"


def test_dcase_toolkit_recipe_overlay_gives_the_published_settings():
    from conftest import overlaid_config

    cfg = validate_config(overlaid_config("config.yaml", "recipes/dcase_toolkit_eat_lora.yaml"))
    t = train_settings(cfg)
    assert (t.mode, t.loss, t.subclusters, t.trainable_centres, t.mixup_prob, t.epochs, t.batch_size, t.lr) == \
        ("lora", "subcluster_adacos", 16, True, 0.5, 25, 8, 1e-4)
    s = score_settings(cfg, "fan")
    assert (s.backend, s.k, s.domain_strategy, s.smote_ratio, s.smote_neighbours) == ("knn", 1, "min", 0.2, 2)


def test_settings_take_their_defaults_and_ranges_from_the_schema():
    from eat_asd.config import section_schema
    from eat_asd.features import FeatureSettings
    from eat_asd.scoring import ScoreSettings

    for cls, section in ((ScoreSettings, "scoring"), (FeatureSettings, "features")):
        props = section_schema(section)["properties"]
        assert {k: getattr(cls(), k) for k in cls.__annotations__} == {k: props[k]["default"] for k in cls.__annotations__}
    with pytest.raises(ConfigError, match="scoring.k: 0 is less than the minimum of 1"):
        ScoreSettings(k=0)
    with pytest.raises(ConfigError, match="scoring.bank_split: 'everything' is not one of"):
        ScoreSettings(bank_split="everything")
    with pytest.raises(ConfigError, match="features.target_frames: 100 is not a multiple of 16"):
        FeatureSettings(target_frames=100)


def test_overrides_share_the_global_definitions_but_not_their_defaults():

    config = validate_config({"data_root": ".", "overrides": {"fan": {"scoring": {"k": "3"}}}})
    assert config["overrides"]["fan"] == {"scoring": {"k": 3}}  # coerced, nothing filled in
    assert config["scoring"]["k"] == 1
    with pytest.raises(ConfigError, match="overrides.fan.scoring.k"):
        validate_config({"data_root": ".", "overrides": {"fan": {"scoring": {"k": 0}}}})


def test_every_schema_key_has_a_description():
    """The README sends readers to the schema for every key's meaning; about 35 keys had none."""
    from eat_asd.config import _resolve, _schema

    schema = _schema()
    undescribed = []

    def walk(prefix, node):
        node = _resolve(node, schema)
        for branch in [b for b in node.get("oneOf", []) if b.get("type") == "object"] or [node]:
            for key, sub in branch.get("properties", {}).items():
                target = _resolve(sub, schema)
                if not (sub.get("description") or target.get("description", "")).strip():
                    undescribed.append(prefix + key)
                if ("properties" in target or isinstance(target.get("additionalProperties"), dict)
                        or any("properties" in b for b in target.get("oneOf", []))):
                    walk(f"{prefix}{key}.", target)
            extra = branch.get("additionalProperties")
            if isinstance(extra, dict):
                walk(f"{prefix}<name>.", extra)

    walk("", schema)
    assert not undescribed, f"schema keys without a description: {undescribed}"


def test_lists_the_code_keeps_beside_the_schema_are_the_schema_s():
    """eat.py stays self-contained (it is exported as the model's code), and data.py names what it parses:
    their lists are bound to the schema here."""
    from eat_asd.audio import MEL_BINS
    from eat_asd.config import section_schema
    from eat_asd.data import GRANULARITIES
    from eat_asd.eat import POOLINGS, EATConfig

    enum = lambda section, key: section_schema(section)["properties"][key]["enum"]  # noqa: E731
    assert tuple(enum("embedding", "pooling")) == POOLINGS
    assert tuple(enum("train", "granularity")) == ("auto", *GRANULARITIES)
    assert EATConfig().mel_bins == MEL_BINS == 128  # EAT's input: 128-bin Kaldi fbank
