import json
import logging

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from eat_asd.data import (
    DataError,
    aux_labels,
    check_manifest,
    discover,
    parse_attributes,
    read_manifest,
    resolve_granularity,
    train_val_split,
    training_clips,
)


def touch_wav(path, sr=16000, seconds=0.1, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((int(sr * seconds), channels), np.float32)
    sf.write(path, data, sr, subtype="PCM_16")
    return path


def build(root, names):
    for name in names:
        touch_wav(root / name)
    return root


def test_parse_attributes():
    assert parse_attributes("m-n_X") == {"m-n": "X"}
    assert parse_attributes("volt_1.5_wt_150") == {"volt": "1.5", "wt": "150"}
    assert parse_attributes("car_A1_spd_28V_mic_1_noise_1") == {"car": "A1", "spd": "28V", "mic": "1", "noise": "1"}
    assert parse_attributes("noAttributes") == {} == parse_attributes("noAttribute") and parse_attributes("") == {}
    assert parse_attributes("strength_1_ambient") == {"strength": "1", "ambient": ""}


def test_simple_layout(tmp_path):
    root = build(tmp_path / "dev_data", [
        "train/fan/normal_0000.wav", "train/fan/normal_0001.wav",
        "test/fan/normal_0000.wav", "test/fan/anomaly_0000.wav", "test/fan/fan_abnormal_12.wav",
        "train/valve/normal_0000.wav", "test/valve/anomaly_0003.wav",
    ])
    m = discover(root)
    assert len(m) == 7 and set(m["machine"]) == {"fan", "valve"}
    fan = m[m["machine"] == "fan"].set_index("filename")
    assert fan.loc["anomaly_0000.wav", "split"] == "test" and fan.loc["anomaly_0000.wav", "label"] == "anomaly"
    assert fan.loc["fan_abnormal_12.wav", "label"] == "anomaly"
    assert fan.loc["normal_0001.wav", "split"] == "train" and fan.loc["normal_0001.wav", "label"] == "normal"
    assert set(m["section"]) == {"00"} and set(m["domain"]) == {"none"} and set(m["layout"]) == {"simple"}
    assert set(m["sample_rate"]) == {16000} and np.allclose(m["duration"], 0.1)


def test_dcase2020_layout(tmp_path):
    root = build(tmp_path / "dev_data", [
        "fan/train/normal_id_00_00000000.wav", "fan/train/normal_id_02_00000012.wav",
        "fan/test/anomaly_id_00_00000001.wav", "fan/test/normal_id_02_00000003.wav",
        "ToyCar/train/normal_id_01_00000000.wav", "ToyCar/test/id_05_00000007.wav",
        "ToyCar/test/normal_id_01_00000000.wav",  # the same name as a training clip, as in DCASE 2020
    ])
    full = discover(root)
    toy = full[full["filename"] == "normal_id_01_00000000.wav"]
    assert sorted(toy["key"]) == ["test/normal_id_01_00000000.wav", "train/normal_id_01_00000000.wav"]
    m = full.drop_duplicates("filename").set_index("filename")
    assert m.loc["normal_id_02_00000012.wav", "section"] == "02"
    assert m.loc["anomaly_id_00_00000001.wav", ["split", "label", "domain"]].tolist() == ["test", "anomaly", "none"]
    assert m.loc["id_05_00000007.wav", ["machine", "label", "section"]].tolist() == ["ToyCar", "unknown", "05"]
    assert set(m["layout"]) == {"dcase2020"}


def test_dcase2021_layout_with_source_and_target_test_folders(tmp_path):
    root = build(tmp_path / "dev_data", [
        "gearbox/train/section_00_source_train_normal_0000_volt_1.0.wav",
        "gearbox/train/section_01_target_train_normal_0002_wt_30.wav",
        "gearbox/source_test/section_00_source_test_anomaly_0011.wav",
        "gearbox/target_test/section_01_target_test_normal_0004.wav",
        "pump/train/section_02_source_train_normal_0000_strength_1_ambient.wav",
    ])
    m = discover(root).set_index("filename")
    row = m.loc["section_01_target_test_normal_0004.wav"]
    assert (row["section"], row["domain"], row["split"], row["label"]) == ("01", "target", "test", "normal")
    assert json.loads(m.loc["section_00_source_train_normal_0000_volt_1.0.wav", "attributes"]) == {"volt": "1.0"}
    assert m.loc["section_00_source_test_anomaly_0011.wav", "clip_id"] == "0011"


def test_dcase2022_names(tmp_path):
    root = build(tmp_path / "dev_data", [
        "fan/train/section_00_source_train_normal_0000_m-n_W.wav",
        "fan/test/section_00_target_test_anomaly_0007_m-n_X.wav",
        "ToyTrain/train/section_01_source_train_normal_0005_car_A1_spd_28V_mic_1_noise_1.wav",
    ])
    m = discover(root).set_index("filename")
    assert json.loads(m.loc["section_00_target_test_anomaly_0007_m-n_X.wav", "attributes"]) == {"m-n": "X"}
    assert m.loc["section_00_target_test_anomaly_0007_m-n_X.wav", "attribute_string"] == "m-n_X"
    toy = json.loads(m.loc["section_01_source_train_normal_0005_car_A1_spd_28V_mic_1_noise_1.wav", "attributes"])
    assert toy == {"car": "A1", "spd": "28V", "mic": "1", "noise": "1"}


def test_dcase2023_to_2025_nesting_eval_names_supplemental_and_attribute_csv(tmp_path):
    raw = tmp_path / "data" / "dev_data" / "raw"
    build(raw, [
        "bearing/train/section_00_source_train_normal_0000_vel_6_loc_A.wav",
        "bearing/test/section_00_source_test_anomaly_0001_vel_6_loc_A.wav",
        "slider/train/section_00_target_train_normal_0003_noAttributes.wav",
        "slider/supplemental/section_00_source_supplemental_normal_0000_noAttributes.wav",
    ])
    build(tmp_path / "data" / "eval_data" / "raw", ["bearing/test/section_00_0000.wav", "bearing/test/section_00_0001.wav"])
    pd.DataFrame({"file_name": ["bearing/test/section_00_0000.wav"], "d1p": ["vel"], "d1v": ["10"], "d2p": ["loc"], "d2v": ["B"]}).to_csv(
        tmp_path / "data" / "eval_data" / "raw" / "bearing" / "attributes_00.csv", index=False)
    m = discover(tmp_path / "data").set_index("filename")
    assert len(m) == 6
    ev = m.loc["section_00_0000.wav"]
    assert (ev["machine"], ev["split"], ev["label"], ev["domain"]) == ("bearing", "test", "unknown", "unknown")
    assert json.loads(ev["attributes"]) == {"vel": "10", "loc": "B"}
    assert json.loads(m.loc["section_00_0001.wav", "attributes"]) == {}
    sup = m.loc["section_00_source_supplemental_normal_0000_noAttributes.wav"]
    assert (sup["split"], sup["label"], sup["attributes"]) == ("supplemental", "normal", "{}")


def test_manifest_round_trip(tmp_path):
    root = build(tmp_path / "d", ["fan/train/section_00_source_train_normal_0000_m-n_W.wav", "fan/test/section_00_0000.wav"])
    m = discover(root)
    m.to_csv(tmp_path / "m.csv", index=False)
    back = read_manifest(tmp_path / "m.csv")
    assert back["section"].tolist() == ["00", "00"] and back["clip_id"].tolist() == m["clip_id"].tolist()
    assert back.equals(m)


@pytest.mark.parametrize("bad", ["fan/train/recording_01.wav", "fan/train/section_00_normal.wav"])
def test_unknown_name_pattern_is_named(tmp_path, bad):
    root = build(tmp_path / "d", ["fan/train/section_00_source_train_normal_0000.wav", bad])
    with pytest.raises(DataError, match="match no known DCASE pattern") as err:
        discover(root)
    assert bad.split("/")[-1] in str(err.value)


def test_file_outside_known_folders_is_named(tmp_path):
    root = build(tmp_path / "d", ["fan/train/section_00_source_train_normal_0000.wav", "loose/clip.wav"])
    with pytest.raises(DataError, match="loose/clip.wav"):
        discover(root)


def test_empty_folders(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        discover(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        discover(tmp_path / "empty")
    root = build(tmp_path / "d", ["fan/train/section_00_source_train_normal_0000.wav"])
    (root / "fan" / "test").mkdir()
    with pytest.raises(DataError, match="fan/test"):
        discover(root)
    simple = build(tmp_path / "s", ["train/fan/normal_0.wav", "test/fan/anomaly_0.wav"])
    (simple / "test" / "pump").mkdir()
    with pytest.raises(DataError, match="test/pump"):
        discover(simple)


def test_corrupt_wav_is_named(tmp_path):
    root = build(tmp_path / "d", ["fan/train/section_00_source_train_normal_0000.wav"])
    (root / "fan" / "train" / "section_00_source_train_normal_0001.wav").write_bytes(b"RIFFjunk")
    with pytest.raises(ValueError, match="section_00_source_train_normal_0001.wav"):
        discover(root)
    assert len(discover(root, read_headers=False)) == 2  # planning does not open files


def test_mixed_sample_rates_and_stereo_warn_with_counts(tmp_path, caplog):
    root = tmp_path / "d"
    touch_wav(root / "fan/train/section_00_source_train_normal_0000.wav")
    touch_wav(root / "fan/train/section_00_source_train_normal_0001.wav", sr=44100)
    touch_wav(root / "fan/train/section_00_source_train_normal_0002.wav", channels=2)
    with caplog.at_level(logging.WARNING):
        m = discover(root)
    assert sorted(m["sample_rate"]) == [16000, 16000, 44100]
    text = caplog.text
    assert "1 clip(s) not at 16000 Hz" in text and "normal_0001.wav" in text
    assert "1 clip(s) have more than one channel" in text and "normal_0002.wav" in text


def test_check_manifest(tmp_path):
    root = build(tmp_path / "d", [
        "fan/train/section_00_source_train_normal_0000.wav", "fan/test/section_00_source_test_normal_0000.wav",
        "pump/test/section_00_source_test_normal_0000.wav", "pump/test/section_00_source_test_anomaly_0000.wav",
    ])
    with pytest.raises(DataError, match="pump: no normal training clips"):
        check_manifest(discover(root))
    touch_wav(root / "pump/train/section_00_source_train_normal_0000.wav")
    warnings = check_manifest(discover(root))
    assert warnings == ["machine type fan: test set has no anomaly clips; AUROC is undefined for it"]


def _training_frame():
    rows = []
    for machine in ("fan", "pump"):
        for section in ("00", "01"):
            for value in ("A", "B"):
                for i in range(10):
                    rows.append(dict(machine=machine, section=section, split="train", label="normal",
                                     attributes=json.dumps({"m-n": value})))
    rows.append(dict(machine="fan", section="00", split="test", label="anomaly", attributes="{}"))
    return pd.DataFrame(rows)


def test_label_granularities():
    clips = training_clips(_training_frame())
    assert len(clips) == 80
    assert aux_labels(clips, "machine").nunique() == 2
    assert aux_labels(clips, "section").nunique() == 4
    fine = aux_labels(clips, "attribute")
    assert fine.nunique() == 8 and fine.iloc[0] == "fan|00|m-n=A"
    assert resolve_granularity(clips) == "attribute"
    assert resolve_granularity(clips.assign(attributes="{}")) == "section"
    assert resolve_granularity(clips[clips["section"] == "00"].assign(attributes="{}")) == "machine"
    with pytest.raises(ValueError, match="granularity 'fine'"):
        aux_labels(clips, "fine")


def test_split_is_stratified_seeded_and_train_only():
    frame = _training_frame()
    clips = training_clips(frame)
    assert (clips["split"] == "train").all()  # the test anomaly never enters
    labels = aux_labels(clips).reset_index(drop=True)
    tr, va = train_val_split(labels, 0.2, seed=3)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == len(labels)
    assert labels[va].value_counts().to_dict() == {name: 2 for name in labels.unique()}
    tr2, va2 = train_val_split(labels, 0.2, seed=3)
    assert np.array_equal(va, va2)
    _, va3 = train_val_split(labels, 0.2, seed=4)
    assert not np.array_equal(va, va3)
    single = pd.Series(["a", "b", "b", "b"])
    tr, va = train_val_split(single, 0.5, seed=0)
    assert 0 in tr and len(va) == 2  # a one-clip class stays in training; others keep at least one


def test_demo_data_is_parsed_with_expected_counts(tmp_path):
    from eat_asd.demo import MACHINES, DemoSizes, make_demo_data

    sizes = DemoSizes(seconds=0.5, train_source=3, train_target=2, test_per_cell=4)
    root = make_demo_data(tmp_path / "demo", seed=1, sizes=sizes)
    m = discover(root)
    assert set(m["machine"]) == {mm.name for mm in MACHINES}
    for mm in MACHINES:
        g = m[m["machine"] == mm.name]
        train = g[g["split"] == "train"]
        assert (train["domain"] == "source").sum() == 3 * len(mm.source_values)
        assert (train["domain"] == "target").sum() == 2 * len(mm.target_values)
        test = g[g["split"] == "test"]
        assert test.groupby(["domain", "label"]).size().tolist() == [4, 4, 4, 4]
        src = {json.loads(a)[mm.attribute] for a in train.loc[train["domain"] == "source", "attributes"]}
        tgt = {json.loads(a)[mm.attribute] for a in train.loc[train["domain"] == "target", "attributes"]}
        assert src == set(mm.source_values) and tgt == set(mm.target_values) and not src & tgt
    assert set(m["sample_rate"]) == {16000} and np.allclose(m["duration"], 0.5)
    assert check_manifest(m) == []
    # deterministic from the seed
    again = make_demo_data(tmp_path / "demo2", seed=1, sizes=sizes)
    a = sf.read(root / "dev_data/raw/fan/test/section_00_source_test_anomaly_0000_vel_6.wav")[0]
    b = sf.read(again / "dev_data/raw/fan/test/section_00_source_test_anomaly_0000_vel_6.wav")[0]
    assert np.array_equal(a, b)


# ------------------------------------------------------------------ what real data sets hold (2024-2026)


def test_attribute_tables_are_keyed_by_machine_type_and_split(tmp_path):
    """Before, a gearbox clip got pump's attributes: both folders list the same bare name."""
    name = "section_00_source_train_normal_0001_noAttribute.wav"
    test_name = "section_00_source_test_normal_0000_noAttribute.wav"
    root = build(tmp_path / "d", [f"gearbox/train/{name}", f"pump/train/{name}", f"pump/test/{test_name}",
                                  f"gearbox/test/{test_name}"])
    pd.DataFrame({"file_name": [f"pump/train/{name}", f"pump/train/{test_name}"], "d1p": ["volt", "volt"],
                  "d1v": ["2.0", "3.0"]}).to_csv(root / "pump" / "attributes_00.csv", index=False)
    pd.DataFrame({"file_name": [name], "d1p": ["wt"], "d1v": ["150"]}).to_csv(  # a bare name: every split of gearbox
        root / "gearbox" / "attributes_00.csv", index=False)
    m = discover(root).set_index(["machine", "key"])
    assert json.loads(m.loc[("pump", f"train/{name}"), "attributes"]) == {"volt": "2.0"}
    assert json.loads(m.loc[("pump", f"test/{test_name}"), "attributes"]) == {}  # pump's row names its train split only
    assert json.loads(m.loc[("gearbox", f"train/{name}"), "attributes"]) == {"wt": "150"}


def test_attribute_less_names_parse_as_no_attributes(tmp_path):
    assert parse_attributes("noAttribute") == {}
    root = build(tmp_path / "d", ["fan/train/section_00_source_train_normal_0000_noAttribute.wav",
                                  "fan/train/section_00_target_train_normal_0001_noAttribute.wav"])
    m = discover(root)
    assert set(m["attributes"]) == {"{}"} and set(m["attribute_string"]) == {"noAttribute"}
    assert resolve_granularity(training_clips(m)) == "machine"  # not one class per attribute string


def test_symlinked_folders_are_followed_once(tmp_path, caplog):
    """Before, a machine-type folder (or a train/ folder) that is a symlink vanished without a message."""
    store = build(tmp_path / "store", ["pump/train/section_00_source_train_normal_0000.wav",
                                       "pump/test/section_00_source_test_anomaly_0000.wav",
                                       "valve_train/section_00_source_train_normal_0000.wav"])
    root = build(tmp_path / "d", ["fan/train/section_00_source_train_normal_0000.wav",
                                  "valve/test/section_00_source_test_normal_0000.wav"])
    (root / "pump").symlink_to(store / "pump", target_is_directory=True)
    (root / "valve" / "train").symlink_to(store / "valve_train", target_is_directory=True)
    (root / "fan" / "train" / "loop").symlink_to(root / "fan", target_is_directory=True)  # a link loop ends
    with caplog.at_level(logging.WARNING):
        m = discover(root)
    assert sorted(m["machine"].unique()) == ["fan", "pump", "valve"]
    assert m.groupby("machine").size().to_dict() == {"fan": 1, "pump": 2, "valve": 2}
    assert str(root / "pump" / "train" / "section_00_source_train_normal_0000.wav") in set(m["path"])
    assert "read once" in caplog.text


def test_every_format_libsndfile_reads_is_found_and_others_are_named(tmp_path, caplog):
    """Before, a FLAC clip beside wav clips was skipped without a word (51 clips from 52 files)."""
    from eat_asd.data import AUDIO_SUFFIXES

    root = build(tmp_path / "d", ["fan/train/section_00_source_train_normal_0000.wav"])
    tone = (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    sf.write(root / "fan/train/section_00_source_train_normal_0001.flac", tone, 16000, format="FLAC")
    sf.write(root / "fan/train/section_00_source_train_normal_0002.ogg", tone, 16000, format="OGG")
    (root / "fan/train/notes.docx").write_text("not audio")
    with caplog.at_level(logging.WARNING):
        m = discover(root)
    assert sorted(m["filename"]) == ["section_00_source_train_normal_0000.wav", "section_00_source_train_normal_0001.flac",
                                     "section_00_source_train_normal_0002.ogg"]
    assert set(m["sample_rate"]) == {16000}
    assert "1 file(s) below" in caplog.text and "notes.docx" in caplog.text
    # every container format libsndfile names has a file ending the scan looks for (RAW has no header to read)
    endings = {"WAVEX": ".wav", "MAT4": ".mat", "MAT5": ".mat", "MPC2K": ".mpc", "IRCAM": ".sf", "NIST": ".nist"}
    for fmt in sf.available_formats():
        if fmt != "RAW":
            assert endings.get(fmt, "." + fmt.lower()) in AUDIO_SUFFIXES, fmt


SUPPLEMENTAL_FORMS = {  # name -> (kind, domain, section)
    "section_00_machine_source_0000_noAttribute.wav": ("machine", "source", "00"),
    "section_00_noise_source_0000_noAttribute.wav": ("noise", "source", "00"),
    "section_00_source_supplemental_machine_0000.wav": ("machine", "source", "00"),
    "section_00_noise_supplemental_normal_0000.wav": ("noise", "unknown", "00"),
    "section_01_source_supplemental_normal_0002_car_A1_noise_1.wav": ("machine", "source", "01"),
    "ambience_take3.wav": ("unknown", "unknown", "00"),
}


def test_supplemental_folder_beside_train_and_test(tmp_path, caplog):
    """Before, any of these names failed the whole data set with 'match no known DCASE pattern'."""
    raw = tmp_path / "data" / "dev_data" / "raw"
    build(raw, ["fan/train/section_00_source_train_normal_0000_noAttribute.wav",
                "fan/test/section_00_source_test_anomaly_0000_noAttribute.wav",
                "fan/test/section_00_source_test_normal_0000_noAttribute.wav"]
          + [f"fan/supplemental/{n}" for n in SUPPLEMENTAL_FORMS])
    m = discover(tmp_path / "data")
    sup = m[m["split"] == "supplemental"].set_index("filename")
    assert len(m) == 3 + len(SUPPLEMENTAL_FORMS) and len(sup) == len(SUPPLEMENTAL_FORMS)
    for name, (kind, domain, section) in SUPPLEMENTAL_FORMS.items():
        assert (sup.loc[name, "kind"], sup.loc[name, "domain"], sup.loc[name, "section"]) == (kind, domain, section), name
        assert sup.loc[name, "label"] == ("normal" if kind == "machine" else "unknown")
    assert set(m.loc[m["split"] != "supplemental", "kind"]) == {"machine"}
    assert check_manifest(m) == []  # supplemental clips never fail a data set, nor does an empty supplemental/
    (raw / "pump" / "supplemental").mkdir(parents=True)
    build(raw, ["pump/train/section_00_source_train_normal_0000.wav"])
    assert len(discover(tmp_path / "data")) == len(m) + 1
    assert training_clips(m)["split"].tolist() == ["train"]
    # a train/test file whose name cannot be read still fails, as before
    build(raw, ["fan/train/recording_7.wav"])
    with pytest.raises(DataError, match="recording_7.wav"):
        discover(tmp_path / "data")


def test_dcase2026_stereo_clips_and_additional_training_data(tmp_path):
    """DCASE 2026: stereo clips (near microphone left, far right); additional training data in eval_data/raw/<machine>/train/."""
    dev, ev = tmp_path / "data" / "dev_data" / "raw", tmp_path / "data" / "eval_data" / "raw"
    for path in [dev / "ToyCarEmu/train/section_00_source_train_normal_0000_noAttribute.wav",
                 dev / "ToyCarEmu/test/section_00_target_test_anomaly_0000_noAttribute.wav",
                 ev / "valveEmu/train/section_00_source_train_normal_0000_noAttribute.wav",
                 ev / "valveEmu/test/section_00_0000.wav"]:
        touch_wav(path, channels=2)
    m = discover(tmp_path / "data")
    assert set(m["channels"]) == {2} and sorted(m["machine"].unique()) == ["ToyCarEmu", "valveEmu"]
    assert m.set_index("key").loc["test/section_00_0000.wav", "label"] == "unknown"
    # the CLI's summary shows split, kind and channels
    from eat_asd.cli import main

    build(dev, ["ToyCarEmu/supplemental/section_00_noise_source_0000_noAttribute.wav"])
    assert main(["discover", str(tmp_path / "data"), "--out", str(tmp_path / "m.csv")]) == 0
    written = read_manifest(tmp_path / "m.csv")
    assert {"split", "kind", "channels"} <= set(written.columns)
    assert written.loc[written["split"] == "supplemental", ["kind", "channels"]].values.tolist() == [["noise", 1]]
