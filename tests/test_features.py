import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from eat_asd import features as feat
from eat_asd.errors import DamagedFileError
from eat_asd.features import FeatureFile, FeatureSettings, StaleFeaturesError, build_feature_file
from helpers import compute_features
from eat_asd.io import write_safetensors_rows

FS = FeatureSettings(target_frames=32)


@pytest.fixture
def wavs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"clip_{i}.wav"))
        sf.write(paths[-1], (0.1 * rng.standard_normal(16000 * (1 + i % 2) // 2)).astype(np.float32), 16000)
    return paths


def test_streamed_file_is_plain_safetensors_and_equals_compute(wavs, tmp_path):
    out = tmp_path / "f.safetensors"
    build_feature_file(wavs, [f"k{i}" for i in range(5)], FS, out, batch_size=2)
    direct = compute_features(wavs, FS)
    assert torch.equal(load_file(str(out))["features"], direct)  # any safetensors reader reads it
    ff = FeatureFile(out, FS)
    assert len(ff) == 5 and ff.shape == (5, 32, 128) and ff.keys == [f"k{i}" for i in range(5)]
    assert torch.equal(ff.read([4, 1, 2, 3]), direct[[4, 1, 2, 3]]) and ff.read([]).shape == (0, 32, 128)
    with pytest.raises(IndexError, match="rows outside"):
        ff.read([5])
    ff.check_hashes(wavs, ff.keys)
    assert not list(tmp_path.glob(".*tmp"))


def test_files_written_by_safetensors_itself_are_read(wavs, tmp_path):
    direct = compute_features(wavs[:3], FS)
    meta = {"settings": FS.key(), "keys": json.dumps(["a", "b", "c"]), "hashes": json.dumps(["x"] * 3)}
    save_file({"features": direct}, str(tmp_path / "old.safetensors"), metadata=meta)
    assert torch.equal(FeatureFile(tmp_path / "old.safetensors").read([2, 0]), direct[[2, 0]])


def test_building_holds_one_block_of_features(tmp_path, monkeypatch):
    """40 blocks of 1 MB go to disk with about one block in memory at a time."""
    def blocks(paths, settings, batch_size, desc, device, problems):
        for _ in range(0, len(paths), batch_size):
            yield torch.from_numpy(np.ones((batch_size, settings.target_frames, 128), np.float32))

    monkeypatch.setattr(feat, "feature_blocks", blocks)
    monkeypatch.setattr(feat, "content_hash", lambda p: "h")
    monkeypatch.setattr(feat, "clip_notes", lambda paths, settings: (feat.AudioNotes(), {}, {}))
    settings = FeatureSettings(target_frames=256)  # 128 KB per clip, 8 clips per block
    tracemalloc.start()
    build_feature_file([f"c{i}" for i in range(320)], [f"k{i}" for i in range(320)], settings, tmp_path / "f.safetensors", batch_size=8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (tmp_path / "f.safetensors").stat().st_size > 40 * 2**20
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MB while writing 40 MB"


def test_a_damaged_feature_file_names_its_missing_rows_and_is_removed(tmp_path, wavs):
    """Before, a truncated feature file named the rows asked for (not the ones missing) and stayed, so a rerun
    failed the same way; now it names the rows it lacks and is removed, so the next run computes it again."""
    out = tmp_path / "f.safetensors"
    build_feature_file(wavs, [f"k{i}" for i in range(5)], FS, out)
    row = FS.target_frames * 128 * 4
    whole = out.read_bytes()
    out.write_bytes(whole[: len(whole) - 2 * row - row // 2])  # rows 0 and 1 complete, 2 cut, 3 and 4 gone
    with pytest.raises(DamagedFileError, match=r"truncated: .* 2 of its 5 rows complete \(rows 2..4 missing\)"):
        FeatureFile(out)
    assert not out.exists()
    out.write_bytes(whole[:6])  # not even the header's length
    with pytest.raises(DamagedFileError, match="f.safetensors: not a readable safetensors file"):
        FeatureFile(out)
    assert not out.exists()


def test_bad_files_are_named(tmp_path, wavs):
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(ValueError, match="junk.safetensors: not a readable safetensors file"):
        FeatureFile(tmp_path / "junk.safetensors")
    save_file({"other": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(StaleFeaturesError, match="other.safetensors: not a feature file"):
        FeatureFile(tmp_path / "other.safetensors")
    out = tmp_path / "f.safetensors"
    build_feature_file(wavs, [f"k{i}" for i in range(5)], FS, out)
    out.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(DamagedFileError, match=r"f.safetensors: truncated: .* 4 of its 5 rows complete \(rows 4..4 missing\); "
                                               "removed it, so that the next run computes it again"):
        FeatureFile(out).read([4])
    assert not out.exists()
    with pytest.raises(ValueError, match="3 rows written, 4 announced"):
        write_safetensors_rows(tmp_path / "short.safetensors", "x", (2,), 4, [np.zeros((3, 2))], {})
    assert not (tmp_path / "short.safetensors").exists() and not list(tmp_path.glob(".*tmp"))
