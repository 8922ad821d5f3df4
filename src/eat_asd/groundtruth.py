"""Labels for unlabeled evaluation clips from the ground-truth folders the official DCASE
evaluators publish (nttcslab dcase2023-2025_task2_evaluator layout):

    DIR/ground_truth_data/ground_truth_<machine>_section_<XX>_test.csv     <file name>,<0|1>  (1 = anomaly)
    DIR/ground_truth_domain/ground_truth_<machine>_section_<XX>_test.csv   <file name>,<0|1>  (0 = source, 1 = target)
    DIR/ground_truth_attributes/ (optional) anonymised file name -> original name, either
        ground_truth_<machine>_section_<XX>_test.csv   <anonymised>.wav,<original name>  (no header)
        <machine>/attributes_<XX>.csv                  header file_name,<original name column>

File names may be the anonymised ones (section_00_0001.wav) or, with the attributes files, the
original ones (section_00_source_test_normal_0001_<attributes>.wav).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .data import DCASE21, DataError
from .data import DOMAINS as DOMAIN_NAMES
from .data import LABELS as LABEL_NAMES

if TYPE_CHECKING:  # pandas loads lazily: the workflow lists the files while planning
    import pandas as pd

DATA_DIR, DOMAIN_DIR, ATTRIBUTES_DIR = "ground_truth_data", "ground_truth_domain", "ground_truth_attributes"
FILE_NAME = re.compile(r"^ground_truth_(?P<machine>.+)_section_(?P<section>\d+)_test\.csv$")
LABELS = dict(zip("01", LABEL_NAMES))  # 1 = anomaly
DOMAINS = dict(zip("01", DOMAIN_NAMES))  # 1 = target


def _checked_root(root: str | Path) -> Path:
    root = Path(root)
    if not (root / DATA_DIR).is_dir() or not (root / DOMAIN_DIR).is_dir():
        raise DataError(f"ground_truth: {root} needs the folders {DATA_DIR}/ and {DOMAIN_DIR}/")
    return root


def _name(machine: str, section: str) -> str:
    return f"ground_truth_{machine}_section_{section}_test.csv"


def sections(root: str | Path, machine: str) -> list[str]:
    """Sections of a machine type that have a ground_truth_data file."""
    folder = Path(root) / DATA_DIR
    found = [FILE_NAME.match(p.name) for p in folder.glob(f"ground_truth_{machine}_section_*_test.csv")]
    return sorted(m["section"] for m in found if m and m["machine"] == machine)


def ground_truth_files(root: str | Path, machine: str) -> list[Path]:
    """Every ground-truth file of a machine type (what its scores depend on)."""
    root = Path(root)
    files = []
    for section in sections(root, machine):
        files += [root / d / _name(machine, section) for d in (DATA_DIR, DOMAIN_DIR, ATTRIBUTES_DIR)]
        files.append(root / ATTRIBUTES_DIR / machine / f"attributes_{section}.csv")
    return [f for f in files if f.is_file()]


def check_covers(root: str | Path, test_sections: dict[str, list[str]]) -> None:
    """Before any job runs: the folder must hold the labels and domains of every tested section of every
    machine type ({machine: sections}); DataError names the setting and the missing files."""
    root = _checked_root(root)
    missing = [f"{d}/{_name(m, s)}" for m, wanted in test_sections.items() for s in wanted
               for d in (DATA_DIR, DOMAIN_DIR) if not (root / d / _name(m, s)).is_file()]
    if missing:
        raise DataError(f"ground_truth: {root} lacks {len(missing)} file(s): {', '.join(missing[:4])}"
                        + (" ..." if len(missing) > 4 else ""))


def _rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot be read as a ground-truth table ({err})") from err
    bad = [i + 1 for i, r in enumerate(rows) if len(r) < 2]
    if bad:
        raise DataError(f"{path}: rows {bad[:5]} do not have two columns (file name, value)")
    return rows


def _once(path: Path, names: list[str], first_row: int = 1) -> None:
    """Refuse a clip listed twice: with a dict, the last row would silently win (and may flip its label)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(f"{path}: clip {name} is listed twice (rows {seen[name] + first_row} and {i + first_row}); "
                            "keep one row per clip")
        seen[name] = i


def _binary(path: Path, meaning: dict[str, str]) -> dict[str, str]:
    values = {}
    rows = _rows(path)
    _once(path, [name.strip() for name, *_ in rows])
    for i, (name, value, *_) in enumerate(rows):
        value = value.strip()
        if value not in meaning:
            raise DataError(f"{path}: row {i + 1} ({name}): value {value!r}, expected 0 or 1")
        values[name.strip()] = meaning[value]
    return values


def _original_names(root: Path, machine: str, section: str) -> dict[str, str]:
    """anonymised file name -> original file name (with .wav), from whichever attributes layout exists."""
    flat = root / ATTRIBUTES_DIR / _name(machine, section)
    nested = root / ATTRIBUTES_DIR / machine / f"attributes_{section}.csv"
    mapping = {}
    for path in (flat, nested):
        if not path.is_file():
            continue
        rows, first = _rows(path), 1
        if rows and rows[0][0].strip() == "file_name":
            if rows[0][1].strip() == "d1p":
                raise DataError(f"{path}: an attributes table (file_name, d1p, d1v, ...), not a mapping of "
                                "anonymised to original file names")
            rows, first = rows[1:], 2
        _once(path, [Path(anonymised.strip()).name for anonymised, *_ in rows], first)
        for anonymised, original, *_ in rows:
            original = Path(original.strip()).name
            mapping[Path(anonymised.strip()).name] = original if original.endswith(".wav") else original + ".wav"
    return mapping


def read_ground_truth(root: str | Path, machine: str) -> "pd.DataFrame":
    """One row per evaluation clip of the machine type: filename (anonymised), original, section, label, domain."""
    import pandas as pd

    root = _checked_root(root)
    found = sections(root, machine)
    if not found:
        raise DataError(f"ground truth {root}: no {DATA_DIR}/{_name(machine, 'XX')} for machine type {machine}")
    frames = []
    for section in found:
        data_path, domain_path = root / DATA_DIR / _name(machine, section), root / DOMAIN_DIR / _name(machine, section)
        if not domain_path.is_file():
            raise DataError(f"{domain_path}: missing (the domains of {data_path.name})")
        labels, domains = _binary(data_path, LABELS), _binary(domain_path, DOMAINS)
        if set(labels) != set(domains):
            odd = sorted(set(labels) ^ set(domains))
            raise DataError(f"{data_path} and {domain_path} list different clips, e.g. {odd[:3]}")
        originals = _original_names(root, machine, section)
        frames.append(pd.DataFrame(dict(filename=list(labels), section=section, label=list(labels.values()),
                                        domain=[domains[n] for n in labels],
                                        original=[originals.get(n, "") for n in labels])))
    return pd.concat(frames, ignore_index=True)


def apply_ground_truth(scores: "pd.DataFrame", root: str | Path, machine: str) -> "pd.DataFrame":
    """The score table with label and domain (and attributes, from the original names) of every clip
    set from the ground truth; every clip must be listed there and every listed clip scored."""
    truth = read_ground_truth(root, machine).set_index("filename")
    to_anonymised = {o: a for a, o in truth["original"].items() if o}
    anonymised = [n if n in truth.index else to_anonymised.get(n) for n in scores["filename"]]
    missing = [n for n, a in zip(scores["filename"], anonymised) if a is None]
    if missing:
        raise DataError(f"ground truth {root}: {len(missing)} scored clip(s) of {machine} are not listed in "
                        f"{DATA_DIR}/ (nor by original name in {ATTRIBUTES_DIR}/), e.g. {missing[:3]}")
    unscored = sorted(set(truth.index) - set(anonymised))
    if unscored:
        raise DataError(f"ground truth {root}: {len(unscored)} clip(s) of {machine} listed there were not scored, "
                        f"e.g. {unscored[:3]}")
    match = truth.loc[anonymised]
    out = scores.copy()
    wrong = out["section"].astype(str).to_numpy() != match["section"].to_numpy()
    if wrong.any():
        raise DataError(f"ground truth {root}: clip(s) of {machine} filed under another section there, "
                        f"e.g. {out.loc[wrong, 'filename'].tolist()[:3]}")
    known = out["label"].isin(LABEL_NAMES).to_numpy()
    clash = known & (out["label"].to_numpy() != match["label"].to_numpy())
    if clash.any():
        raise DataError(f"ground truth {root}: labels of {machine} clip(s) contradict their file names, "
                        f"e.g. {out.loc[clash, 'filename'].tolist()[:3]}")
    out["label"] = match["label"].to_numpy()
    out["domain"] = match["domain"].to_numpy()
    if "attribute_string" in out:
        from_names = [(m["attrs"] or "") if (m := DCASE21.match(Path(o).stem)) else "" for o in match["original"]]
        out["attribute_string"] = [a or old for a, old in zip(from_names, out["attribute_string"].fillna(""))]
    return out
