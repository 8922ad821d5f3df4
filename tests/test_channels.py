"""DCASE 2026 stereo clips (features.channels) and the DCASE 2025 supplemental recordings
(train.supplemental, train.noise_mix, scoring.bank_supplemental), on the tiny stereo demo."""

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from eat_asd.data import discover, read_manifest
from eat_asd.demo import DemoSizes, make_demo_data
from eat_asd.eat import EAT, EATConfig, save_eat
from eat_asd.features import FeatureFile, FeatureSettings, build_feature_file
from helpers import compute_features
from eat_asd.noise_mix import NoiseMix, NoiseMixer, mix_at_snr
from eat_asd.stages import clip_files, feature_clips, make_manifest
from eat_asd.train import load_training_data

SIZES = DemoSizes(seconds=0.6, train_source=6, train_target=2, test_per_cell=2)
TINY = EATConfig(embed_dim=32, depth=2, num_heads=4, max_length=8)
SETTINGS = (0, 1, "mix", "each")


def fs(channels):
    return FeatureSettings(target_frames=64, channels=channels)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("channels")
    make_demo_data(root / "mono", seed=0, sizes=SIZES)
    make_demo_data(root / "stereo", seed=0, sizes=DemoSizes(**{**SIZES.__dict__, "channels": 2}))
    torch.manual_seed(0)
    save_eat(EAT(TINY), root / "encoder")
    return root


def fan_paths(root, n=3):
    return sorted(str(p) for p in (root / "dev_data/raw/fan/train").glob("*.wav"))[:n]


def test_stereo_demo_holds_the_mono_clip_near_and_a_quieter_noisier_far_channel(demos):
    for mono, stereo in zip(fan_paths(demos / "mono"), fan_paths(demos / "stereo")):
        near, _ = sf.read(mono, dtype="float32")
        both, _ = sf.read(stereo, dtype="float32")
        assert both.shape == (len(near), 2) and np.array_equal(both[:, 0], near)
        # the far channel: the machine at a quarter of the level, 40 samples later, plus noise
        residual = both[40:, 1] - 0.25 * near[:-40]
        assert np.std(both[:, 1]) < 0.6 * np.std(near) and np.std(residual) > 0.3 * np.std(0.25 * near)


def test_channel_settings_give_different_features_on_stereo_and_the_same_on_mono(demos):
    stereo, mono = fan_paths(demos / "stereo"), fan_paths(demos / "mono")
    feats = {c: compute_features(stereo, fs(c)) for c in SETTINGS}
    assert feats[0].shape == feats[1].shape == feats["mix"].shape == (3, 64, 128)
    for a, b in [(0, 1), (0, "mix"), (1, "mix")]:
        assert (feats[a] - feats[b]).abs().mean() > 0.05, (a, b)
    # each: two rows per clip, channel 0 then channel 1, each equal to that channel's features
    assert feats["each"].shape == (6, 64, 128)
    assert torch.equal(feats["each"][0::2], feats[0]) and torch.equal(feats["each"][1::2], feats[1])
    # channel 0 of the stereo demo is the mono demo's clip
    mono_feats = {c: compute_features(mono, fs(c)) for c in (0, "mix", "each")}
    assert torch.equal(feats[0], mono_feats[0])
    assert torch.equal(mono_feats[0], mono_feats["mix"]) and torch.equal(mono_feats[0], mono_feats["each"])
    with pytest.raises(ValueError, match="features.channels = 1 asks for channel 1") as err:
        compute_features(mono, fs(1))
    assert all(p in str(err.value) for p in mono)  # every clip at fault is named


def test_each_needs_the_same_channels_in_every_clip(demos, tmp_path):
    paths = fan_paths(demos / "stereo", 2) + fan_paths(demos / "mono", 1)
    with pytest.raises(ValueError, match="has 1 channel.*features.channels = each needs the same number"):
        build_feature_file(paths, ["a", "b", "c"], fs("each"), tmp_path / "f.safetensors")


def demo_parts(root, out, channels, machines=("fan", "pump")):
    """Feature files and manifests of the train and test parts, as the workflow makes them."""
    files = {}
    for machine in machines:
        for part in ("train", "test"):
            manifest = out / f"{machine}.{part}.csv"
            make_manifest(root, machine, manifest, part)
            clips = feature_clips(read_manifest(manifest))
            path = out / f"{machine}.{part}.{channels}.safetensors"
            build_feature_file(clip_files(clips, root), clips["key"].tolist(), fs(channels), path)
            files[(machine, part)] = (path, manifest)
    return files


def test_each_doubles_the_training_views_and_the_embedding_width(demos, tmp_path):
    from eat_asd.embed import EmbedSettings
    from eat_asd.stages import embed

    widths, rows = {}, {}
    for channels in (0, 1, "each"):
        files = demo_parts(demos / "stereo", tmp_path, channels)
        train = [files[(m, "train")] for m in ("fan", "pump")]
        data = load_training_data([f for f, _ in train], [read_manifest(m) for _, m in train], fs(channels), "auto")
        rows[channels] = data
        fan = [files[("fan", p)] for p in ("train", "test")]
        out = tmp_path / f"fan.{channels}.npz"
        embed(demos / "encoder", [f for f, _ in fan], [m for _, m in fan], demos / "stereo", EmbedSettings(), out, device="cpu")
        with np.load(out) as z:
            widths[channels] = z["embeddings"]
    single, each = rows[0], rows["each"]
    assert len(each.clips) == 2 * len(single.clips) and each.classes == single.classes
    # every clip's two views carry its label, and the validation split keeps a clip's views together
    views = each.clips.groupby("clip").agg(n=("view", "size"), views=("view", list), labels=("y", "nunique"))
    assert (views["n"] == 2).all() and (views["labels"] == 1).all() and all(sorted(v) == [0, 1] for v in views["views"])
    tr, va = each.split(0.25, 0)
    assert not set(each.clips["clip"].iloc[tr]) & set(each.clips["clip"].iloc[va])
    assert len(va) == 2 * len(single.split(0.25, 0)[1])
    # the clip embedding concatenates channel 0's and channel 1's
    assert widths["each"].shape == (widths[0].shape[0], 2 * widths[0].shape[1])
    np.testing.assert_allclose(widths["each"], np.concatenate([widths[0], widths[1]], axis=1), atol=1e-5)


# ------------------------------------------------------------------ supplemental recordings


@pytest.fixture(scope="module")
def with_supplemental(demos, tmp_path_factory):
    """The mono demo plus a supplemental/ folder per machine type: 3 clean machine recordings and 2
    noise-only recordings (one shorter than a clip), in the DCASE 2025 name forms."""
    root = tmp_path_factory.mktemp("sup") / "data"
    shutil.copytree(demos / "mono", root)
    rng = np.random.default_rng(5)
    n = int(SIZES.seconds * 16000)
    for machine in ("fan", "pump", "gearbox"):
        sup = root / "dev_data/raw" / machine / "supplemental"
        sup.mkdir()
        train = sorted((root / "dev_data/raw" / machine / "train").glob("*.wav"))
        for i in range(3):  # clean machine recordings: copies of training clips, reversed
            audio, _ = sf.read(train[i], dtype="float32")
            sf.write(sup / f"section_00_machine_source_{i:04d}_noAttribute.wav", audio[::-1], 16000, subtype="FLOAT")
        sf.write(sup / "section_00_noise_source_0000_noAttribute.wav", 0.1 * rng.standard_normal(n), 16000, subtype="FLOAT")
        sf.write(sup / "section_00_noise_supplemental_normal_0001.wav", 0.3 * np.sin(np.arange(n // 3) / 3), 16000,
                 subtype="FLOAT")
    return root


def test_supplemental_normal_adds_exactly_the_machine_recordings_to_training_and_none_to_banks(with_supplemental, demos, tmp_path):
    from eat_asd.embed import EmbedSettings
    from eat_asd.scoring import ScoreSettings
    from eat_asd.stages import embed, read_embeddings

    files = demo_parts(with_supplemental, tmp_path, 0)
    train = [files[(m, "train")] for m in ("fan", "pump")]
    manifests = [read_manifest(m) for _, m in train]
    assert all(set(m["split"]) == {"train", "supplemental"} for m in manifests)  # the train part holds them
    ignore = load_training_data([f for f, _ in train], manifests, fs(0), "auto")
    normal = load_training_data([f for f, _ in train], manifests, fs(0), "auto", supplemental="normal")
    pairs = lambda clips: set(zip(clips["machine"], clips["key"]))  # noqa: E731
    added = pairs(normal.clips) - pairs(ignore.clips)
    expected = set().union(*(pairs(m[(m["split"] == "supplemental") & (m["kind"] == "machine")]) for m in manifests))
    assert added == expected and len(added) == 6 and pairs(ignore.clips) <= pairs(normal.clips)
    assert normal.granularity == ignore.granularity == "attribute"  # set by the training clips alone
    # ... and the memory banks hold the training normals only, unless scoring.bank_supplemental
    fan = [files[("fan", p)] for p in ("train", "test")]
    embed(demos / "encoder", [f for f, _ in fan], [m for _, m in fan], with_supplemental, EmbedSettings(),
          tmp_path / "fan.npz", device="cpu")
    manifest = pd.concat([read_manifest(m) for _, m in fan])
    bank = read_embeddings(tmp_path / "fan.npz", manifest)[1]
    assert set(bank["split"]) == {"train"} and len(bank) == len(manifest.query("split == 'train' and label == 'normal'"))
    with_sup = read_embeddings(tmp_path / "fan.npz", manifest, bank_supplemental=True)[1]
    assert pairs(with_sup) - pairs(bank) == {(m, k) for m, k in expected if m == "fan"}
    assert ScoreSettings().bank_supplemental is False


def measured_snr(clean, mixed):
    noise = mixed.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2))


def test_mix_at_snr_hits_the_snr_and_repeats_short_noise():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(16000).astype(np.float32) * 0.2
    noise = np.sin(np.arange(3000) / 7).astype(np.float32)
    for snr in (-5.0, 0.0, 7.5, 30.0):
        mixed = mix_at_snr(clean, noise, snr, offset=1234)
        assert abs(measured_snr(clean, mixed) - snr) < 1e-3
    added = mix_at_snr(clean, noise, 0.0, offset=1234) - clean
    gain = added[0] / noise[1234]
    np.testing.assert_allclose(added, gain * np.resize(np.r_[noise[1234:], noise[:1234]], 16000), rtol=1e-4, atol=1e-6)
    assert np.array_equal(mix_at_snr(np.zeros(100, np.float32), noise, 0.0), np.zeros(100))


def test_noise_mix_same_seed_same_mixes_within_the_snr_range(with_supplemental, tmp_path):
    files = demo_parts(with_supplemental, tmp_path, 0)
    train = [files[(m, "train")] for m in ("fan", "pump")]
    # as the training job reads them: clip paths joined to the data root (train --data-root)
    manifests = [read_manifest(m) for _, m in train]
    manifests = [m.assign(path=clip_files(m, with_supplemental)) for m in manifests]
    args = ([f for f, _ in train], manifests, fs(0), "auto")
    mix = {"prob": 0.5, "snr_db": [3.0, 9.0]}
    data = load_training_data(*args, noise_mix=mix)
    clean = load_training_data(*args)
    assert sorted(data.mixer.noise_paths) == ["fan", "pump"] and all(len(p) == 2 for p in data.mixer.noise_paths.values())
    idx = np.arange(len(data.clips))
    first = data.read(idx, torch.Generator().manual_seed(7))
    again = data.read(idx, torch.Generator().manual_seed(7))
    other = data.read(idx, torch.Generator().manual_seed(8))
    plain = clean.read(idx)
    assert torch.equal(first, again) and not torch.equal(first, other)
    changed = (first - plain).abs().flatten(1).amax(1) > 1e-4
    assert 0.25 < changed.float().mean() < 0.75  # about prob of them
    assert torch.equal(data.read(idx), plain)  # validation batches (no generator) stay clean
    # the draws, replayed: each mix's SNR, measured on the waveforms, lies in [3, 9] dB
    gen, mixer = torch.Generator().manual_seed(7), data.mixer
    snrs = []
    for row in data.clips.itertuples():
        drawn = mixer.draw(row.machine, gen)
        if drawn is None:
            continue
        path, snr, offset = drawn
        wave, _ = sf.read(row.path, dtype="float32")
        noise, _ = sf.read(path, dtype="float32")
        snrs.append(measured_snr(wave, mix_at_snr(wave, noise, snr, int(offset * len(noise)))))
    assert len(snrs) == int(changed.sum()) and min(snrs) >= 3.0 - 1e-3 and max(snrs) <= 9.0 + 1e-3
    assert max(snrs) - min(snrs) > 2  # drawn across the range, not one value


def test_noise_mix_settings_are_checked(with_supplemental, demos, tmp_path):
    from eat_asd.errors import ConfigError
    from eat_asd.train import TrainingError, TrainSettings

    with pytest.raises(ConfigError, match="snr_db"):
        TrainSettings(noise_mix={"prob": 0.5, "snr_db": [10, 0]})
    assert NoiseMix.of({"prob": 0}) is None and NoiseMix.of({"prob": 1}).snr_db == (0.0, 20.0)
    files = demo_parts(demos / "mono", tmp_path, 0)  # no supplemental/ folder: nothing to mix in
    train = [files[(m, "train")] for m in ("fan", "pump")]
    with pytest.raises(TrainingError, match="no noise-only recordings"):
        load_training_data([f for f, _ in train], [read_manifest(m) for _, m in train], fs(0), "auto", noise_mix={"prob": 0.5})
