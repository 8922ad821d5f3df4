"""Small file helpers: atomic writes, so an interrupted job never leaves a half file behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from .layout import EMBEDDINGS_SUFFIX


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success rename it over `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file private (0600), and writers that replace the file themselves
        # (safetensors does) make it private again: set the mode a plain open() would give last,
        # so results on a shared filesystem stay readable by the group as the umask allows
        tmp.chmod(FILE_MODE & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def content_hash(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes: what decides whether a clip changed, whatever its modification time."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield an empty temporary folder beside `path`; on success it replaces `path` (files and
    folders get the modes the umask gives), on failure it is deleted and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")
    try:
        yield tmp
        mask = _umask()
        for folder, dirs, files in os.walk(tmp):
            for name in files:
                os.chmod(os.path.join(folder, name), FILE_MODE & ~mask)
            os.chmod(folder, DIR_MODE & ~mask)
        if path.exists():
            path.rename(old)
        try:
            tmp.rename(path)
        except BaseException:
            if old.exists():  # put the previous folder back rather than lose it
                old.rename(path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


FILE_MODE, DIR_MODE = 0o666, 0o777  # what open() and mkdir() ask for before the umask


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _finite(obj):
    """NaN and infinities as None: JSON has no such numbers, and strict readers (jq, browsers) reject them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
    write_text(path, text + "\n")


def write_csv(path: str | os.PathLike, frame, **kwargs) -> None:
    """Write a pandas DataFrame as CSV atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


# safetensors, written and read row block by row block (numpy only: no torch in light code)
_ST_DTYPES = {"float32": "F32"}


def write_safetensors_rows(path: str | os.PathLike, name: str, row_shape: tuple[int, ...], n_rows: int, blocks,
                           metadata: dict[str, str]) -> None:
    """Write one float32 tensor `name` of shape (n_rows, *row_shape) in the safetensors format, atomically,
    from an iterable of row blocks (arrays of shape (k, *row_shape)): memory holds one block, never the tensor."""
    import numpy as np

    shape = [int(n_rows), *map(int, row_shape)]
    nbytes = 4 * int(np.prod(shape))
    header = {"__metadata__": metadata, name: {"dtype": _ST_DTYPES["float32"], "shape": shape, "data_offsets": [0, nbytes]}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
    written = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            for block in blocks:
                block = np.ascontiguousarray(block, dtype=np.float32)
                if block.shape[1:] != tuple(shape[1:]):
                    raise ValueError(f"{path}: row block of shape {block.shape}, expected (k, {', '.join(map(str, shape[1:]))})")
                f.write(block.tobytes())
                written += len(block)
        if written != n_rows:
            raise ValueError(f"{path}: {written} rows written, {n_rows} announced")


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, int]:
    """The header of a safetensors file and the byte offset where its data starts."""
    path = Path(path)
    with open(path, "rb") as f:
        size = f.read(8)
        n = int.from_bytes(size, "little") if len(size) == 8 else -1
        raw = f.read(n) if 0 < n < 100_000_000 else b""
    try:
        header = json.loads(raw)
    except ValueError:
        header = None
    if not isinstance(header, dict) or len(raw) != n:
        raise ValueError(f"{path}: not a safetensors file (unreadable header)")
    return header, 8 + n


# ----------------------------------------------------------------------------- damaged intermediate files


def safetensors_damage(path: str | os.PathLike, tensor: str | None = None, row_bytes: int | None = None) -> str | None:
    """What is wrong with a safetensors file that was cut short or corrupted, or None: the header must be
    readable and the file must hold every byte it announces. With `tensor` and `row_bytes`, a cut-off
    tensor names its complete rows and the missing ones."""
    try:
        header, start = read_safetensors_header(path)
    except ValueError:
        return "not a readable safetensors file (its header is cut off or corrupt)"
    ends = [info["data_offsets"][1] for key, info in header.items()
            if key != "__metadata__" and isinstance(info, dict) and len(info.get("data_offsets", ())) == 2]
    size = Path(path).stat().st_size
    if size >= start + max(ends, default=0):
        return None
    info = header.get(tensor) if tensor else None
    if info and row_bytes and info.get("shape"):
        n = int(info["shape"][0])
        complete = max(0, min(n, (size - start - info["data_offsets"][0]) // row_bytes))
        return (f"truncated: {size} of {start + max(ends)} bytes, {complete} of its {n} rows complete "
                f"(rows {complete}..{n - 1} missing)")
    return f"truncated: {size} of {start + max(ends)} bytes"


def npz_damage(path: str | os.PathLike) -> str | None:
    """What is wrong with a NumPy .npz file that was cut short or corrupted, or None (its zip directory is read)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        return f"not a readable {EMBEDDINGS_SUFFIX} file, truncated or corrupt ({err})"
    return None


def discard_damaged(path: str | os.PathLike, problem: str):
    """Remove a damaged intermediate file, so that the next run computes it again (Snakemake reruns the job
    whose output is missing), and return the error that names it and says so."""
    from .errors import DamagedFileError

    Path(path).unlink(missing_ok=True)
    return DamagedFileError(f"{path}: {problem}; removed it, so that the next run computes it again")


def discard_damaged_files(paths) -> list[str]:
    """Remove the feature files (.safetensors) and embeddings (.npz) among `paths` that were cut short or
    corrupted (a full disk, an interrupted copy), before a run plans its jobs, so that it computes them
    again; one line per file removed. Only headers and zip directories are read."""
    lines = []
    for path in map(Path, paths):
        if not path.is_file():
            continue
        damage = npz_damage(path) if path.suffix == EMBEDDINGS_SUFFIX else safetensors_damage(path)
        if damage:
            lines.append(str(discard_damaged(path, damage)))
    return lines
