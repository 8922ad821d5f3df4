import json

import numpy as np
import pytest
import soundfile as sf
import torch

from eat_asd.audio import AudioError, eat_fbank, eat_fbank_batch
from helpers import load_wav


def test_fbank_matches_reference(reference):
    meta = json.loads((reference / "fbank" / "meta.json").read_text())
    wav, sr = load_wav(reference / "fbank" / "clip.wav")
    assert sr == meta["sample_rate"] and wav.dtype == np.float32
    feats = eat_fbank(wav, sr, meta["target_frames"])
    expected = np.load(reference / "fbank" / "expected_fbank.npy")
    assert feats.shape == expected.shape == (meta["target_frames"], 128)
    assert np.abs(feats.numpy() - expected).max() < 1e-4
    # frames beyond the clip are zero before normalising
    assert torch.allclose(feats[-1], torch.full((128,), 4.268 / (4.569 * 2)))


def test_batched_fbank_equals_one_at_a_time(reference):
    wav, sr = load_wav(reference / "fbank" / "clip.wav")
    clips = [wav, wav[:20000] * 0.5, wav[5000:25000], wav[:100]]
    batch = eat_fbank_batch(clips, sr, 256)
    assert batch.shape == (4, 256, 128)
    for i, clip in enumerate(clips):
        assert torch.allclose(batch[i], eat_fbank(clip, sr, 256), atol=1e-5), i


def test_crop_to_target_frames(reference):
    wav, sr = load_wav(reference / "fbank" / "clip.wav")
    full = eat_fbank(wav, sr, 320)
    assert torch.equal(eat_fbank(wav, sr, 128), full[:128])


def test_resamples_to_16k(tmp_path):
    t = np.arange(48000) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    sf.write(tmp_path / "a.wav", tone, 48000)
    wav, sr = load_wav(tmp_path / "a.wav")
    feats = eat_fbank(wav, sr, 112)
    tone16 = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)).astype(np.float32)
    ref = eat_fbank(tone16, 16000, 112)
    # the 1 kHz line lands in the same mel bin at either rate
    assert feats[:90].mean(0).argmax() == ref[:90].mean(0).argmax()
    assert torch.allclose(feats[5:90], ref[5:90], atol=0.05)


def test_stereo_channel_choice(tmp_path):
    from eat_asd.audio import read_clip

    left = np.full(1600, 0.5, np.float32)
    right = np.full(1600, -0.25, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    wav, sr = load_wav(tmp_path / "s.wav")  # channel 0 by default: the near microphone of DCASE 2026
    assert wav.shape == (1600,) and np.allclose(wav, 0.5)
    assert np.allclose(load_wav(tmp_path / "s.wav", 1)[0], -0.25)
    assert np.allclose(load_wav(tmp_path / "s.wav", "mix")[0], 0.125)
    views = read_clip(tmp_path / "s.wav", "each").views
    assert len(views) == 2 and np.allclose(views[0], 0.5) and np.allclose(views[1], -0.25)
    with pytest.raises(AudioError, match=r"s\.wav: has 2 channel\(s\); features.channels = 2"):
        load_wav(tmp_path / "s.wav", 2)
    sf.write(tmp_path / "m.wav", left, 16000, subtype="FLOAT")
    for channels in (0, "mix", "each"):
        assert [v.tolist() for v in read_clip(tmp_path / "m.wav", channels).views] == [left.tolist()]
    with pytest.raises(AudioError, match=r"m\.wav: has 1 channel"):
        load_wav(tmp_path / "m.wav", 1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such audio file"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is not audio"), "not a readable audio file"),
        (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00"), "not a readable audio file"),
    ],
    ids=["missing", "empty", "text", "truncated-header"],
)
def test_bad_files_name_the_file(tmp_path, make, message):
    path = tmp_path / "bad_clip.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as err:
        load_wav(path)
    assert "bad_clip.wav" in str(err.value)


def write_tone(path, seconds=1.0, rate=16000, channels=1, subtype="PCM_16"):
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([wav] * channels, axis=1) if channels > 1 else wav, rate, subtype=subtype)
    return path


def test_truncated_wav_is_refused_not_read_shorter(tmp_path):
    """libsndfile reads a cut-off copy silently as a shorter clip."""
    from eat_asd.audio import audio_info

    full = write_tone(tmp_path / "full.wav").read_bytes()
    cut = tmp_path / "cut_clip.wav"
    cut.write_bytes(full[: len(full) // 2])
    for read in (load_wav, audio_info):
        with pytest.raises(AudioError, match=r"cut_clip.wav: truncated: its header announces 1.00 s of audio, the file holds 0.50 s"):
            read(cut)
    streamed = tmp_path / "streamed.wav"  # length unknown when the header was written: not truncated
    data_at = full.index(b"data") + 4
    streamed.write_bytes(full[:data_at] + b"\xff\xff\xff\xff" + full[data_at + 4 :])
    assert load_wav(tmp_path / "full.wav")[0].shape == (16000,)
    assert audio_info(streamed)[0] == 16000


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_are_refused_naming_the_file(tmp_path, bad):
    wav = np.full(1600, 0.1, dtype=np.float32)
    wav[800] = bad
    sf.write(tmp_path / "nan_clip.wav", wav, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan_clip.wav: 1 of 1600 samples are NaN or infinite \(the first at 0.050 s\)"):
        load_wav(tmp_path / "nan_clip.wav")


def test_fbank_frames_counts_the_frames_the_fbank_has():
    from eat_asd.audio import fbank_frames, raw_fbank

    for n, rate in [(16000, 16000), (399, 16000), (400, 16000), (44100, 44100), (22050 + 7, 22050), (8000, 48000)]:
        assert fbank_frames(n, rate) == raw_fbank(np.zeros(n, np.float32), rate).shape[0], (n, rate)


def test_feature_job_names_every_bad_clip_and_writes_nothing(tmp_path):
    """Before, NaN samples went into the features and failed only at scoring ('Input contains NaN')."""
    from eat_asd.features import FeatureSettings, build_feature_file

    good = write_tone(tmp_path / "good.wav")
    nan = np.full(16000, 0.1, dtype=np.float32)
    nan[5] = np.nan
    sf.write(tmp_path / "nan_clip.wav", nan, 16000, subtype="FLOAT")
    short = write_tone(tmp_path / "short_clip.wav", seconds=0.3)
    cut = tmp_path / "cut_clip.wav"
    cut.write_bytes(good.read_bytes()[:20000])
    paths = [str(p) for p in (good, tmp_path / "nan_clip.wav", short, cut)]
    with pytest.raises(AudioError, match="3 of 4 clip") as err:
        build_feature_file(paths, ["a", "b", "c", "d"], FeatureSettings(target_frames=96), tmp_path / "f.safetensors",
                           batch_size=2)
    for name in ("nan_clip.wav: 1 of 16000 samples are NaN", "short_clip.wav: too short: 28 fbank frames",
                 "cut_clip.wav: truncated"):
        assert name in str(err.value)
    assert not (tmp_path / "f.safetensors").exists()


def test_feature_file_stores_what_the_features_changed(tmp_path, caplog):
    from eat_asd.audio_notes import read_audio_notes
    from eat_asd.features import FeatureSettings, build_feature_file

    clips = [write_tone(tmp_path / "plain.wav", 1.0), write_tone(tmp_path / "cd.wav", 1.0, rate=44100, channels=2),
             write_tone(tmp_path / "short.wav", 0.8), write_tone(tmp_path / "long.wav", 1.5, rate=22050)]
    with caplog.at_level("INFO"):
        build_feature_file([str(p) for p in clips], list("abcd"), FeatureSettings(target_frames=96), tmp_path / "f.safetensors")
    notes = read_audio_notes(tmp_path / "f.safetensors")
    assert (notes.clips, notes.resampled, notes.multi_channel, notes.mixed_down, notes.padded, notes.cropped) == (4, 2, 1, 0, 1, 3)
    assert notes.sample_rates == {"44100": 1, "22050": 1} and notes.shortest_frames == 78 and notes.channel == "0"
    assert notes.examples["multi_channel"] == ["cd.wav"] and notes.examples["padded"] == ["short.wav"]
    line = [r for r in caplog.records if "f.safetensors" in r.getMessage()]
    assert len(line) == 1 and line[0].levelname == "WARNING"
    assert ("2 resampled to 16 kHz (from 22050 Hz: 1, 44100 Hz: 1); 1 with several channels: channel 0 used "
            "(features.channels = 0); 1 zero-padded") in line[0].getMessage()
    # the channel setting says what happened to the stereo clip
    build_feature_file([str(clips[1])], ["b"], FeatureSettings(target_frames=96, channels="mix"), tmp_path / "mix.safetensors")
    mixed = read_audio_notes(tmp_path / "mix.safetensors")
    assert (mixed.multi_channel, mixed.mixed_down) == (1, 1) and "1 with several channels: mixed down to mono" in mixed.summary()
    build_feature_file([str(clips[1])], ["b"], FeatureSettings(target_frames=96, channels="each"), tmp_path / "each.safetensors")
    assert "each channel embedded as a view of its own" in read_audio_notes(tmp_path / "each.safetensors").summary()
    # the summary the report and the terminal show: only feature files whose clips the features changed
    from eat_asd.audio_notes import changed_summaries

    build_feature_file([str(clips[0])], ["a"], FeatureSettings(target_frames=96), tmp_path / "plain.safetensors")
    lines = changed_summaries([tmp_path / "f.safetensors", tmp_path / "plain.safetensors"])
    assert len(lines) == 1 and lines[0].startswith("f.safetensors: 4 clips: 2 resampled to 16 kHz")


def test_audio_notes_of_older_or_broken_feature_files(tmp_path):
    from safetensors.torch import save_file

    from eat_asd.audio_notes import read_audio_notes

    save_file({"features": torch.zeros(1, 16, 128)}, str(tmp_path / "old.safetensors"), metadata={"keys": "[]"})
    assert read_audio_notes(tmp_path / "old.safetensors") is None
    (tmp_path / "broken.safetensors").write_bytes(b"\x05")
    with pytest.raises(ValueError, match="broken.safetensors: not a readable feature file"):
        read_audio_notes(tmp_path / "broken.safetensors")


def test_manifest_names_every_truncated_clip_at_once(tmp_path):
    """Before, truncated clips passed the manifest job silently (read as shorter clips)."""
    from eat_asd.data import discover

    folder = tmp_path / "data" / "fan" / "train"
    folder.mkdir(parents=True)
    full = write_tone(tmp_path / "full.wav").read_bytes()
    for i in range(3):
        (folder / f"section_00_source_train_normal_{i:04d}.wav").write_bytes(full if i == 1 else full[:30000])
    with pytest.raises(AudioError, match="2 of 3 clip") as err:
        discover(tmp_path / "data")
    assert "normal_0000.wav: truncated" in str(err.value) and "normal_0002.wav: truncated" in str(err.value)


def test_padding_up_to_the_next_patch_is_expected_not_a_warning(tmp_path, caplog):
    """Before, the demo's 2-s clips (198 frames, padded to target_frames 208, the next multiple of the 16-frame
    patch) gave one orange warning per feature file in the report: six for a run that did nothing unusual."""
    from eat_asd.audio_notes import changed_summaries, read_audio_notes
    from eat_asd.features import FeatureSettings, build_feature_file

    clip = str(write_tone(tmp_path / "two_seconds.wav", 2.0))
    for target, notable in ((208, False), (224, True)):  # 10 frames of zeros; 26 frames: more than a patch
        out = tmp_path / f"f{target}.safetensors"
        caplog.clear()
        with caplog.at_level("INFO"):
            build_feature_file([clip], ["a"], FeatureSettings(target_frames=target), out)
        notes = read_audio_notes(out)
        assert notes.padded == 1 and notes.shortest_frames == 198
        assert notes.changed is notable and bool(changed_summaries([out])) is notable
        (record,) = [r for r in caplog.records if out.name in r.getMessage()]
        assert record.levelname == ("WARNING" if notable else "INFO")
