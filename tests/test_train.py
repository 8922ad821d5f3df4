import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import eat_asd.train as train_mod
from eat_asd.data import discover
from eat_asd.demo import DemoSizes, make_demo_data
from eat_asd.eat import EAT, EATConfig, load_eat, save_eat
from eat_asd.features import FeatureFile, FeatureSettings, StaleFeaturesError, build_feature_file
from helpers import compute_features
from eat_asd.stages import feature_clips
from eat_asd.train import TrainingError, TrainSettings, load_training_data, lora_targets, prepare_encoder, train_encoder

FS = FeatureSettings(target_frames=64)
TINY = EATConfig(embed_dim=32, depth=2, num_heads=4, max_length=8)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Tiny demo data (0.6 s clips), its feature files and a tiny random encoder."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root / "data", seed=0, sizes=DemoSizes(seconds=0.6, train_source=12, train_target=4, test_per_cell=2))
    manifest = discover(root / "data")
    paths, manifests = [], []
    for machine, g in manifest.groupby("machine"):
        clips = feature_clips(g)
        path = root / "features" / f"{machine}.safetensors"
        build_feature_file(clips["path"].tolist(), clips["key"].tolist(), FS, path)
        paths.append(path)
        manifests.append(g)
    torch.manual_seed(0)
    save_eat(EAT(TINY), root / "encoder")
    return dict(root=root, manifest=manifest, paths=paths, manifests=manifests, encoder=root / "encoder")


def data_for(demo, granularity="auto"):
    return load_training_data(demo["paths"], demo["manifests"], FS, granularity)


def test_feature_file_equals_direct_compute_and_detects_staleness(demo, tmp_path):
    ff = FeatureFile(demo["paths"][0], FS)
    clips = feature_clips(demo["manifests"][0])
    rows = ff.rows(clips["key"].tolist()[:3])
    direct = compute_features(clips["path"].tolist()[:3], FS)
    assert torch.equal(ff.read(rows), direct) and torch.equal(ff.read(rows[[2, 0]]), direct[[2, 0]])
    with pytest.raises(StaleFeaturesError, match="computed with"):
        FeatureFile(demo["paths"][0], FeatureSettings(target_frames=128))
    ff.check_hashes(clips["path"].tolist(), clips["key"].tolist())
    wrong = clips["path"].tolist()
    wrong[0], wrong[1] = wrong[1], wrong[0]
    with pytest.raises(StaleFeaturesError, match="changed since"):
        ff.check_hashes(wrong, clips["key"].tolist())


def test_training_data_uses_only_training_normals(demo):
    data = data_for(demo)
    assert len(data.clips) == len(demo["manifest"].query("split == 'train' and label == 'normal'"))
    assert (data.clips["split"] == "train").all() and data.granularity == "attribute" and len(data.classes) == 9


def test_lora_trainable_parameters_match_the_formula(demo):
    data = data_for(demo)
    model = train_mod.AuxClassifier(prepare_encoder(load_eat(demo["encoder"]), TrainSettings()),
                                    train_mod.make_head(TrainSettings(), 32, len(data.classes)))
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    r, d, c, depth = 8, 32, len(data.classes), 2
    # per block: qkv A (r x d) + B (3d x r), proj A (r x d) + B (d x r); head: d x c weights + c biases
    assert sum(trainable.values()) == depth * (r * d + 3 * d * r + r * d + d * r) + d * c + c
    adapters = {n for n in trainable if "lora_" in n}
    assert len(adapters) == depth * 2 * 2 and all(".attn.qkv." in n or ".attn.proj." in n for n in adapters)
    assert set(trainable) - adapters == {"head.linear.weight", "head.linear.bias"}


def test_lora_blocks_and_target_errors(demo):
    enc = load_eat(demo["encoder"])
    top = prepare_encoder(enc, TrainSettings(blocks=(1,)))
    names = [n for n, p in top.named_parameters() if p.requires_grad]
    assert names and all(".blocks.1." in n for n in names)
    with pytest.raises(TrainingError, match="matches no layer"):
        lora_targets(load_eat(demo["encoder"]), TrainSettings(target_modules=("query",)))
    with pytest.raises(TrainingError, match=r"non-Linear layers: patch_embed.conv \(Conv2d\)"):
        lora_targets(load_eat(demo["encoder"]), TrainSettings(target_modules=("conv", "qkv")))
    full = prepare_encoder(load_eat(demo["encoder"]), TrainSettings(mode="full"))
    assert all(p.requires_grad for p in full.parameters())


def run(demo, out, **kw):
    settings = TrainSettings(**{**dict(epochs=3, batch_size=8, lr=3e-3, seed=0), **kw})
    return train_encoder(demo["encoder"], data_for(demo), settings, out, device="cpu")


def test_training_learns_and_writes_outputs(demo, tmp_path):
    summary = run(demo, tmp_path, epochs=12)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert len(log) == 12 and log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    assert summary["val_acc"] > 1.5 / summary["classes"]  # chance is 1 / classes
    assert summary["best_epoch"] == int(log["val_loss"].idxmin()) + 1
    assert summary["trainable_parameters"] == 2 * 6 * 8 * 32 + 32 * 9 + 9
    assert (tmp_path / "lora_adapter" / "adapter_config.json").is_file()
    assert json.loads(load_file_meta(tmp_path / "head.safetensors")["classes"])[0] == "fan|00|vel=10"
    assert not (tmp_path / "checkpoint").exists()
    merged = load_eat(tmp_path / "encoder")
    assert not torch.equal(merged.blocks[0].attn.qkv.weight, load_eat(demo["encoder"]).blocks[0].attn.qkv.weight)


def load_file_meta(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_merged_encoder_equals_peft_model(demo):
    settings = TrainSettings()
    peft_model = prepare_encoder(load_eat(demo["encoder"]), settings)
    torch.manual_seed(1)
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)  # a trained adapter: non-zero B
    peft_model.eval()
    x = torch.randn(3, 1, 64, 128)
    with torch.no_grad():
        wrapped = peft_model(x)
        merged = train_mod.merged_encoder(peft_model)(x)
    assert isinstance(train_mod.merged_encoder(peft_model), EAT)
    assert (wrapped - merged).abs().max() < 1e-5 and (wrapped - load_eat(demo["encoder"])(x)).abs().max() > 1e-3


def test_same_seed_same_weights_and_resume_equals_uninterrupted(demo, tmp_path, monkeypatch):
    run(demo, tmp_path / "a")
    run(demo, tmp_path / "b")
    a = load_file(str(tmp_path / "a" / "encoder" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "encoder" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    real = train_mod._checkpoint

    def interrupt_after_epoch_2(path, settings, data, model, optimizer, scheduler, state, origin):
        real(path, settings, data, model, optimizer, scheduler, state, origin)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_checkpoint", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(demo, tmp_path / "c")
    assert (tmp_path / "c" / "checkpoint" / "last.pt").is_file()
    monkeypatch.setattr(train_mod, "_checkpoint", real)
    summary = run(demo, tmp_path / "c")
    c = load_file(str(tmp_path / "c" / "encoder" / "model.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert len(pd.read_csv(tmp_path / "c" / "train_log.csv")) == 3 and summary["best_epoch"] >= 1


def test_frozen_mode_writes_the_pretrained_encoder(demo, tmp_path):
    summary = run(demo, tmp_path, mode="frozen")
    assert summary["trainable_parameters"] == 0
    x = torch.randn(1, 1, 64, 128)
    with torch.no_grad():
        assert torch.equal(load_eat(tmp_path / "encoder")(x), load_eat(demo["encoder"])(x))


def test_arcface_and_augmentations_run(demo, tmp_path):
    summary = run(demo, tmp_path, epochs=2, loss="arcface", crop_frames=32, time_masks=2, freq_masks=2, grad_accum=2)
    assert np.isfinite(summary["val_loss"])
    gen = torch.Generator().manual_seed(0)
    x = train_mod.augment(torch.ones(4, 64, 128), TrainSettings(crop_frames=32, time_masks=1, freq_masks=1, time_mask_frames=8), gen)
    assert x.shape == (4, 32, 128) and (x == 0).any()


def test_training_errors(demo, tmp_path):
    one_machine = [m[m["machine"] == "fan"] for m in demo["manifests"][:1]]
    with pytest.raises(TrainingError, match="at least 2 classes"):
        load_training_data(demo["paths"][:1], one_machine, FS, "machine")
    test_only = [m[m["split"] == "test"] for m in demo["manifests"]]
    with pytest.raises(TrainingError, match="no normal training clips"):
        load_training_data(demo["paths"], test_only, FS, "auto")
    with pytest.raises(TrainingError, match="no_encoder_here"):
        train_encoder(tmp_path / "no_encoder_here", data_for(demo), TrainSettings(), tmp_path / "out", device="cpu")


def test_classifier_trains_on_the_pooling_the_banks_use(demo, tmp_path):
    data = data_for(demo)
    encoder = load_eat(demo["encoder"])
    head = train_mod.make_head(TrainSettings(), 32, len(data.classes))
    x = torch.randn(2, 1, 64, 128)
    with torch.no_grad():
        tokens = encoder(x)
        assert torch.allclose(train_mod.AuxClassifier(encoder, head, "mean")(x), head(tokens[:, 1:].mean(1)), atol=1e-6)
        assert torch.allclose(train_mod.AuxClassifier(encoder, head)(x), head(tokens[:, 0]), atol=1e-6)
    summary = run(demo, tmp_path, epochs=1, pooling="cls+mean")
    assert summary["pooling"] == "cls+mean" and summary["settings"]["pooling"] == "cls+mean"
    head_state = load_file(str(tmp_path / "head.safetensors"))
    assert head_state["linear.weight"].shape == (len(data.classes), 64)  # CLS and patch mean: 2 x 32
    assert load_file_meta(tmp_path / "head.safetensors")["pooling"] == "cls+mean"
    with pytest.raises(ValueError, match="embedding.pooling: 'max' is not one of"):
        TrainSettings(pooling="max")


def test_constant_learning_rate_without_warmup(demo, tmp_path):
    f = train_mod.lr_lambda(100, 0.0, "constant")
    assert [f(s) for s in (0, 1, 50, 99)] == [1.0] * 4
    warm = train_mod.lr_lambda(100, 0.1, "constant")
    assert warm(0) == pytest.approx(0.1) and warm(10) == warm(99) == 1.0
    cosine = train_mod.lr_lambda(100, 0.0)
    assert cosine(0) == 1.0 and cosine(99) < 0.01
    run(demo, tmp_path, epochs=2, lr=1e-4, lr_schedule="constant", warmup_fraction=0.0)
    assert pd.read_csv(tmp_path / "train_log.csv")["lr"].tolist() == [1e-4, 1e-4]
    with pytest.raises(ValueError, match="train.lr_schedule"):
        TrainSettings(lr_schedule="linear")


def test_lora_adapter_names_its_base_and_loads_with_peft_alone(demo, tmp_path):
    """peft attaches the adapter to AutoModel.from_pretrained(base_model_name_or_path) by its own key
    names; the result equals the merged encoder."""
    from peft import PeftModel
    from transformers import AutoModel

    import eat_asd.hf_modeling  # noqa: F401  (the demo encoder's config.json has no auto_map)

    run(demo, tmp_path, epochs=2, blocks=(1,))
    adapter = tmp_path / "lora_adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    # a local base is named by its folder's name: its absolute path was in the adapter, which publish uploads
    assert config["base_model_name_or_path"] == demo["encoder"].name and config["revision"] is None
    assert not any(str(demo["encoder"].resolve().parent) in p.read_text(errors="replace") for p in adapter.iterdir())
    assert sorted(config["target_modules"]) == ["model.blocks.1.attn.proj", "model.blocks.1.attn.qkv"]
    card = (adapter / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: peft" in card and "base_model" not in card
    assert f"a local EAT encoder folder `{demo['encoder'].name}`" in card
    base = AutoModel.from_pretrained(demo["encoder"]).eval()
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    x = torch.randn(2, 1, 64, 128)
    with torch.no_grad():
        adapted = model(x).last_hidden_state
        merged = load_eat(tmp_path / "encoder")(x)
        plain = load_eat(demo["encoder"])(x)
    assert (adapted - merged).abs().max() < 1e-5 and (merged - plain).abs().max() > 1e-4
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["encoder_revision"] is None and summary["encoder_commit"] is None
    assert summary["encoder_local_path"] == str(demo["encoder"].resolve()) and summary["encoder_hub_id"] is None


@pytest.mark.parametrize("umask", [0o002, 0o022])
def test_every_output_gets_the_mode_the_umask_gives(demo, tmp_path, monkeypatch, umask):
    """safetensors replaces its file itself, privately (0600): features, encoder, head and
    adapter were unreadable for the group whatever the umask."""
    real = train_mod._checkpoint
    checkpoint_modes = []

    def record(path, *args):
        real(path, *args)
        checkpoint_modes.append(oct(path.stat().st_mode & 0o777))

    monkeypatch.setattr(train_mod, "_checkpoint", record)
    clips = feature_clips(demo["manifests"][0])
    old = os.umask(umask)
    try:
        build_feature_file(clips["path"].tolist()[:2], clips["key"].tolist()[:2], FS, tmp_path / "features.safetensors")
        run(demo, tmp_path / "trained", epochs=1)
    finally:
        os.umask(old)
    files = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*") if p.is_file()}
    folders = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*") if p.is_dir()}
    for name in ("features.safetensors", "trained/encoder/model.safetensors", "trained/encoder/config.json",
                 "trained/head.safetensors", "trained/lora_adapter/adapter_model.safetensors",
                 "trained/lora_adapter/adapter_config.json", "trained/train_log.csv", "trained/summary.json"):
        assert name in files
    assert set(files.values()) == {oct(0o666 & ~umask)}, files
    assert set(folders.values()) == {oct(0o777 & ~umask)}, folders
    assert checkpoint_modes == [oct(0o666 & ~umask)]


def with_nan_features(demo, folder, key):
    """Copies of the demo's feature files with one value of clip `key` set to NaN."""
    from safetensors.torch import save_file

    folder.mkdir()
    paths = [folder / p.name for p in demo["paths"]]
    for src, dst in zip(demo["paths"], paths):
        ff = FeatureFile(src)
        feats = ff.read(np.arange(len(ff)))
        if key in ff.keys:
            feats[ff.rows([key])[0], 3, 5] = float("nan")
        save_file({"features": feats.contiguous()}, str(dst), metadata=ff.metadata)
    return paths


def test_non_finite_loss_stops_training_naming_the_clips(demo, tmp_path, monkeypatch):
    """Before, a NaN loss ran to the end and crashed with a TypeError (no best epoch was ever kept),
    or, without validation clips, wrote an encoder of NaN weights."""
    first = demo["manifests"][0].query("split == 'train' and label == 'normal'").iloc[0]
    paths = with_nan_features(demo, tmp_path / "train_nan", first["key"])
    data = load_training_data(paths, demo["manifests"], FS, "auto")
    settings = TrainSettings(epochs=2, batch_size=64, lr=3e-3, val_fraction=0.0)
    with pytest.raises(TrainingError, match=r"epoch 1, batch 1: the training loss is nan; the features of 1 clip\(s\) "
                                            r"are not finite, e.g. .*" + first["filename"]) as err:
        train_encoder(demo["encoder"], data, settings, tmp_path / "out", device="cpu")
    assert str(paths[0]) in str(err.value)

    data = data_for(demo)
    _, va_idx = train_mod.train_val_split(data.clips["aux_label"], 0.1, 0)
    held_out = data.clips.iloc[va_idx[0]]
    paths = with_nan_features(demo, tmp_path / "val_nan", held_out["key"])
    data = load_training_data(paths, demo["manifests"], FS, "auto")
    with pytest.raises(TrainingError, match=r"epoch 1: the validation loss is nan; the features of 1 clip\(s\) "
                                            r"are not finite, e.g. .*" + held_out["filename"]):
        train_encoder(demo["encoder"], data, TrainSettings(epochs=2, batch_size=8, lr=3e-3), tmp_path / "out2", device="cpu")

    real = train_mod.F.cross_entropy
    monkeypatch.setattr(train_mod.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("inf"))
    with pytest.raises(TrainingError, match=r"the training loss is inf; training diverged: lower train.lr \(now 0.003\)"):
        run(demo, tmp_path / "diverged")


def test_auto_precision_trains_in_float32_on_bf16_cpus(demo, tmp_path, monkeypatch):
    from eat_asd import runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: True)
    runs = {p: run(demo, tmp_path / p, epochs=1, max_steps=2, precision=p) for p in ("auto", "float32", "bfloat16")}
    head = {p: load_file(str(tmp_path / p / "head.safetensors")) for p in runs}
    assert all(torch.equal(head["auto"][k], head["float32"][k]) for k in head["auto"])
    assert not all(torch.equal(head["auto"][k], head["bfloat16"][k]) for k in head["auto"])


@pytest.mark.parametrize("loss", ["adacos", "subcluster_adacos"])
def test_adacos_losses_with_mixup_train(demo, tmp_path, loss):
    summary = run(demo, tmp_path / "mixed", epochs=2, loss=loss, subclusters=3, mixup_prob=1.0, mixup_alpha=0.4)
    assert np.isfinite(summary["val_loss"]) and np.isfinite(summary["train_loss"])
    head = load_file(str(tmp_path / "mixed" / "head.safetensors"))
    n_classes = summary["classes"]
    assert next(iter(head.values())).shape[0] == n_classes * (3 if loss == "subcluster_adacos" else 1)
    # the same run without mixup trains on other inputs: mixup_prob acts
    plain = run(demo, tmp_path / "plain", epochs=2, loss=loss, subclusters=3)
    assert plain["train_loss"] != summary["train_loss"]


def test_fixed_subcluster_centres_stay_at_their_start(demo, tmp_path):
    centres = {}
    for trainable, lr in [(True, 0.1), (False, 0.1), (False, 0.001)]:
        out = tmp_path / f"{trainable}-{lr}"
        run(demo, out, epochs=1, max_steps=2, lr=lr, loss="subcluster_adacos", subclusters=2, trainable_centres=trainable)
        centres[trainable, lr] = load_file(str(out / "head.safetensors"))["centres"]
    # every run draws the same random start: fixed centres keep it whatever the learning rate,
    # trainable ones move away from it
    assert torch.equal(centres[False, 0.1], centres[False, 0.001])
    assert not torch.equal(centres[True, 0.1], centres[False, 0.1])


def without_attributes(demo, machine):
    """The demo's manifests with the attributes of `machine` removed (as a noAttribute section would have)."""
    out = []
    for m in demo["manifests"]:
        m = m.copy()
        m.loc[m["machine"] == machine, "attributes"] = "{}"
        out.append(m)
    return out


def test_pseudo_labels_cluster_sections_without_attributes(demo):
    from sklearn.cluster import KMeans

    from eat_asd.pseudo_labels import assign_pseudo_labels

    encoder = load_eat(demo["encoder"])
    data = load_training_data(demo["paths"], without_attributes(demo, "fan"), FS, "auto")
    before = data.clips["aux_label"].copy()
    sizes = assign_pseudo_labels(data, encoder, 3, seed=0, pooling="cls")
    fan = (data.clips["machine"] == "fan").to_numpy()
    assert list(sizes) == ["fan|00"] and sum(sizes["fan|00"]) == fan.sum() and len(sizes["fan|00"]) == 3
    # sections with attributes keep their labels
    assert data.clips["aux_label"][~fan].tolist() == before[~fan].tolist()
    assert set(data.clips["aux_label"][fan]) == {f"fan|00|pseudo={j}" for j in range(3)}
    assert data.classes == sorted(data.clips["aux_label"].unique())
    assert (data.clips["y"] == data.clips["aux_label"].map(data.classes.index)).all()
    # the clusters are those of the frozen encoder's CLS embeddings (an independent k-means on them)
    idx = np.flatnonzero(fan)
    with torch.no_grad():
        emb = encoder(data.read(idx).unsqueeze(1))[:, 0].numpy().astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ref = KMeans(3, n_init=10, random_state=0).fit_predict(emb)
    got = data.clips["aux_label"][fan].str.rsplit("=", n=1).str[1].astype(int).to_numpy()
    assert len({(a, b) for a, b in zip(ref, got)}) == 3  # the same partition, whatever the cluster numbers
    # same seed, same labels
    again = load_training_data(demo["paths"], without_attributes(demo, "fan"), FS, "auto")
    assign_pseudo_labels(again, encoder, 3, seed=0, pooling="cls")
    assert again.clips["aux_label"].tolist() == data.clips["aux_label"].tolist()


def test_pseudo_labels_are_recorded_and_only_with_granularity_auto(demo, tmp_path):
    data = load_training_data(demo["paths"], without_attributes(demo, "pump"), FS, "auto")
    settings = TrainSettings(epochs=1, batch_size=8, pseudo_labels=2)
    summary = train_encoder(demo["encoder"], data, settings, tmp_path / "auto", device="cpu")
    assert list(summary["pseudo_labels"]) == ["pump|00"] and len(summary["pseudo_labels"]["pump|00"]) == 2
    assert "pump|00|pseudo=1" in json.loads(load_file_meta(tmp_path / "auto" / "head.safetensors")["classes"])
    data = load_training_data(demo["paths"], without_attributes(demo, "pump"), FS, "section")
    summary = train_encoder(demo["encoder"], data, TrainSettings(epochs=1, batch_size=8, pseudo_labels=2, granularity="section"),
                            tmp_path / "section", device="cpu")
    assert summary["pseudo_labels"] == {}


def test_one_section_without_attributes_trains_on_pseudo_labels(demo, tmp_path):
    """Alone, a section without attributes gives one class: its pseudo-labels make the classifier possible."""
    fan = [m[m["machine"] == "fan"] for m in without_attributes(demo, "fan")]
    with pytest.raises(TrainingError, match="at least 2 classes"):
        load_training_data(demo["paths"], fan, FS, "auto")
    data = load_training_data(demo["paths"], fan, FS, "auto", pseudo_labels=3)
    summary = train_encoder(demo["encoder"], data, TrainSettings(epochs=1, batch_size=8, pseudo_labels=3), tmp_path, device="cpu")
    assert summary["classes"] == 3 and list(summary["pseudo_labels"]) == ["fan|00"]


def test_the_trained_weights_do_not_depend_on_the_cores_granted(tmp_path, monkeypatch):
    """Before, the training job ran with the threads Snakemake granted it (--threads {threads}, capped by
    --cores), and float reductions split over 1 or 2 threads gave other weights: the demo's fan AUROC moved
    from 0.8325 to 0.8638 between --cores 1 and --cores 2. Now the thread count is a fixed, recorded
    execution setting: EAT_ASD_TRAIN_THREADS, else every CPU the process may use."""
    from eat_asd.cli import TRAIN_THREADS_ENV, main
    from eat_asd.runtime import available_cpus

    machines = ["fan", "gearbox", "pump"]
    assert main(["demo", str(tmp_path / "demo"), "--seconds", "2.0", "--train-source", "8", "--train-target", "2",
                 "--test-per-cell", "2"]) == 0
    config = tmp_path / "c.yaml"  # 2-s clips: large enough that 1 and 2 threads reduce in another order
    config.write_text("data_root: unused\nfeatures: {target_frames: 208}\n"
                      "train: {epochs: 1, lr: 0.003, loss: arcface, batch_size: 8}\n")
    for m in machines:
        assert main(["discover", str(tmp_path / "demo" / "data"), "--machine", m, "--out", str(tmp_path / f"{m}.csv")]) == 0
        assert main(["features", "--config", str(config), "--manifest", str(tmp_path / f"{m}.csv"),
                     "--data-root", str(tmp_path / "demo" / "data"), "--out", str(tmp_path / f"{m}.safetensors")]) == 0

    def train(out, *extra):
        assert main(["train", "--config", str(config), "--encoder", str(tmp_path / "demo" / "encoder"), "--device", "cpu",
                     "--features", *[str(tmp_path / f"{m}.safetensors") for m in machines],
                     "--manifests", *[str(tmp_path / f"{m}.csv") for m in machines], "--out", str(tmp_path / out), *extra]) == 0
        summary = json.loads((tmp_path / out / "summary.json").read_text())
        return load_file(str(tmp_path / out / "encoder" / "model.safetensors")), summary

    monkeypatch.delenv(TRAIN_THREADS_ENV, raising=False)
    runs = []
    for granted in (1, 2):  # what a job inherits from Snakemake's --cores (OMP_NUM_THREADS, torch's default)
        torch.set_num_threads(granted)
        runs.append(train(f"granted{granted}"))
    (a, summary_a), (b, summary_b) = runs
    assert summary_a["torch_threads"] == summary_b["torch_threads"] == available_cpus()
    assert summary_a["torch_version"] == torch.__version__
    assert all(torch.equal(a[k], b[k]) for k in a)
    monkeypatch.setenv(TRAIN_THREADS_ENV, "1")
    _, summary = train("env1")
    assert summary["torch_threads"] == 1
    torch.set_num_threads(2)
