import json

import numpy as np
import pytest
import soundfile as sf
import torch

from eat_asd.audio import AudioError, eat_fbank, eat_fbank_batch, load_wav


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


def test_stereo_is_mixed_to_mono(tmp_path):
    left = np.full(1600, 0.5, np.float32)
    right = np.full(1600, -0.25, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    wav, sr = load_wav(tmp_path / "s.wav")
    assert wav.shape == (1600,) and np.allclose(wav, 0.125)


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
