"""Where every file of a run lies: the one module that spells an output's name.

A run writes into per-stage folders under its results folder (`Run`); the experiments grid writes the
same files into keyed folders under results/experiments (`Grid`). A path keeps Snakemake's wildcard
({machine}, {part}, ...) wherever no value is given, so the rules and the Python build their paths
with the same calls: `Run("results").features(part="train")` is
"results/features/{machine}.train.safetensors".
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

# The exported model, in the Hugging Face layout (eat.py, hf.py, train.py and publish.py use these names)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODELING_FILE = "modeling_eat.py"
MODEL_CARD_FILE = "README.md"
ADAPTER_FOLDER = "lora_adapter"  # the LoRA adapter, beside the encoder and in a published repo
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"

FEATURES_SUFFIX = ".safetensors"
EMBEDDINGS_SUFFIX = ".npz"

# File names inside a stage's folder
MANIFEST = "{machine}.{part}.csv"
FEATURES = "{machine}.{part}" + FEATURES_SUFFIX
EMBEDDINGS = "{machine}" + EMBEDDINGS_SUFFIX
SCORES = "{machine}.csv"
SCORE_INFO = "{machine}.json"
PLOT = "{machine}_{kind}.png"
PLOT_KINDS = ("roc", "scores")
SUBMISSION = "{kind}_{machine}_section_{section}_test.csv"  # the names DCASE submissions use
SUBMISSION_KINDS = ANOMALY_SCORE, DECISION_RESULT = ("anomaly_score", "decision_result")


class _KeepWildcards(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(pattern: str, **values) -> str:
    """`pattern` with the given values in; every other {name} stays, as a Snakemake wildcard."""
    return string.Formatter().vformat(pattern, (), _KeepWildcards({k: v for k, v in values.items() if v is not None}))


def _value(name: str, value) -> str:
    return "{" + name + "}" if value is None else str(value)


def plot_machine(path: str | Path) -> str:
    """The machine type a plot file (PLOT) shows."""
    return Path(path).stem.rsplit("_", 1)[0]


@dataclass(frozen=True)
class Training:
    """A training job's folder: the fine-tuned encoder (an exported model folder), its LoRA adapter, the
    classifier head, the training log and summary, and the checkpoint an interrupted run resumes from."""

    folder: str
    encoder: str = field(init=False)
    encoder_config: str = field(init=False)
    encoder_weights: str = field(init=False)
    encoder_modeling: str = field(init=False)
    model_card: str = field(init=False)
    adapter: str = field(init=False)
    head: str = field(init=False)
    log: str = field(init=False)
    summary: str = field(init=False)
    checkpoint: str = field(init=False)

    def __post_init__(self):
        encoder = f"{self.folder}/encoder"
        files = dict(encoder=encoder, encoder_config=f"{encoder}/{CONFIG_FILE}", encoder_weights=f"{encoder}/{WEIGHTS_FILE}",
                     encoder_modeling=f"{encoder}/{MODELING_FILE}", model_card=f"{encoder}/{MODEL_CARD_FILE}",
                     adapter=f"{self.folder}/{ADAPTER_FOLDER}", head=f"{self.folder}/head.safetensors",
                     log=f"{self.folder}/train_log.csv", summary=f"{self.folder}/summary.json",
                     checkpoint=f"{self.folder}/checkpoint/last.pt")
        for name, path in files.items():
            object.__setattr__(self, name, path)

    def encoder_file(self, name: str) -> str:
        return f"{self.encoder}/{name}"


@dataclass(frozen=True)
class Tables:
    """The files `aggregate` writes and `report` reads: each table as CSV and Markdown, and the summary."""

    auroc: tuple[Path, Path]
    dcase: tuple[Path, Path]
    means: tuple[Path, Path]
    decisions: tuple[Path, Path]
    summary: Path

    STEMS = dict(auroc="auroc", dcase="dcase_metrics", means="dcase_summary", decisions="decisions")

    @classmethod
    def in_folder(cls, folder: str | Path) -> "Tables":
        folder = Path(folder)
        return cls(**{name: (folder / f"{stem}.csv", folder / f"{stem}.md") for name, stem in cls.STEMS.items()},
                   summary=folder / "summary.json")

    def outputs(self) -> dict[str, str]:
        """Every file, named as the aggregate rule's outputs are (auroc, auroc_md, ..., summary)."""
        files = {}
        for name in self.STEMS:
            csv, md = getattr(self, name)
            files.update({name: str(csv), f"{name}_md": str(md)})
        return dict(files, summary=str(self.summary))


@dataclass(frozen=True)
class Run:
    """The files of one run under `root` (the config's `results`)."""

    root: str

    def manifest(self, machine: str | None = None, part: str | None = None) -> str:
        return f"{self.root}/manifests/" + fill(MANIFEST, machine=machine, part=part)

    def features(self, machine: str | None = None, part: str | None = None) -> str:
        return f"{self.root}/features/" + fill(FEATURES, machine=machine, part=part)

    def embeddings(self, machine: str | None = None) -> str:
        return f"{self.root}/embeddings/" + fill(EMBEDDINGS, machine=machine)

    def scores(self, machine: str | None = None) -> str:
        return f"{self.scores_folder}/" + fill(SCORES, machine=machine)

    def score_info(self, machine: str | None = None) -> str:
        return f"{self.scores_folder}/" + fill(SCORE_INFO, machine=machine)

    @property
    def scores_folder(self) -> str:
        return f"{self.root}/scores"

    def plot(self, machine: str | None = None, kind: str | None = None) -> str:
        return f"{self.root}/plots/" + fill(PLOT, machine=machine, kind=kind)

    @property
    def submission_folder(self) -> str:
        return f"{self.root}/submission"

    def submission(self, kind: str | None = None, machine: str | None = None, section: str | None = None) -> str:
        return f"{self.submission_folder}/" + fill(SUBMISSION, kind=kind, machine=machine, section=section)

    @property
    def training(self) -> Training:
        return Training(f"{self.root}/encoder")

    @property
    def tables(self) -> Tables:
        return Tables.in_folder(f"{self.root}/tables")

    @property
    def report(self) -> str:
        return f"{self.root}/report.html"

    @property
    def clip_hashes(self) -> str:
        return f"{self.root}/.clip-hashes.json"

    def log(self, *names: str) -> str:
        """A job's log: logs/<rule>[/<subfolders>]/<job>.log"""
        return f"{self.root}/logs/{'/'.join(names)}.log"

    def benchmark(self, *names: str) -> str:
        return f"{self.root}/benchmarks/{'/'.join(names)}.tsv"

    @property
    def grid(self) -> "Grid":
        return Grid(f"{self.root}/experiments")


@dataclass(frozen=True)
class Grid:
    """The experiments grid's files under `root` (results/experiments): each job's folder is named by its
    key (eat_asd.experiments), so runs that coincide in a step share the job's files."""

    root: str

    def features(self, fkey: str | None = None, machine: str | None = None, part: str | None = None) -> str:
        return f"{self.root}/features/{_value('fkey', fkey)}/" + fill(FEATURES, machine=machine, part=part)

    def training(self, tkey: str | None = None) -> Training:
        return Training(f"{self.root}/train/{_value('tkey', tkey)}")

    def embeddings(self, ekey: str | None = None, machine: str | None = None) -> str:
        return f"{self.root}/embed/{_value('ekey', ekey)}/" + fill(EMBEDDINGS, machine=machine)

    def scores(self, kind: str, key: str, machine: str | None = None) -> str:
        """A score table; kind: score (a scoring's) or fuse (a fusion's)."""
        return f"{self.root}/{kind}/{key}/" + fill(SCORES, machine=machine)

    def score_info(self, kind: str, key: str, machine: str | None = None) -> str:
        return f"{self.root}/{kind}/{key}/" + fill(SCORE_INFO, machine=machine)

    def plot(self, skey: str, machine: str | None = None, kind: str | None = None) -> str:
        return f"{self.root}/score/{skey}/" + fill(PLOT, machine=machine, kind=kind)

    def tables(self, variant: str | None = None, seed: str | int | None = None) -> Tables:
        return Tables.in_folder(f"{self.root}/runs/{_value('variant', variant)}/seed_{_value('seed', seed)}/tables")

    @property
    def comparison(self) -> tuple[str, str]:
        return f"{self.root}/comparison.csv", f"{self.root}/comparison.md"

    @property
    def comparison_plot(self) -> str:
        return f"{self.root}/comparison.png"

    @property
    def report(self) -> str:
        return f"{self.root}/report.html"
