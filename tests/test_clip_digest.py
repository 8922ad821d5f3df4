"""Content digests at planning: changed bytes are seen whatever the modification time; unchanged bytes are not."""

import os
import shutil

import pytest

from eat_asd import clip_digest
from eat_asd.clip_digest import ClipHashes
from eat_asd.errors import DataError, LockError
from eat_asd.plan import check_names


def _clips(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"clip_{i}.wav"
        path.write_bytes(bytes([i]) * 1000)
        paths.append(str(path))
    return paths


def test_content_change_with_the_time_kept_changes_the_digest(tmp_path):
    paths = _clips(tmp_path / "data")
    before = ClipHashes(tmp_path / "cache.json").digest(paths, tmp_path / "data")
    st = os.stat(paths[1])
    with open(paths[1], "r+b") as f:  # same size, other bytes, old modification time: what cp -p does
        f.write(b"\xff")
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(paths[1]).st_mtime_ns == st.st_mtime_ns
    assert ClipHashes(tmp_path / "cache.json").digest(paths, tmp_path / "data") != before


def test_unchanged_clips_are_not_read_again(tmp_path, monkeypatch):
    paths = _clips(tmp_path / "data")
    cache = ClipHashes(tmp_path / "cache.json")
    first = cache.digest(paths, tmp_path / "data")
    cache.save()
    calls = []
    monkeypatch.setattr(clip_digest, "content_hash", lambda p: calls.append(p) or "x")
    assert ClipHashes(tmp_path / "cache.json").digest(paths, tmp_path / "data") == first
    assert calls == []


def test_a_copied_dataset_keeps_its_digest(tmp_path):
    paths = _clips(tmp_path / "a")
    first = ClipHashes(tmp_path / "cache.json").digest(paths, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # new inodes and ctimes, same bytes
    copied = [p.replace(f"{os.sep}a{os.sep}", f"{os.sep}b{os.sep}") for p in paths]
    assert ClipHashes(tmp_path / "cache.json").digest(copied, tmp_path / "b") == first


def test_unreadable_cache_is_rebuilt(tmp_path):
    paths = _clips(tmp_path / "data")
    (tmp_path / "cache.json").write_text("{not json")
    assert ClipHashes(tmp_path / "cache.json").digest(paths, tmp_path / "data")


@pytest.mark.parametrize("name", ["fan`touch X`", "fan$(id)", "fan dir", "fan;rm", "-fan", "fan\n"])
def test_unsafe_names_are_refused_naming_the_file(tmp_path, name):
    with pytest.raises(DataError, match="may hold only letters"):
        check_names([dict(machine=name, section="00", path=f"/data/{name}/train/a.wav")], tmp_path)


def test_plain_names_pass(tmp_path):
    check_names([dict(machine=m, section="00", path="x") for m in ("fan", "ToyCar", "3DPrinter", "slide_rail", "v1.2")],
                tmp_path)


def test_results_lock_is_exclusive_between_processes(tmp_path):
    import subprocess
    import sys

    from eat_asd.lock import LOCK_NAME, lock_results

    lock_results(tmp_path)
    assert lock_results(tmp_path) == tmp_path.resolve() / LOCK_NAME  # the same process may ask again
    other = subprocess.run([sys.executable, "-c", "import sys; from eat_asd.lock import lock_results; lock_results(sys.argv[1])",
                            str(tmp_path)], capture_output=True, text=True)
    assert other.returncode != 0 and "is in use by another run" in other.stderr and str(os.getpid()) in other.stderr
    assert issubclass(LockError, Exception)
