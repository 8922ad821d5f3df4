"""Finding clips in the DCASE Task 2 layouts (2020-2026 and dev_data/{train,test}/{machine}) and
turning their names into a manifest; auxiliary labels and the train/validation split."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from typing import TYPE_CHECKING
from .errors import AudioError, DataError

if TYPE_CHECKING:  # pandas and numpy load lazily: the workflow plans jobs with scan_clips alone
    import pandas as pd

log = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "train", "test": "test", "source_test": "test", "target_test": "test", "supplemental": "supplemental"}
SIMPLE_SPLITS = {"train", "test"}
# The workflow keeps each machine type's clips in these two parts, so that test clips never retrain the encoder;
# the supplemental recordings (DCASE 2025) serve training only and live in the train part.
PARTS = ("train", "test")
PART_SPLITS = {"train": ("train", "supplemental"), "test": ("test",)}
GRANULARITIES = ("machine", "section", "attribute")
DOMAINS = ("source", "target")
LABELS = ("normal", "anomaly")  # of a labelled test clip; "unknown" for the unlabelled (evaluation data)
# What a clip holds: the machine (every train/test clip), or, in supplemental/, noise only or an unknown kind.
KINDS = ("machine", "noise", "unknown")
COLUMNS = [
    "key", "path", "machine", "section", "domain", "split", "kind", "label", "attributes", "attribute_string",
    "clip_id", "filename", "layout", "sample_rate", "channels", "duration",
]
# File name endings of the formats libsndfile reads (soundfile.available_formats(); a test checks the two
# agree). Planning lists clips without importing soundfile (and numpy with it), hence a list here.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd",
                  ".caf", ".w64", ".rf64", ".wve", ".voc", ".paf", ".svx", ".nist", ".sph", ".ircam", ".sf",
                  ".mat", ".pvf", ".xi", ".htk", ".sds", ".avr", ".sd2", ".mpc")
# Files that may sit beside the clips without being named as skipped.
NOT_AUDIO_OK = (".csv", ".txt", ".md", ".json", ".yaml", ".yml")

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




def labelled(clips):
    """The clips with a known label (normal or anomaly): what metrics can rank."""
    return clips[clips["label"].isin(LABELS)]


def parse_attributes(text: str | None) -> dict[str, str]:
    """'m-n_X' -> {'m-n': 'X'}; 'volt_1.5_wt_150' -> {'volt': '1.5', 'wt': '150'};
    'noAttributes' (2023) and 'noAttribute' (2024-2026) -> {}."""
    if not text or text in ("noAttributes", "noAttribute"):
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
    """Metadata from a file name (without its suffix); None when no known pattern matches."""
    if split_dir == "supplemental":
        return parse_supplemental(stem)
    if m := DCASE21.match(stem):
        return dict(section=m["section"], domain=m["domain"], split=m["split"], label=_norm_label(m["label"]),
                    attribute_string=m["attrs"] or "", clip_id=m["num"], layout="dcase2021+", kind="machine")
    if m := DCASE_EVAL.match(stem):
        return dict(section=m["section"], domain="unknown", split=SPLIT_DIRS[split_dir], label="unknown",
                    attribute_string="", clip_id=m["num"], layout="dcase2021+", kind="machine")
    if m := DCASE20.match(stem):
        return dict(section=m["section"], domain="none", split=SPLIT_DIRS[split_dir], label=m["label"],
                    attribute_string="", clip_id=m["num"], layout="dcase2020", kind="machine")
    if m := DCASE20_EVAL.match(stem):
        return dict(section=m["section"], domain="none", split=SPLIT_DIRS[split_dir], label="unknown",
                    attribute_string="", clip_id=m["num"], layout="dcase2020", kind="machine")
    if layout == "simple" and (m := LABEL_TOKEN.search(stem)):
        return dict(section="00", domain="none", split=split_dir, label=_norm_label(m[1]),
                    attribute_string="", clip_id=stem, layout="simple", kind="machine")
    return None


def parse_supplemental(stem: str) -> dict:
    """Metadata of a file in a supplemental/ folder (DCASE 2025), whatever its name: the tokens before
    the clip number say what it holds, e.g. section_00_machine_source_0000_noAttribute (machine),
    section_00_noise_source_0000_noAttribute (noise), section_00_source_supplemental_machine_0000
    (machine), section_00_noise_supplemental_normal_0000 (noise); a name saying neither is 'unknown'."""
    tokens = stem.split("_")
    has_section = len(tokens) > 1 and tokens[0] == "section" and tokens[1].isdigit()
    body = tokens[2:] if has_section else tokens
    num = next((i for i, t in enumerate(body) if t.isdigit() and len(t) >= 3), None)
    head = [t.lower() for t in (body if num is None else body[:num])]
    if "noise" in head:
        kind = "noise"
    elif "machine" in head or "normal" in head:
        kind = "machine"
    else:
        kind = "unknown"
    domain = next((t for t in head if t in DOMAINS), "unknown")
    return dict(section=tokens[1] if has_section else "00", domain=domain, split="supplemental",
                label="normal" if kind == "machine" else "unknown",
                attribute_string="" if num is None else "_".join(body[num + 1:]),
                clip_id=stem if num is None else body[num], layout="supplemental", kind=kind)


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


def walk(root: Path) -> tuple[list[Path], list[Path]]:
    """(files, folders) below root in name order, entering linked folders too (a machine-type folder
    or a train/ folder may be a symlink); each real folder is read once, which also ends link loops."""
    seen: dict[str, Path] = {}
    files, folders = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        folder = Path(dirpath)
        real = os.path.realpath(folder)
        if real in seen:
            log.warning("%s is the folder %s again (through a link): read once", folder, seen[real])
            dirnames[:] = []
            continue
        seen[real] = folder
        dirnames.sort()
        if folder != root:
            folders.append(folder)
        files += [folder / name for name in filenames if not name.startswith(".")]
    return sorted(files), sorted(folders)


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def _attribute_tables(files: list[Path]) -> dict[tuple[str, str | None, str], dict[str, str]]:
    """(machine type, split folder or None, file name) -> attributes, from the DCASE 2023+ attributes_XX.csv
    files (file_name, d1p, d1v, d2p, d2v, ...). A table belongs to the machine-type folder it sits in; its
    file_name is <machine>/<split>/<name> or a bare name (then it applies to every split of that folder).
    File names repeat across machine types (..._noAttribute.wav), so a bare name alone never keys a row."""
    import csv

    table: dict[tuple[str, str | None, str], dict[str, str]] = {}
    for path in files:
        if not re.fullmatch(r"attributes_.*\.csv", path.name):
            continue
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
        machine = path.parent.name
        for row in rows:
            parts = row["file_name"].replace("\\", "/").split("/")
            split = parts[-2] if len(parts) >= 2 else None
            table[(machine, split, parts[-1])] = {row[k]: row.get(k[:-1] + "v") or "" for k in keys if row.get(k)}
    return table


def scan_clips(root: str | Path, machines: list[str] | None = None) -> list[dict]:
    """Every clip below root as a dict of what its path and name say (no file is opened)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root}: no such folder")
    files, folders = walk(root)
    audio = [p for p in files if is_audio(p) and p.is_file()]
    if not audio:
        raise DataError(f"data root {root}: no audio files below it (looked for {', '.join(AUDIO_SUFFIXES[:3])}, ...)")
    skipped = [p for p in files if not is_audio(p) and p.suffix.lower() not in NOT_AUDIO_OK]
    if skipped:
        log.warning("%d file(s) below %s are not audio files libsndfile reads and are skipped: %s",
                    len(skipped), root, _examples(skipped, 10))
    _check_no_empty_folders(folders)
    attr_table = _attribute_tables(files)
    rows, unplaced, unnamed = [], [], []
    for path in audio:
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
        attributes = (parse_attributes(meta["attribute_string"]) or attr_table.get((machine, split_dir, path.name))
                      or attr_table.get((machine, None, path.name), {}))
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
    manifest = manifest[COLUMNS].sort_values(["machine", "split", "kind", "section", "domain", "filename"], kind="stable")
    if manifest.duplicated(["machine", "key"]).any():
        dup = manifest.loc[manifest.duplicated(["machine", "key"], keep=False), "path"]
        raise DataError(f"{len(dup)} clips share a machine type, split and file name: {_examples(dup)}")
    return manifest.reset_index(drop=True)


def _check_no_empty_folders(folders: list[Path]) -> None:
    """An empty split folder, or an empty machine folder of the simple layout, is an error (an empty
    supplemental/ folder is not: supplemental recordings never fail a data set)."""
    def has_audio(folder: Path) -> bool:
        return any(is_audio(p) for p in folder.iterdir())

    empty = []
    for folder in (f for f in folders if f.name in SPLIT_DIRS and f.name != "supplemental"):
        if has_audio(folder):
            continue
        subdirs = [d for d in folder.iterdir() if d.is_dir()]
        empty += [d for d in subdirs if not has_audio(d)] if subdirs else [folder]
    if empty:
        raise DataError(f"{len(empty)} folder(s) hold no audio files: {_examples(empty)}")


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
            log.warning("%s: %d clip(s) have more than one channel (features.channels says which is used: "
                     "channel 0 unless set), e.g. %s", machine, len(multi), _examples(multi, 3))


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
            for label in LABELS:
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
    """Normal clips of the training split: the only clips training and validation ever see (and, with
    train.supplemental = normal, the supplemental machine recordings: supplemental_clips)."""
    return manifest[(manifest["split"] == "train") & (manifest["label"] == "normal")]


def supplemental_clips(manifest: "pd.DataFrame", kind: str = "machine") -> "pd.DataFrame":
    """The supplemental recordings of one kind: 'machine' (clean machine sound) or 'noise' (noise only)."""
    if "kind" not in manifest:
        return manifest.iloc[:0]
    return manifest[(manifest["split"] == "supplemental") & (manifest["kind"] == kind)]


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
