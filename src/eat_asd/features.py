"""Feature cache: the normalised fbank of every clip of a machine type, computed once and stored
in one safetensors file keyed by each clip's content hash and the feature settings. A clip has one
row per view: one, or one per channel with features.channels = each (rows in channel order)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .audio import (MEL_BINS, audio_info, check_channels, check_length, clips_error, eat_fbank_batch, fbank_frames, n_views,
                    read_clip)
from .audio_notes import METADATA_KEY, AudioNotes
from .config import schema_settings
from .errors import AudioError, StaleFeaturesError
from .io import content_hash, discard_damaged, read_safetensors_header, safetensors_damage, write_safetensors_rows

log = logging.getLogger(__name__)

RECIPE = "eat-kaldi-fbank-128-v1"  # bump when the feature code changes what it computes
TENSOR = "features"  # the one tensor of a feature file: (clips, frames, 128) float32


@dataclass(frozen=True)
@schema_settings("features")
class FeatureSettings:
    target_frames: int  # 10 ms frames per clip; a multiple of 16 (the patch size)
    channels: int | str  # a channel index, "mix" or "each" (see audio.select_channels)

    def key(self) -> str:
        return json.dumps({"recipe": RECIPE, **asdict(self)}, sort_keys=True)


def clip_notes(paths: list[str], settings: FeatureSettings) -> tuple[AudioNotes, dict[str, str], dict[str, int]]:
    """What the features will change about the clips (resampling, channels, padding), from their headers;
    the clips these show to be unusable (truncated, empty, far too short, too few channels), each with its
    problem; and the channels of each usable clip. With features.channels = each, every clip must have
    as many channels as the first (a clip's embedding concatenates its views)."""
    notes = AudioNotes(channel=str(settings.channels))
    notes.target_frames = settings.target_frames
    problems: dict[str, str] = {}
    channels_of: dict[str, int] = {}
    for path in paths:
        try:
            sample_rate, channels, seconds = audio_info(path)
            check_channels(path, settings.channels, channels)
            frames = fbank_frames(round(seconds * sample_rate), sample_rate)
            check_length(path, frames, settings.target_frames)
        except AudioError as err:
            problems[path] = str(err)
            continue
        notes.add(path, sample_rate, channels, frames)
        channels_of[path] = channels
    if settings.channels == "each" and len(set(channels_of.values())) > 1:
        first = next(iter(channels_of.values()))
        for path, channels in channels_of.items():
            if channels != first:
                problems[path] = (f"{path}: has {channels} channel(s), {Path(paths[0]).name} and others have {first}; "
                                  "features.channels = each needs the same number in every clip of a machine type")
    return notes, problems, channels_of


def feature_blocks(paths: list[str], settings: FeatureSettings, batch_size: int = 32, desc: str = "fbank", device=None,
                   problems: dict[str, str] | None = None):
    """(k, target_frames, 128) float32 blocks for the given audio files, in order, batch_size clips each,
    every clip as many rows as it has views (fbank on `device`, e.g. a GPU). Unusable clips (`problems`
    found before, or non-finite samples found here) stop the blocks: reading goes on to name every such
    clip in one AudioError at the end, but nothing more is computed."""
    problems = dict(problems or {})
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch", mininterval=2):
        chunk = []
        for path in paths[start : start + batch_size]:
            if path in problems:
                continue
            try:
                chunk.append(read_clip(path, settings.channels))
            except AudioError as err:
                problems[path] = str(err)
        if problems:
            continue
        views = [(clip.sample_rate, view) for clip in chunk for view in clip.views]
        out = torch.empty(len(views), settings.target_frames, MEL_BINS)
        by_rate: dict[int, list[int]] = {}
        for i, (rate, _) in enumerate(views):
            by_rate.setdefault(rate, []).append(i)
        for sr, idx in by_rate.items():
            out[idx] = eat_fbank_batch([views[i][1] for i in idx], sr, settings.target_frames, device)
        yield out
    if problems:
        raise clips_error([problems[p] for p in paths if p in problems], len(paths))


def build_feature_file(paths: list[str], keys: list[str], settings: FeatureSettings, out: str | Path,
                       batch_size: int = 32, desc: str = "fbank", device=None) -> AudioNotes:
    """Compute features for the clips and write them, with their keys and audio notes, atomically to `out`,
    one batch at a time: the job holds one batch of features, whatever the number of clips. Each row
    is stored with its clip's key (repeated for the views of a clip) and its view number."""
    if len(paths) != len(keys):
        raise ValueError(f"{out}: {len(paths)} clips but {len(keys)} keys")
    notes, problems, channels_of = clip_notes(paths, settings)
    if not problems:
        log.log(logging.WARNING if notes.changed else logging.INFO, "%s: %s", Path(out).name, notes.summary())
    per_clip = [n_views(settings.channels, channels_of.get(p, 1)) for p in paths]
    hashes = [content_hash(p) for p in paths]
    row_keys = [k for k, n in zip(keys, per_clip) for _ in range(n)]
    meta = {"settings": settings.key(), "keys": json.dumps(row_keys),
            "hashes": json.dumps([h for h, n in zip(hashes, per_clip) for _ in range(n)]),
            "views": json.dumps([v for n in per_clip for v in range(n)]), METADATA_KEY: notes.to_json()}
    blocks = (b.numpy() for b in feature_blocks(paths, settings, batch_size, desc, device, problems))
    write_safetensors_rows(out, TENSOR, (settings.target_frames, MEL_BINS), len(row_keys), blocks, meta)
    return notes


class FeatureFile:
    """Read access to a feature file by rows, with plain reads rather than a memory map, so that a job
    reading many clips keeps only the rows it asked for in memory."""

    def __init__(self, path: str | Path, settings: FeatureSettings | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: feature file not found")
        try:
            header, self._data_start = read_safetensors_header(self.path)
        except ValueError:
            raise discard_damaged(self.path, safetensors_damage(self.path)) from None
        meta, info = header.get("__metadata__") or {}, header.get(TENSOR) or {}
        self.metadata: dict[str, str] = meta
        if not {"keys", "hashes", "settings"} <= set(meta) or info.get("dtype") != "F32" or len(info.get("shape", ())) != 3:
            raise StaleFeaturesError(f"{self.path}: not a feature file (no float32 '{TENSOR}' rows with keys, hashes and settings)")
        self.keys: list[str] = json.loads(meta["keys"])  # the manifest's clip keys, one per row (per view)
        self.hashes: list[str] = json.loads(meta["hashes"])
        self.views: list[int] = json.loads(meta.get("views") or "null") or [0] * len(self.keys)  # view (channel) of each row
        self.settings_key = meta["settings"]
        self.shape = tuple(info["shape"])
        self._row_bytes = 4 * self.shape[1] * self.shape[2]
        damage = safetensors_damage(self.path, TENSOR, self._row_bytes)
        if damage:
            raise discard_damaged(self.path, damage)
        self._data_start += info["data_offsets"][0]
        if settings is not None and settings.key() != self.settings_key:
            raise StaleFeaturesError(f"{self.path}: computed with {self.settings_key}, expected {settings.key()}")
        self._index: dict[str, list[int]] = {}
        for i, key in enumerate(self.keys):
            self._index.setdefault(key, []).append(i)
        self._file = open(self.path, "rb")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "FeatureFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, keys: list[str]) -> np.ndarray:
        """The rows of the clips' views, clip by clip, each clip's views in channel order."""
        missing = [k for k in keys if k not in self._index]
        if missing:
            raise StaleFeaturesError(f"{self.path}: no features for {len(missing)} clip(s), e.g. {missing[:3]}")
        return np.array([r for k in keys for r in self._index[k]], dtype=int)

    def read(self, rows) -> torch.Tensor:
        """Features of the given row positions, (len(rows), T, 128); runs of consecutive rows are read at once."""
        rows = np.asarray(rows, dtype=int).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"{self.path}: rows outside 0..{self.shape[0] - 1}")
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            if hi > lo:
                self._file.seek(self._data_start + int(rows[lo]) * self._row_bytes)
                if self._file.readinto(memoryview(out[lo:hi]).cast("B")) != (hi - lo) * self._row_bytes:
                    # cut short since it was opened
                    raise discard_damaged(self.path, safetensors_damage(self.path, TENSOR, self._row_bytes) or "truncated")
        return torch.from_numpy(out)

    def check_hashes(self, paths: list[str], keys: list[str]) -> None:
        """Raise if any clip's content changed since its features were computed."""
        self.rows(keys)
        changed = [k for k, p in zip(keys, paths) if content_hash(p) != self.hashes[self._index[k][0]]]
        if changed:
            raise StaleFeaturesError(f"{self.path}: {len(changed)} clip(s) changed since features were computed, e.g. {changed[:3]}")
