"""Model cards (README.md with Hugging Face card metadata) for the fine-tuned encoder and the LoRA
adapter, written from the files a run produces. Light: no torch."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .encoder_source import is_hub_id
from .layout import ADAPTER_FOLDER
from .report import format_number, md_text

TAGS = ["audio", "anomaly-detection", "dcase", "eat", "anomalous-sound-detection"]
LICENSE = "mit"  # this project's license (LICENSE), as the Hub's card metadata spells it


def _front_matter(meta: dict) -> str:
    import yaml

    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _rounded(v):
    """A metric for the card's metadata: 4 decimals, as the card's text shows it."""
    return round(float(v), 4) if isinstance(v, (int, float)) and math.isfinite(v) else None


def code(text) -> str:
    """`text` as Markdown inline code, whatever it holds: the fence is longer than any run of backticks
    inside, so a name from the data or the config cannot end the code span and reach the page as HTML."""
    text = " ".join(str(text).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest or text.startswith(" ") or text.endswith(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block(text: str, language: str = "") -> str:
    """A fenced code block that no line of `text` can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}\n"


def _setting(v) -> str:
    """A setting as a person reads it: lists joined, no JSON quotes."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(_setting, v)) or "none"
    return str(v)


GENERIC_FOLDERS = {"data", "raw", "dev_data", "eval_data", "dataset", "datasets", "audio", "wav", "."}


def dataset_name(config: dict) -> str:
    """What the card calls the data: the demo, or the most telling folders of data_root (e.g.
    `dcase2024 dev_data` for data/dcase2024/dev_data/raw), not a generic last folder such as `data`."""
    if config.get("demo"):
        return "eat-asd synthetic demo (DCASE 2023-style)"
    parts = [p for p in Path(str(config.get("data_root") or "")).parts if p not in ("/", "..")]
    named = [p for p in parts if p.lower() not in GENERIC_FOLDERS]
    if not named:
        return "DCASE Task 2 data"
    split = next((p for p in reversed(parts) if p.lower() in ("dev_data", "eval_data")), None)
    return named[-1] + (f" {split}" if split else "")


def clip_counts(manifest_paths: list[str | Path]):
    """Clips per machine type, split, domain and label, one row per machine type."""
    import pandas as pd

    from .data import read_manifest

    clips = pd.concat([read_manifest(p) for p in manifest_paths], ignore_index=True)
    counts = clips.groupby(["machine", "split", "domain", "label"]).size()
    table = counts.unstack(["split", "domain", "label"], fill_value=0)
    table = table[sorted(table.columns, key=lambda c: (c[0] != "train", c[1:]))]  # training clips first
    table.columns = [" ".join(c) for c in table.columns]
    return table.reset_index().rename(columns={"machine": "machine_type"})


def usage(repo_or_folder: str) -> str:
    return f"""```python
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained("{repo_or_folder}", trust_remote_code=True).eval()
fbank = torch.zeros(1, 1, 1024, 128)  # normalised 128-bin Kaldi log-mel fbank, 10 ms frames
with torch.no_grad():
    out = model(fbank)
tokens, cls = out.last_hidden_state, out.pooler_output  # model.pool(tokens, "mean") for the patch mean
```

With `eat-asd` installed, `import eat_asd.hf_modeling` registers the model type, and no remote code is needed;
`eat_asd.eat.load_eat(folder)` loads the same weights natively.
"""


def base_of(training: dict, config: dict) -> tuple[str, str | None]:
    """(name to show, Hub id or None) of the encoder the run started from, from its training summary."""
    if "encoder_hub_id" in training:
        hub_id = training["encoder_hub_id"]
        local = training.get("encoder_local_path")
        return hub_id or Path(local or training.get("encoder") or "encoder").name, hub_id
    base = str(training.get("encoder") or config.get("encoder", ""))  # a summary written before the Hub id was recorded
    local = Path(base).is_dir() or config.get("demo")
    return (Path(base).name, None) if local or not is_hub_id(base) else (base, base)


def encoder_card(summary_path: str | Path, auroc_path: str | Path, training_path: str | Path,
                 manifest_paths: list[str | Path], config: dict, command: str) -> str:
    """The fine-tuned encoder's README.md: data, input features, settings, official score and per-machine
    results, command. Everything taken from the data or the config is escaped for Markdown."""
    import pandas as pd

    from .audio import FBANK_MEAN, FBANK_STD, MEL_BINS
    from .report import markdown_table

    summary = json.loads(Path(summary_path).read_text())
    means = summary.get("means", {})  # the evaluator's means: {"harmonic mean": {"AUC": ..., "pAUC": ...}, ...}
    training = json.loads(Path(training_path).read_text())
    auroc = pd.read_csv(auroc_path)
    counts = clip_counts(manifest_paths)
    machines = [m for m in auroc["machine_type"] if m != "overall"]
    base, hub_id = base_of(training, config)
    metrics = [dict(type="official_score", name="DCASE official score (hmean of AUC source, AUC target, pAUC)",
                    value=_rounded(summary.get("official_score"))),
               dict(type="auroc", name="overall AUROC", value=_rounded(summary.get("overall_auroc")))]
    meta = dict(license=LICENSE, library_name="transformers", pipeline_tag="feature-extraction", tags=TAGS)
    if hub_id:
        meta["base_model"] = hub_id
    data_name = dataset_name(config)
    meta["model-index"] = [dict(name="eat-asd encoder", results=[dict(
        task=dict(type="anomaly-detection", name="Anomalous machine sound detection (DCASE Task 2)"),
        dataset=dict(type="dcase-task2", name=data_name),
        metrics=[m for m in metrics if m["value"] is not None])])]
    settings = training.get("settings", {})
    shown = {k: settings.get(k) for k in ("mode", "granularity", "loss", "epochs", "batch_size", "lr", "lr_schedule",
                                         "warmup_fraction", "mixup_prob", "r", "alpha", "target_modules", "pooling", "seed")}
    if settings.get("loss") == "subcluster_adacos":
        shown.update(subclusters=settings.get("subclusters"), trainable_centres=settings.get("trainable_centres"))
    shown.update(granularity=training.get("granularity"), best_epoch=training.get("best_epoch"))
    scoring = config.get("scoring", {})
    target_frames = config.get("features", {}).get("target_frames")
    revision = training.get("encoder_commit") or training.get("encoder_revision")
    origin = (f"The EAT audio encoder {code(base)}" if hub_id else
              f"An EAT audio encoder from a local folder ({code(base)}; not a Hugging Face Hub model, so the card "
              "names no `base_model`)")
    lines = [
        _front_matter(meta),
        "# EAT encoder fine-tuned for anomalous machine sound detection\n",
        origin + (f" (revision {code(revision)})" if revision else "")
        + f", fine-tuned ({md_text(training.get('mode'))}) with a classifier on {md_text(training.get('classes'))} classes "
        f"({md_text(training.get('granularity'))} labels) of the normal training clips of {len(machines)} machine types, "
        f"then used for cosine-distance anomaly scores ({code(scoring.get('backend', 'knn'))} back-end) against memory "
        "banks of normal embeddings. "
        "LoRA weights are merged in.\n",
        "## Data\n",
        f"Data set: {md_text(data_name)}. Machine types: {', '.join(md_text(m) for m in machines)}. "
        "Clips per split, domain and label:\n",
        markdown_table(counts),
        "## Input features\n",
        f"{MEL_BINS}-bin Kaldi log-mel fbank of 16 kHz mono audio (25 ms windows every 10 ms), zero-padded or cropped to "
        f"{md_text(target_frames)} frames, then normalised as EAT was pre-trained: (fbank - ({FBANK_MEAN})) / ({FBANK_STD} * 2). "
        f"The model takes it as (batch, 1, frames, {MEL_BINS}).\n",
        "## Settings\n",
        markdown_table(pd.DataFrame([dict(setting=k, value=_setting(v)) for k, v in shown.items()])),
        f"Scoring: back-end {code(scoring.get('backend', 'knn'))}, k = {md_text(scoring.get('k'))}, bank split "
        f"{code(scoring.get('bank_split'))}, domain strategy {code(scoring.get('domain_strategy'))}, embedding pooling "
        f"{code(config.get('embedding', {}).get('pooling'))}.\n",
        "## Results\n",
        f"- Official DCASE score: {format_number(summary.get('official_score'))}",
        f"- Harmonic means: AUC(source) {format_number(means.get('source harmonic mean', {}).get('AUC'))}, AUC(target) "
        f"{format_number(means.get('target harmonic mean', {}).get('AUC'))}, pAUC {format_number(means.get('harmonic mean', {}).get('pAUC'))}",
        f"- Overall AUROC: {format_number(summary.get('overall_auroc'))}\n",
        "Per machine type:\n",
        markdown_table(auroc),
        "## Usage\n",
        usage("path/or/repo-id"),
        "## How it was made\n",
        code_block(command, "bash"),
        f"License: {LICENSE} (the code that made it); the base encoder's own license applies to its weights.\n",
    ]
    return "\n".join(lines)


def write_encoder_card(out: str | Path, summary_path, auroc_path, training_path, manifest_paths, config: dict,
                       command: str) -> None:
    from .io import write_text

    write_text(out, encoder_card(summary_path, auroc_path, training_path, manifest_paths, config, command))


def adapter_card(base: str, hub_id: str | None, revision: str | None, r: int, alpha: int, targets: list[str]) -> str:
    """The LoRA adapter's README.md: what it adapts and how to attach it with peft. A base that is not on the
    Hub is named by its folder's name only (the local path stays in the run's summary)."""
    meta = dict(license=LICENSE, library_name="peft", tags=TAGS + ["lora"])
    if hub_id:
        meta["base_model"] = hub_id
    rev = f", revision={json.dumps(revision)}" if revision else ""
    where = json.dumps(hub_id) if hub_id else json.dumps(f"path/to/{base}")
    snippet = ("from peft import PeftModel\nfrom transformers import AutoModel\n\n"
               f"base = AutoModel.from_pretrained({where}{rev}, trust_remote_code=True)\n"
               f'model = PeftModel.from_pretrained(base, "path/to/{ADAPTER_FOLDER}")')
    return "\n".join([
        _front_matter(meta),
        "# LoRA adapter of an EAT encoder for anomalous machine sound detection\n",
        f"Rank {r}, alpha {alpha}, on {len(targets)} attention layers ({', '.join(md_text(t) for t in targets[:2])}, ...) of "
        + (code(hub_id) if hub_id else f"a local EAT encoder folder {code(base)} (not on the Hugging Face Hub)")
        + (f" at revision {code(revision)}" if revision else "") + ".\n",
        code_block(snippet, "python"),
    ])
