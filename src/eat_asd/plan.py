"""What the workflow will do, worked out from the config and file names alone (no audio is read,
and neither numpy, pandas nor torch is needed), so that Snakemake can plan its jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .data import DataError, scan_clips


@dataclass
class MachinePlan:
    name: str
    train_files: list[str] = field(default_factory=list)  # clips of the train split (rule inputs)
    test_files: list[str] = field(default_factory=list)  # clips of the test split (rule inputs)
    test_sections: list[str] = field(default_factory=list)  # sections with test clips: one submission file pair each
    trains_encoder: bool = True

    def files(self, part: str) -> list[str]:
        return self.train_files if part == "train" else self.test_files


def demo_sizes(config: dict):
    from .demo import DemoSizes

    d = config["demo"]
    return DemoSizes(seconds=d["seconds"], train_source=d["train_source"], train_target=d["train_target"],
                     test_per_cell=d["test_per_cell"])


def plan_workflow(config: dict) -> dict[str, MachinePlan]:
    """Machine types with their files, in name order; raises DataError/ValueError naming what is wrong."""
    root = Path(config["data_root"])
    if config["encoder_revision"] and (config["demo"] or Path(config["encoder"]).is_dir()):
        raise ValueError(f"encoder_revision = {config['encoder_revision']!r} applies to Hub ids only; "
                         f"encoder {config['encoder']} is a local folder")
    if config["demo"]:
        from .demo import demo_plan

        clips = [dict(machine=c.machine.name, path=str(root / c.relpath), split=c.split, section="00")
                 for c in demo_plan(demo_sizes(config))]
    else:
        clips = scan_clips(root)
    found = sorted({c["machine"] for c in clips})
    wanted = found if config["machine_types"] == "auto" else list(config["machine_types"])
    missing = [m for m in wanted if m not in found]
    if missing:
        raise DataError(f"machine_types: {missing} not found under data_root {root} (found: {found})")
    score_only = list(config["score_only_machine_types"])
    unknown = [m for m in score_only if m not in wanted]
    if unknown:
        raise DataError(f"score_only_machine_types: {unknown} are not among the machine types {wanted}")
    plans = {m: MachinePlan(m, trains_encoder=m not in score_only) for m in sorted(wanted)}
    for c in clips:
        plan = plans.get(c["machine"])
        if plan is None:
            continue
        if c["split"] == "train":
            plan.train_files.append(c["path"])
        elif c["split"] == "test":
            plan.test_files.append(c["path"])
            if c["section"] not in plan.test_sections:
                plan.test_sections.append(c["section"])
    for plan in plans.values():
        plan.test_sections.sort()
        if not plan.train_files:
            raise DataError(f"machine type {plan.name}: no training clips under data_root {root}")
    if config["finetune"]["mode"] != "frozen" and not any(p.trains_encoder for p in plans.values()):
        raise DataError("every machine type is listed in score_only_machine_types: none is left to train the encoder")
    return plans
