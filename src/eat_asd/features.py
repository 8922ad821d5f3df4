"""Feature cache: the normalised fbank of every clip of a machine type, computed once and stored
in one safetensors file keyed by each clip's content hash and the feature settings."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .audio import check_length, clips_error, eat_fbank_batch, fbank_frames, read_clip
from .audio_notes import METADATA_KEY, AudioNotes
from .config import schema_settings
from .errors import AudioError, StaleFeaturesError
from .io import atomic_path, content_hash

log = logging.getLogger(__name__)

RECIPE = "eat-kaldi-fbank-128-v1"  # bump when the feature code changes what it computes




@dataclass(frozen=True)
@schema_settings("features")
class FeatureSettings:
    target_frames: int  # 10 ms frames per clip; a multiple of 16 (the patch size)

    def key(self) -> str:
        return json.dumps({"recipe": RECIPE, **asdict(self)}, sort_keys=True)


def compute_features(paths: list[str], settings: FeatureSettings, batch_size: int = 32, desc: str = "fbank",
                     device=None, notes: AudioNotes | None = None) -> torch.Tensor:
    """(N, target_frames, 128) float32 for the given wav files, in order (fbank on `device`, e.g. a GPU).

    Every clip is checked as it is read (truncated, non-finite samples, far too short); one
    AudioError lists all the clips at fault. `notes` counts what the features change about them.
    """
    notes = notes if notes is not None else AudioNotes()
    notes.target_frames = settings.target_frames
    out = torch.empty(len(paths), settings.target_frames, 128)
    problems: list[str] = []
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch", mininterval=2):
        chunk = []
        for path in paths[start : start + batch_size]:
            try:
                clip = read_clip(path)
                frames = fbank_frames(len(clip.waveform), clip.sample_rate)
                check_length(path, frames, settings.target_frames)
            except AudioError as err:
                problems.append(str(err))
                continue
            notes.add(path, clip.sample_rate, clip.channels, frames)
            chunk.append(clip)
        if problems:  # go on reading, to name every bad clip at once, but compute nothing more
            continue
        by_rate: dict[int, list[int]] = {}
        for i, clip in enumerate(chunk):
            by_rate.setdefault(clip.sample_rate, []).append(i)
        for sr, idx in by_rate.items():
            out[[start + i for i in idx]] = eat_fbank_batch([chunk[i].waveform for i in idx], sr, settings.target_frames, device)
    if problems:
        raise clips_error(problems, len(paths))
    return out


def build_feature_file(paths: list[str], keys: list[str], settings: FeatureSettings, out: str | Path,
                       batch_size: int = 32, desc: str = "fbank", device=None) -> AudioNotes:
    """Compute features for the clips and write them, with their keys and audio notes, atomically to `out`."""
    from safetensors.torch import save_file

    hashes = [content_hash(p) for p in paths]
    notes = AudioNotes()
    feats = compute_features(paths, settings, batch_size, desc, device, notes)
    log.log(logging.WARNING if notes.changed else logging.INFO, "%s: %s", Path(out).name, notes.summary())
    meta = {"settings": settings.key(), "keys": json.dumps(keys), "hashes": json.dumps(hashes),
            METADATA_KEY: notes.to_json()}
    with atomic_path(out) as tmp:
        save_file({"features": feats.contiguous()}, str(tmp), metadata=meta)
    return notes


class FeatureFile:
    """Read access to a feature file without loading it whole (safetensors slices are read on demand)."""

    def __init__(self, path: str | Path, settings: FeatureSettings | None = None):
        from safetensors import safe_open

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: feature file not found")
        self._file = safe_open(str(self.path), framework="pt")
        meta = self._file.metadata()
        self.keys: list[str] = json.loads(meta["keys"])  # the manifest's clip keys, one per row
        self.hashes: list[str] = json.loads(meta["hashes"])
        self.settings_key = meta["settings"]
        self._slice = self._file.get_slice("features")
        self.shape = tuple(self._slice.get_shape())
        if settings is not None and settings.key() != self.settings_key:
            raise StaleFeaturesError(f"{self.path}: computed with {self.settings_key}, expected {settings.key()}")
        self._index = {key: i for i, key in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, keys: list[str]) -> np.ndarray:
        missing = [k for k in keys if k not in self._index]
        if missing:
            raise StaleFeaturesError(f"{self.path}: no features for {len(missing)} clip(s), e.g. {missing[:3]}")
        return np.array([self._index[k] for k in keys], dtype=int)

    def read(self, rows) -> torch.Tensor:
        """Features of the given row positions, (len(rows), T, 128)."""
        rows = np.asarray(rows, dtype=int)
        if len(rows) and np.all(np.diff(rows) == 1):
            return self._slice[int(rows[0]) : int(rows[-1]) + 1]
        return torch.stack([self._slice[int(r) : int(r) + 1][0] for r in rows]) if len(rows) else torch.empty(0, *self.shape[1:])

    def check_hashes(self, paths: list[str], keys: list[str]) -> None:
        """Raise if any clip's content changed since its features were computed."""
        rows = self.rows(keys)
        changed = [k for k, r, p in zip(keys, rows, paths) if content_hash(p) != self.hashes[r]]
        if changed:
            raise StaleFeaturesError(f"{self.path}: {len(changed)} clip(s) changed since features were computed, e.g. {changed[:3]}")
