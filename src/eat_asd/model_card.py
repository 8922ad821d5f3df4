"""Model cards (README.md with Hugging Face card metadata) for the fine-tuned encoder and the LoRA
adapter, written from the files a run produces. Light: no torch."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .encoder_source import is_hub_id

TAGS = ["audio", "anomaly-detection", "dcase", "eat", "anomalous-sound-detection"]


def _front_matter(meta: dict) -> str:
    import yaml

    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _number(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


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


def encoder_card(summary_path: str | Path, auroc_path: str | Path, training_path: str | Path,
                 manifest_paths: list[str | Path], config: dict, command: str) -> str:
    """The fine-tuned encoder's README.md: data, settings, official score and per-machine results, command."""
    import pandas as pd

    from .report import markdown_table

    summary = json.loads(Path(summary_path).read_text())
    means = summary.get("means", {})  # the evaluator's means: {"harmonic mean": {"AUC": ..., "pAUC": ...}, ...}
    training = json.loads(Path(training_path).read_text())
    auroc = pd.read_csv(auroc_path)
    counts = clip_counts(manifest_paths)
    machines = [m for m in auroc["machine_type"] if m != "overall"]
    base = str(training.get("encoder") or config.get("encoder", ""))
    metrics = [dict(type="official_score", name="DCASE official score (hmean of AUC source, AUC target, pAUC)",
                    value=summary.get("official_score")),
               dict(type="auroc", name="overall AUROC", value=summary.get("overall_auroc"))]
    meta = dict(library_name="transformers", pipeline_tag="feature-extraction", tags=TAGS)
    if is_hub_id(base):
        meta["base_model"] = base
    meta["model-index"] = [dict(name="eat-asd encoder", results=[dict(
        task=dict(type="anomaly-detection", name="Anomalous machine sound detection (DCASE Task 2)"),
        dataset=dict(type="dcase-task2", name=Path(str(config.get("data_root", "data"))).name or "data"),
        metrics=[m for m in metrics if m["value"] is not None])])]
    settings = training.get("settings", {})
    shown = {k: settings.get(k) for k in ("mode", "granularity", "loss", "epochs", "batch_size", "lr", "lr_schedule",
                                         "warmup_fraction", "mixup_prob", "r", "alpha", "target_modules", "pooling", "seed")}
    if settings.get("loss") == "subcluster_adacos":
        shown.update(subclusters=settings.get("subclusters"), trainable_centres=settings.get("trainable_centres"))
    shown.update(granularity=training.get("granularity"), best_epoch=training.get("best_epoch"))
    scoring = config.get("scoring", {})
    revision = training.get("encoder_commit") or training.get("encoder_revision")
    lines = [
        _front_matter(meta),
        "# EAT encoder fine-tuned for anomalous machine sound detection\n",
        f"The EAT audio encoder `{base}`" + (f" (revision `{revision}`)" if revision else "")
        + f", fine-tuned ({training.get('mode')}) with a classifier on {training.get('classes')} classes "
        f"({training.get('granularity')} labels) of the normal training clips of {len(machines)} machine types, "
        f"then used for cosine-distance anomaly scores (`{scoring.get('backend', 'knn')}` back-end) against memory banks of "
        "normal embeddings. "
        "LoRA weights are merged in.\n",
        "## Data\n",
        f"Machine types: {', '.join(machines)}. Clips per split, domain and label:\n",
        markdown_table(counts),
        "## Settings\n",
        markdown_table(pd.DataFrame([dict(setting=k, value=json.dumps(v)) for k, v in shown.items()])),
        f"Scoring: back-end `{scoring.get('backend', 'knn')}`, k = {scoring.get('k')}, bank split `{scoring.get('bank_split')}`, domain strategy "
        f"`{scoring.get('domain_strategy')}`, embedding pooling `{config.get('embedding', {}).get('pooling')}`.\n",
        "## Results\n",
        f"- Official DCASE score: {_number(summary.get('official_score'))}",
        f"- Harmonic means: AUC(source) {_number(means.get('source harmonic mean', {}).get('AUC'))}, AUC(target) "
        f"{_number(means.get('target harmonic mean', {}).get('AUC'))}, pAUC {_number(means.get('harmonic mean', {}).get('pAUC'))}",
        f"- Overall AUROC: {_number(summary.get('overall_auroc'))}\n",
        "Per machine type:\n",
        markdown_table(auroc),
        "## Usage\n",
        usage("path/or/repo-id"),
        "## How it was made\n",
        f"```bash\n{command}\n```\n",
    ]
    return "\n".join(lines)


def write_encoder_card(out: str | Path, summary_path, auroc_path, training_path, manifest_paths, config: dict,
                       command: str) -> None:
    from .io import write_text

    write_text(out, encoder_card(summary_path, auroc_path, training_path, manifest_paths, config, command))


def adapter_card(base: str, revision: str | None, r: int, alpha: int, targets: list[str]) -> str:
    """The LoRA adapter's README.md: what it adapts and how to attach it with peft."""
    meta = dict(library_name="peft", tags=TAGS + ["lora"])
    if is_hub_id(base):
        meta["base_model"] = base
    rev = f', revision="{revision}"' if revision else ""
    return "\n".join([
        _front_matter(meta),
        "# LoRA adapter of an EAT encoder for anomalous machine sound detection\n",
        f"Rank {r}, alpha {alpha}, on {len(targets)} attention layers ({', '.join(targets[:2])}, ...) of "
        f"`{base}`" + (f" at revision `{revision}`" if revision else "") + ".\n",
        "```python\nfrom peft import PeftModel\nfrom transformers import AutoModel\n\n"
        f'base = AutoModel.from_pretrained("{base}"{rev}, trust_remote_code=True)\n'
        'model = PeftModel.from_pretrained(base, "path/to/lora_adapter")\n```\n',
    ])
