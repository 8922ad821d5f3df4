"""Atomic writes: an interrupted write leaves the old file (or none), never half a file."""

import os
import stat

import pytest

import json
import math

from eat_asd.io import atomic_path, write_json, write_text


def test_success_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "out.csv"
    write_text(target, "old\n")
    write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.csv"]


def test_failure_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("complete\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("job killed")
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_written_files_follow_the_umask_not_private_temp_modes(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o644


def test_json_has_no_nan(tmp_path):
    write_json(tmp_path / "s.json", {"auc": math.nan, "values": [1.0, math.inf], "n": 3})
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auc": None, "values": [1.0, None], "n": 3}


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    from eat_asd.io import atomic_dir

    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("job killed")
    assert (target / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["adapter"]
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["b.txt"] and [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_atomic_dir_puts_the_old_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    from pathlib import Path

    from eat_asd.io import atomic_dir

    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    real = Path.rename

    def fail_for_the_new_folder(self, dest):
        if self.name.endswith(".tmp"):
            raise OSError("disk gone")
        return real(self, dest)

    monkeypatch.setattr(Path, "rename", fail_for_the_new_folder)
    with pytest.raises(OSError, match="disk gone"):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_damaged_embeddings_are_named_and_removed(tmp_path):
    """Before, a truncated embeddings file ended in zipfile.BadZipFile without its name, and stayed for the next run."""
    import numpy as np
    import pandas as pd

    from eat_asd.errors import DamagedFileError
    from eat_asd.stages import read_embeddings

    path = tmp_path / "fan.npz"
    np.savez(path, embeddings=np.zeros((4, 8), np.float32), keys=np.array(list("abcd")), roles=np.array(["bank"] * 4))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DamagedFileError, match=r"fan.npz: not a readable .npz file, truncated or corrupt .*; removed it, "
                                               "so that the next run computes it again"):
        read_embeddings(path, pd.DataFrame(columns=["key"]))
    assert not path.exists()
    np.savez(path, embeddings=np.zeros((4, 8), np.float32), keys=np.array(list("abc")), roles=np.array(["bank"] * 4))
    with pytest.raises(DamagedFileError, match="4 embeddings, 3 keys and 4 roles"):
        read_embeddings(path, pd.DataFrame(columns=["key"]))


def test_planning_removes_damaged_intermediates_and_keeps_good_ones(tmp_path):
    import numpy as np

    from eat_asd.io import discard_damaged_files, write_safetensors_rows

    good_npz, bad_npz = tmp_path / "a.npz", tmp_path / "b.npz"
    for p in (good_npz, bad_npz):
        np.savez(p, x=np.arange(100.0))
    bad_npz.write_bytes(bad_npz.read_bytes()[:-30])
    good_st, bad_st = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for p in (good_st, bad_st):
        write_safetensors_rows(p, "features", (4,), 3, [np.ones((3, 4))], {})
    bad_st.write_bytes(bad_st.read_bytes()[:-1])
    lines = discard_damaged_files([good_npz, bad_npz, good_st, bad_st, tmp_path / "missing.npz"])
    assert len(lines) == 2 and lines[0].startswith(f"{bad_npz}: not a readable .npz file")
    assert lines[1].startswith(f"{bad_st}: truncated: ") and lines[1].endswith("the next run computes it again")
    assert good_npz.exists() and good_st.exists() and not bad_npz.exists() and not bad_st.exists()
