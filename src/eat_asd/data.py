"""Finding clips in the DCASE Task 2 layouts (2020-2025 and dev_data/{train,test}/{machine}) and
turning their names into a manifest; auxiliary labels and the train/validation split."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from typing import TYPE_CHECKING
from .errors import AudioError, DataError

if TYPE_CHECKING:  # pandas and numpy load lazily: the workflow plans jobs with scan_clips alone
    import pandas as pd

log = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "train", "test": "test", "source_test": "test", "target_test": "test", "supplemental": "supplemental"}
SIMPLE_SPLITS = {"train", "test"}
# The workflow keeps each machine type's clips in these two parts, so that test clips never retrain the encoder.
PARTS = ("train", "test")
GRANULARITIES = ("machine", "section", "attribute")
COLUMNS = [
    "key", "path", "machine", "section", "domain", "split", "label", "attributes", "attribute_string",
    "clip_id", "filename", "layout", "sample_rate", "channels", "duration",
]

# DCASE 2021-2025: section_00_source_train_normal_0000_m-n_W.wav (attributes optional)
DCASE21 = re.compile(
    r"^section_(?P<section>\d+)_(?P<domain>source|target)_(?P<split>train|test|supplemental)_"
    r"(?P<label>[A-Za-z]+)_(?P<num>\d+)(?:_(?P<attrs>.+))?$"
)
# DCASE 2021-2025 evaluation data, unlabeled: section_00_0000.wav
DCASE_EVAL = re.compile(r"^section_(?P<section>\d+)_(?P<num>\d+)$")
# DCASE 2020: normal_id_00_00000000.wav
DCASE20 = re.compile(r"^(?P<label>normal|anomaly)_id_(?P<section>\d+)_(?P<num>\d+)$")
# DCASE 2020 evaluation data, unlabeled: id_05_00000000.wav
DCASE20_EVAL = re.compile(r"^id_(?P<section>\d+)_(?P<num>\d+)$")
LABEL_TOKEN = re.compile(r"(?:^|[_\-.])(normal|anomaly|anomalous|abnormal)(?:$|[_\-.\d])", re.IGNORECASE)




def parse_attributes(text: str | None) -> dict[str, str]:
    """'m-n_X' -> {'m-n': 'X'}; 'volt_1.5_wt_150' -> {'volt': '1.5', 'wt': '150'}; 'noAttribute(s)' -> {}."""
    if not text or text in ("noAttribute", "noAttributes"):
        return {}
    tokens = text.split("_")
    if len(tokens) % 2:  # a trailing key without value (e.g. 2021's '..._ambient')
        tokens.append("")
    return {tokens[i]: tokens[i + 1] for i in range(0, len(tokens), 2)}


def _norm_label(token: str) -> str:
    token = token.lower()
    if token == "normal":
        return "normal"
    if token in ("anomaly", "anomalous", "abnormal"):
        return "anomaly"
    return "unknown"


def parse_name(stem: str, split_dir: str, layout: str) -> dict | None:
    """Metadata from a file name (without .wav); None when no known pattern matches."""
    if m := DCASE21.match(stem):
        return dict(section=m["section"], domain=m["domain"], split=m["split"], label=_norm_label(m["label"]),
                    attribute_string=m["attrs"] or "", clip_id=m["num"], layout="dcase2021+")
    if m := DCASE_EVAL.match(stem):
        return dict(section=m["section"], domain="unknown", split=SPLIT_DIRS[split_dir], label="unknown",
                    attribute_string="", clip_id=m["num"], layout="dcase2021+")
    if m := DCASE20.match(stem):
        return dict(section=m["section"], domain="none", split=SPLIT_DIRS[split_dir], label=m["label"],
                    attribute_string="", clip_id=m["num"], layout="dcase2020")
    if m := DCASE20_EVAL.match(stem):
        return dict(section=m["section"], domain="none", split=SPLIT_DIRS[split_dir], label="unknown",
                    attribute_string="", clip_id=m["num"], layout="dcase2020")
    if layout == "simple" and (m := LABEL_TOKEN.search(stem)):
        return dict(section="00", domain="none", split=split_dir, label=_norm_label(m[1]),
                    attribute_string="", clip_id=stem, layout="simple")
    return None


def _locate(path: Path, root: Path) -> tuple[str, str, str] | None:
    """(machine, split dir, layout) from where a file sits below root."""
    parts = path.relative_to(root).parts
    if len(parts) >= 3 and parts[-2] in SPLIT_DIRS:  # <machine>/<split>/<file>
        return parts[-3], parts[-2], "dcase"
    if len(parts) >= 3 and parts[-3] in SIMPLE_SPLITS:  # <split>/<machine>/<file>
        return parts[-2], parts[-3], "simple"
    if len(parts) == 2 and parts[-2] in SPLIT_DIRS and root.name not in SPLIT_DIRS:  # root is the machine folder
        return root.name, parts[-2], "dcase"
    return None


def _examples(items, n: int = 5) -> str:
    items = [str(i) for i in items]
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _attribute_tables(root: Path) -> dict[str, dict[str, str]]:
    """basename -> attributes from the DCASE 2023+ attributes_XX.csv files (file_name, d1p, d1v, d2p, d2v, ...)."""
    import csv

    table: dict[str, dict[str, str]] = {}
    for path in sorted(root.rglob("attributes_*.csv")):
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns = reader.fieldnames or []
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DataError(f"{path}: cannot be read as an attributes table ({err})") from err
        if "file_name" not in columns:
            raise DataError(f"{path}: no 'file_name' column (columns: {columns})")
        keys = [c for c in columns if re.fullmatch(r"d\d+p", c)]
        for row in rows:
            table[Path(row["file_name"]).name] = {row[k]: row.get(k[:-1] + "v") or "" for k in keys if row.get(k)}
    return table


def scan_clips(root: str | Path, machines: list[str] | None = None) -> list[dict]:
    """Every clip below root as a dict of what its path and name say (no file is opened)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root}: no such folder")
    wavs = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    if not wavs:
        raise DataError(f"data root {root}: no .wav files below it")
    _check_no_empty_folders(root)
    attr_table = _attribute_tables(root)
    rows, unplaced, unnamed = [], [], []
    for path in wavs:
        where = _locate(path, root)
        if where is None:
            unplaced.append(path)
            continue
        machine, split_dir, layout = where
        if machines is not None and machine not in machines:
            continue
        meta = parse_name(path.stem, split_dir, layout)
        if meta is None:
            unnamed.append(path)
            continue
        attributes = parse_attributes(meta["attribute_string"]) or attr_table.get(path.name, {})
        # file names repeat across splits (DCASE 2020 has normal_id_00_00000000.wav in train/ and test/)
        rows.append(dict(key=f"{meta['split']}/{path.name}", path=str(path), machine=machine, filename=path.name,
                         attributes=json.dumps(attributes, sort_keys=True), **meta))
    if unnamed:
        raise DataError(f"{len(unnamed)} file name(s) match no known DCASE pattern: {_examples(unnamed)}")
    if unplaced:
        raise DataError(
            f"{len(unplaced)} file(s) are not in a <machine>/<train|test|supplemental>/ or "
            f"<train|test>/<machine>/ folder: {_examples(unplaced)}"
        )
    if not rows:
        raise DataError(f"data root {root}: no clips of machine types {machines}")
    return rows


def discover(root: str | Path, read_headers: bool = True, machines: list[str] | None = None) -> "pd.DataFrame":
    """Manifest of every clip below `root`, one row per clip (see COLUMNS).

    read_headers=False skips opening the files (sample_rate, channels and duration stay empty).
    """
    import numpy as np
    import pandas as pd

    manifest = pd.DataFrame(scan_clips(root, machines))
    manifest["sample_rate"], manifest["channels"], manifest["duration"] = np.nan, np.nan, np.nan
    if read_headers:
        _read_headers(manifest)
    manifest = manifest[COLUMNS].sort_values(["machine", "split", "section", "domain", "filename"], kind="stable")
    if manifest.duplicated(["machine", "key"]).any():
        dup = manifest.loc[manifest.duplicated(["machine", "key"], keep=False), "path"]
        raise DataError(f"{len(dup)} clips share a machine type, split and file name: {_examples(dup)}")
    return manifest.reset_index(drop=True)


def _check_no_empty_folders(root: Path) -> None:
    """An empty split folder, or an empty machine folder of the simple layout, is an error."""
    empty = []
    for folder in sorted(p for p in root.rglob("*") if p.is_dir() and p.name in SPLIT_DIRS):
        if any(folder.glob("*.wav")):
            continue
        subdirs = [d for d in folder.iterdir() if d.is_dir()]
        empty += [d for d in subdirs if not any(d.glob("*.wav"))] if subdirs else [folder]
    if empty:
        raise DataError(f"{len(empty)} folder(s) hold no .wav files: {_examples(empty)}")


def _read_headers(manifest: "pd.DataFrame") -> None:
    from .audio import SAMPLE_RATE, audio_info, clips_error

    info, problems = [], []
    for path in manifest["path"]:
        try:
            info.append(audio_info(path))
        except AudioError as err:  # a corrupt or truncated file: go on, to name them all at once
            problems.append(str(err))
    if problems:
        raise clips_error(problems, len(manifest))
    manifest["sample_rate"] = [i[0] for i in info]
    manifest["channels"] = [i[1] for i in info]
    manifest["duration"] = [i[2] for i in info]
    for machine, group in manifest.groupby("machine"):
        rates = group["sample_rate"].value_counts()
        if len(rates) > 1 or rates.index[0] != SAMPLE_RATE:
            off = group.loc[group["sample_rate"] != SAMPLE_RATE, "path"]
            log.warning("%s: sample rates %s (clips: count); %d clip(s) not at %d Hz will be resampled, e.g. %s",
                        machine, rates.to_dict(), len(off), SAMPLE_RATE, _examples(off, 3))
        multi = group.loc[group["channels"] > 1, "path"]
        if len(multi):
            log.warning("%s: %d clip(s) have more than one channel and are mixed to mono, e.g. %s",
                        machine, len(multi), _examples(multi, 3))


def check_manifest(manifest: "pd.DataFrame") -> list[str]:
    """Problems a run must stop on raise DataError; those it can go on with come back as warnings."""
    warnings = []
    for machine, group in manifest.groupby("machine"):
        train = group[(group["split"] == "train") & (group["label"] == "normal")]
        if train.empty:
            raise DataError(f"machine type {machine}: no normal training clips (looked under {machine}/train)")
        test = group[group["split"] == "test"]
        if test.empty:
            warnings.append(f"machine type {machine}: no test clips; only its memory bank will be built")
        elif (test["label"] != "unknown").any():
            for label in ("normal", "anomaly"):
                if not (test["label"] == label).any():
                    warnings.append(f"machine type {machine}: test set has no {label} clips; AUROC is undefined for it")
    for w in warnings:
        log.warning(w)
    return warnings


def read_manifest(path: str | Path) -> "pd.DataFrame":
    import pandas as pd

    frame = pd.read_csv(path, dtype={"section": str, "clip_id": str, "attribute_string": str}, keep_default_na=False)
    for col in ("sample_rate", "channels", "duration"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


# ------------------------------------------------------------------ auxiliary labels and split


def training_clips(manifest: "pd.DataFrame") -> "pd.DataFrame":
    """Normal clips of the training split: the only clips training and validation ever see."""
    return manifest[(manifest["split"] == "train") & (manifest["label"] == "normal")]


def resolve_granularity(clips: "pd.DataFrame", granularity: str = "auto") -> str:
    """'auto' picks the finest label the data supports: attributes, else sections, else machine types."""
    if granularity != "auto":
        if granularity not in GRANULARITIES:
            raise ValueError(f"label granularity {granularity!r}: choose one of auto, {', '.join(GRANULARITIES)}")
        return granularity
    if (clips["attributes"] != "{}").any():
        return "attribute"
    if clips.groupby("machine")["section"].nunique().max() > 1:
        return "section"
    return "machine"


def aux_labels(clips: "pd.DataFrame", granularity: str = "auto") -> "pd.Series":
    """Class name per clip: machine, machine|section, or machine|section|attributes."""
    level = resolve_granularity(clips, granularity)
    labels = clips["machine"].astype(str)
    if level in ("section", "attribute"):
        labels = labels + "|" + clips["section"].astype(str)
    if level == "attribute":
        attrs = clips["attributes"].map(lambda a: "_".join(f"{k}={v}" for k, v in sorted(json.loads(a).items())))
        labels = labels + "|" + attrs
    return labels.rename("aux_label")


def train_val_split(labels: "pd.Series", val_fraction: float, seed: int):
    """Stratified split of the training normals (positions into `labels`): (train_idx, val_idx).

    Each class gives round(fraction * n) clips to validation but keeps at least one for
    training; a class with one clip stays in training.
    """
    import numpy as np

    if not 0 <= val_fraction < 1:
        raise ValueError(f"validation fraction {val_fraction}: must be in [0, 1)")
    rng = np.random.default_rng(seed)
    values = labels.to_numpy()
    train, val = [], []
    for cls in sorted(set(values)):
        idx = np.flatnonzero(values == cls)
        idx = idx[rng.permutation(len(idx))]
        n_val = min(int(round(val_fraction * len(idx))), len(idx) - 1)
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(val, dtype=int))
