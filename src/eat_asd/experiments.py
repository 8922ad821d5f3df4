"""Experiments: variants x seeds, each variant an overlay of the ordinary settings.

Every job of the grid is named by a key: a digest of what it reads and the settings that change
its result, so runs that coincide in a step share its job. A training is named by the encoder,
the feature settings, the training settings and the seed; an embedding by its training and the
machine type's embedding settings; a scoring by its embedding (and, with one bank of every
machine type, the other machine types' embeddings) and the machine type's scoring settings. A
variant that changes only scoring settings thus reuses the trainings and embeddings of the
others, and a new seed adds only its own jobs. Plain Python: the workflow plans with it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field

from .config import feature_values, machine_settings, result_settings, train_values, validate_config
from .errors import ConfigError

# the sections a variant may change: the ones that change results
VARIANT_SECTIONS = ("features", "finetune", "lora", "train", "embedding", "scoring", "overrides")


def digest(value) -> str:
    """A short stable name for a JSON-able value."""
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def overlay(base: dict, changes: dict) -> dict:
    """`base` with `changes` merged in: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Training:
    key: str
    settings: dict  # train_values: train.*, lora.*, finetune.mode, embedding.pooling (seed set)
    features: dict  # feature_values
    features_key: str


@dataclass(frozen=True)
class Embedding:
    key: str
    machine: str
    training: str  # Training.key
    settings: dict  # without the execution settings (batch_size), which the rule passes untracked


@dataclass(frozen=True)
class Scoring:
    key: str
    machine: str
    embedding: str  # Embedding.key of this machine type
    bank_embeddings: tuple[str, ...]  # Embedding.keys of the other machine types whose clips join the bank
    settings: dict


@dataclass(frozen=True)
class Fusion:
    key: str
    machine: str
    members: tuple[tuple[str, str], ...]  # (kind, key) of each member's scores: ("score" | "fuse", key)
    threshold_quantile: float


@dataclass
class Experiments:
    """The grid: which job each (variant, seed, machine type) uses at each step."""

    seeds: list[int]
    reference: str
    variants: list[str]
    bootstrap: int
    trainings: dict[str, Training] = field(default_factory=dict)
    embeddings: dict[str, Embedding] = field(default_factory=dict)
    scorings: dict[str, Scoring] = field(default_factory=dict)
    fusions: dict[str, Fusion] = field(default_factory=dict)
    # (variant, seed, machine) -> ("score" | "fuse", key)
    scores: dict[tuple[str, int, str], tuple[str, str]] = field(default_factory=dict)
    features: dict[str, dict] = field(default_factory=dict)  # feature settings by their key

    def runs(self):
        return [(v, s) for v in self.variants for s in self.seeds]


def fuse_order(variants: dict[str, dict]) -> list[str]:
    """Variant names with every fuse after its members; errors name a missing member or a cycle."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join(path[path.index(name):] + [name])
            raise ConfigError(f"experiments.variants.{path[0]}.fuse: the fuse definitions form a cycle ({cycle})")
        state[name] = "visiting"
        for member in variants[name].get("fuse", []):
            if member not in variants:
                raise ConfigError(f"experiments.variants.{name}.fuse: member {member!r} is not a variant "
                                  f"(variants: {sorted(variants)})")
            visit(member, path + [name])
        state[name] = "done"
        order.append(name)

    for name in variants:
        visit(name, [name])
    return order


def plan_experiments(config: dict, machines: list[str], train_machines: list[str], check=None) -> Experiments:
    """The grid of a validated config with an `experiments` section. `check(variant_config)` is
    called on each variant's config (the workflow passes its planning checks)."""
    spec = config["experiments"]
    variants = spec["variants"]
    if spec["reference"] not in variants:
        raise ConfigError(f"experiments.reference: {spec['reference']!r} is not a variant (variants: {sorted(variants)})")
    for name, changes in variants.items():
        if "fuse" in changes and len(changes) > 1:
            raise ConfigError(f"experiments.variants.{name}: a fuse variant takes only `fuse` "
                              f"(its members carry the settings), not {sorted(set(changes) - {'fuse'})}")
    grid = Experiments(seeds=list(spec["seeds"]), reference=spec["reference"], variants=list(variants),
                       bootstrap=spec["bootstrap"])
    base = {k: v for k, v in config.items() if k != "experiments"}
    for name in fuse_order(variants):
        changes = variants[name]
        if "fuse" in changes:
            quantile = config["scoring"]["threshold_quantile"]
            for seed in grid.seeds:
                for machine in machines:
                    members = tuple(grid.scores[(m, seed, machine)] for m in changes["fuse"])
                    key = digest(["fuse", machine, members, quantile])
                    grid.fusions[key] = Fusion(key, machine, members, quantile)
                    grid.scores[(name, seed, machine)] = ("fuse", key)
            continue
        variant = validate_config(overlay(base, changes), f"experiments.variants.{name}")
        if check is not None:
            check(variant)
        for seed in grid.seeds:
            _plan_run(grid, variant, name, seed, machines, train_machines)
    return grid


def _plan_run(grid: Experiments, config: dict, name: str, seed: int, machines: list[str], train_machines: list[str]):
    features = feature_values(config)
    features_key = digest(features)
    grid.features[features_key] = features
    settings = dict(train_values(config), seed=seed)
    train_key = digest(["train", config["encoder"], config["encoder_revision"], features, settings, sorted(train_machines)])
    grid.trainings[train_key] = Training(train_key, settings, features, features_key)
    embed_keys = {}
    for machine in machines:
        embedding = result_settings(machine_settings(config, machine, "embedding"))
        key = digest(["embed", train_key, machine, embedding])
        grid.embeddings[key] = Embedding(key, machine, train_key, embedding)
        embed_keys[machine] = key
    for machine in machines:
        scoring = machine_settings(config, machine, "scoring")
        others = tuple(embed_keys[m] for m in machines if m != machine) if scoring["bank_split"] == "all" else ()
        key = digest(["score", embed_keys[machine], others, scoring])
        grid.scorings[key] = Scoring(key, machine, embed_keys[machine], others, scoring)
        grid.scores[(name, seed, machine)] = ("score", key)
