"""What the workflow will do, worked out from the config and file names alone (no audio is read,
and neither numpy, pandas nor torch is needed), so that Snakemake can plan its jobs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .banks import MIN_THRESHOLD_CLIPS, memory_banks, usable_k
from .config import machine_settings
from .data import PARTS, scan_clips
from .encoder_source import check_encoder_source
from .errors import ConfigError, DataError
from .noise_mix import NoiseMix

# Machine-type and section names become file names and job wildcards: letters, digits, _ . -
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class MachinePlan:
    name: str
    train_files: list[str] = field(default_factory=list)  # clips of the train part: train and supplemental (rule inputs)
    bank: list[tuple[str, str]] = field(default_factory=list)  # (section, domain) of each normal training clip
    test_files: list[str] = field(default_factory=list)  # clips of the test split (rule inputs)
    noise_files: list[str] = field(default_factory=list)  # supplemental noise-only recordings (train.noise_mix)
    test_sections: list[str] = field(default_factory=list)  # sections with test clips: one submission file pair each
    trains_encoder: bool = True
    content: dict[str, str] = field(default_factory=dict)  # part -> digest of its clips' contents (real data only)

    def files(self, part: str) -> list[str]:
        return self.train_files if part == "train" else self.test_files


def demo_sizes(config: dict):
    from .demo import DemoSizes

    d = config["demo"]
    return DemoSizes(seconds=d["seconds"], train_source=d["train_source"], train_target=d["train_target"],
                     test_per_cell=d["test_per_cell"], channels=d["channels"])


def check_names(clips: list[dict], root: Path) -> None:
    """Refuse machine-type and section names that are not plain words (they become paths and job names)."""
    for c in clips:
        for what in ("machine", "section"):
            if not SAFE_NAME.fullmatch(c[what]):
                raise DataError(f"{c['path']}: {what} name {c[what]!r} (from the folder or file name under "
                                f"data_root {root}) may hold only letters, digits, '_', '.' and '-'; rename it")


def check_folder_setting(key: str, value: str) -> None:
    """A folder setting whose path (or a parent of it) is an existing file: named now, not as a
    traceback from the first write below it, nor as "no such folder"."""
    path = Path(value).expanduser()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == path else f"is below {part}, which is a file"
                raise ConfigError(f"{key} = {value}: {what}, not a folder; set {key} to a folder")
            return


def plan_workflow(config: dict, hash_cache: str | Path | None = None, save_hash_cache: bool = True) -> dict[str, MachinePlan]:
    """Machine types with their files, in name order; raises DataError/ConfigError naming what is wrong.

    Also refuses, before any job runs, what would fail or be quietly changed later: an encoder
    that is neither a folder with weights nor a resolvable Hub id, overrides of machine types
    that are not there, too few training clips, a scoring.k larger than a memory bank gives, and
    a ground_truth folder that lacks a tested section.
    With `hash_cache` (real data only: the demo's clips are made by the workflow itself), each
    machine type and part also gets the digest of its clips' contents; the cache is written back
    unless save_hash_cache is False.
    """
    for key in ("results", "data_root"):
        check_folder_setting(key, config[key])
    root = Path(config["data_root"])
    if config["encoder_revision"] and (config["demo"] or Path(config["encoder"]).is_dir()):
        raise ConfigError(f"encoder_revision = {config['encoder_revision']!r} applies to Hub ids only; "
                         f"encoder {config['encoder']} is a local folder")
    if config["demo"]:
        from .demo import demo_plan

        clips = [dict(machine=c.machine.name, path=str(root / c.relpath), split=c.split, section="00",
                      domain=c.domain, label=c.label, kind="machine") for c in demo_plan(demo_sizes(config))]
    else:  # the demo writes its encoder in a job: there is nothing to check before
        check_encoder_source(config["encoder"])
        clips = scan_clips(root)
    check_names(clips, root)
    found = sorted({c["machine"] for c in clips})
    wanted = found if config["machine_types"] == "auto" else list(config["machine_types"])
    missing = [m for m in wanted if m not in found]
    if missing:
        raise DataError(f"machine_types: {missing} not found under data_root {root} (found: {found})")
    score_only = list(config["score_only_machine_types"])
    unknown = [m for m in score_only if m not in wanted]
    if unknown:
        raise DataError(f"score_only_machine_types: {unknown} are not among the machine types {wanted}")
    unknown = [m for m in config["overrides"] if m not in wanted]
    if unknown:
        raise ConfigError(f"overrides.{unknown[0]}: no such machine type under data_root {root} (machine types: {wanted})")
    plans = {m: MachinePlan(m, trains_encoder=m not in score_only) for m in sorted(wanted)}
    for c in clips:
        plan = plans.get(c["machine"])
        if plan is None:
            continue
        if c["split"] == "train":
            plan.train_files.append(c["path"])
            if c["label"] == "normal":
                plan.bank.append((c["section"], c["domain"]))
        elif c["split"] == "supplemental":
            plan.train_files.append(c["path"])
            if c["kind"] == "noise":
                plan.noise_files.append(c["path"])
            elif c["kind"] == "machine" and machine_settings(config, plan.name, "scoring")["bank_supplemental"]:
                plan.bank.append((c["section"], c["domain"]))
        elif c["split"] == "test":
            plan.test_files.append(c["path"])
            if c["section"] not in plan.test_sections:
                plan.test_sections.append(c["section"])
    with_train = {c["machine"] for c in clips if c["split"] == "train"}
    for plan in plans.values():
        plan.test_sections.sort()
        if plan.name not in with_train:
            raise DataError(f"machine type {plan.name}: no training clips under data_root {root}")
        check_banks(plan, config)
    mix = config["train"]["noise_mix"]
    NoiseMix.of(mix)  # refuses snr_db = [high, low]
    if mix["prob"] and config["finetune"]["mode"] != "frozen" and not any(p.noise_files for p in plans.values() if p.trains_encoder):
        raise ConfigError(f"train.noise_mix.prob = {mix['prob']}, but no training machine type under data_root {root} has "
                          "noise-only recordings (<machine>/supplemental/section_XX_noise_...): set it to 0")
    if config["finetune"]["mode"] != "frozen" and not any(p.trains_encoder for p in plans.values()):
        raise DataError("every machine type is listed in score_only_machine_types: none is left to train the encoder")
    if config["ground_truth"]:
        from .groundtruth import check_covers

        check_covers(config["ground_truth"], {m: p.test_sections for m, p in plans.items()})
    if hash_cache is not None and not config["demo"]:
        from .clip_digest import ClipHashes

        hashes = ClipHashes(hash_cache)
        for plan in plans.values():
            plan.content = {part: hashes.digest(plan.files(part), root) for part in PARTS}
        if save_hash_cache:  # not under snakemake -n, which writes nothing
            hashes.save()
    return plans


def check_banks(plan: MachinePlan, config: dict) -> None:
    """Enough normal training clips for the decision threshold, a bank for every test section, a
    scoring.k every bank can give, also to each of its own clips scored against the rest of it, and
    banks pooled as the shared encoder's classifier was trained."""
    pooling = machine_settings(config, plan.name, "embedding")["pooling"]
    if pooling != config["embedding"]["pooling"]:
        raise ConfigError(f"overrides.{plan.name}.embedding.pooling = {pooling!r}: the shared encoder's classifier trains "
                          f"on embedding.pooling = {config['embedding']['pooling']!r}, and every memory bank takes the "
                          "pooling it was trained on; change embedding.pooling for all machine types instead")
    scoring = machine_settings(config, plan.name, "scoring")
    if len(plan.bank) < MIN_THRESHOLD_CLIPS:
        raise DataError(f"machine type {plan.name}: {len(plan.bank)} normal training clip(s); the decision threshold "
                        f"is fitted to their scores and needs at least {MIN_THRESHOLD_CLIPS}")
    sections, domains = [s for s, _ in plan.bank], [d for _, d in plan.bank]
    banks = memory_banks(sections, domains, scoring["bank_split"], scoring["domain_strategy"])
    if scoring["bank_split"] == "section":
        missing = [s for s in plan.test_sections if s not in banks]
        if missing:
            raise DataError(f"machine type {plan.name}: test clips of section(s) {missing} but no normal training clips "
                            "of them, and scoring.bank_split = section scores each section against its own")
    own = config["overrides"].get(plan.name, {}).get("scoring", {})
    if scoring["smote_ratio"] > 0 and scoring["backend"] != "knn":
        key = f"overrides.{plan.name}.scoring" if {"smote_ratio", "backend"} & set(own) else "scoring"
        raise ConfigError(f"{key}: smote_ratio = {scoring['smote_ratio']} enlarges the target clips of the knn back-end only, "
                          f"and backend = {scoring['backend']}: set smote_ratio to 0 or backend to knn")
    if scoring["backend"] == "kmeans":
        return  # the minimum over centres and target clips: scoring.k does not apply
    smallest = min((b for group in banks.values() for b in group), key=len)
    k = scoring["k"]
    if usable_k(k, len(smallest), leave_one_out=True) < k:
        key = f"overrides.{plan.name}.scoring.k" if "k" in own else "scoring.k"
        secs, doms = sorted({sections[i] for i in smallest}), sorted({domains[i] for i in smallest})
        label = ("section " if len(secs) == 1 else "sections ") + ", ".join(secs)
        label += f", {doms[0]} domain" if scoring["domain_strategy"] == "min" and len(doms) == 1 else ""
        raise ConfigError(f"{key} = {k}: the smallest memory bank of {plan.name} ({label}) has {len(smallest)} clips, "
                          f"and each of them is scored against the other {len(smallest) - 1} for the decision threshold: "
                          f"k can be at most {len(smallest) - 1}")
