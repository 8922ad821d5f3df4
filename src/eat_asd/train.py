"""Fine-tuning ONE shared EAT encoder on the normal training clips of all machine types.

An auxiliary classifier on the pooled clip embedding (the same pooling the memory banks use)
learns labels finer than the machine type (machine x section x attributes); the encoder adapts through LoRA on the attention qkv and
proj layers (or fully, or not at all). Validation uses held-out training normals only.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .config import schema_settings
from .data import aux_labels, resolve_granularity, supplemental_clips, train_val_split, training_clips
from .eat import EAT, HUB_PREFIX, hub_commit, load_eat, resolve_checkpoint, save_eat
from .encoder_source import hub_origin
from .errors import TrainingError
from .features import FeatureFile, FeatureSettings
from .io import atomic_dir, atomic_path, write_csv, write_json
from .layout import ADAPTER_WEIGHTS_FILE, MODEL_CARD_FILE, Training
from .losses import make_head, mixup, soft_cross_entropy
from .noise_mix import NoiseMix, NoiseMixer, noise_recordings
from .runtime import autocast, resolve_device, resolve_precision, to_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
@schema_settings("train", "lora", "finetune", "embedding")
class TrainSettings:
    """The training job's settings, each named after its config key (train.*, lora.*, finetune.mode,
    embedding.pooling); defaults and ranges are the schema's."""

    mode: str
    r: int
    alpha: int
    dropout: float
    target_modules: tuple[str, ...]
    blocks: tuple[int, ...] | None  # None = every block; e.g. (10, 11) for the top two
    loss: str
    arcface_margin: float
    arcface_scale: float
    subclusters: int  # centres per class of sub-cluster AdaCos
    trainable_centres: bool
    mixup_prob: float  # share of batches mixed up
    mixup_alpha: float  # mixing weight ~ Beta(alpha, alpha)
    granularity: str
    pseudo_labels: int  # k-means clusters as labels of sections without attributes (granularity auto); 0 = off
    epochs: int
    max_steps: int | None
    batch_size: int
    grad_accum: int
    lr: float
    lr_schedule: str  # after the linear warmup: cosine decay to 0, or constant
    weight_decay: float
    warmup_fraction: float
    val_fraction: float
    seed: int
    crop_frames: int | None  # random time crop of the cached features
    time_masks: int  # SpecAugment-style masks per clip
    time_mask_frames: int
    freq_masks: int
    freq_mask_bins: int
    precision: str
    supplemental: str  # ignore, or normal: supplemental machine recordings as extra training clips
    noise_mix: dict  # {prob, snr_db: [low, high]}: noise recordings mixed into training clips (noise_mix.py)
    pooling: str  # the classifier's input: embedding.pooling, so it trains what the banks use

    def __post_init__(self):
        # tuples, whatever the caller gave: the settings are hashed into the checkpoint key
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        object.__setattr__(self, "blocks", tuple(self.blocks) if self.blocks else None)
        NoiseMix.of(self.noise_mix)  # refuses snr_db = [high, low]

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class AuxClassifier(nn.Module):
    """Encoder + classifier on the pooled clip embedding (EAT.pool, as in embedding)."""

    def __init__(self, encoder: nn.Module, head: nn.Module, pooling: str = "cls"):
        super().__init__()
        self.encoder, self.head, self.pooling = encoder, head, pooling

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(EAT.pool(self.encoder(x), self.pooling).float(), targets)


def lora_config(settings: TrainSettings, targets: list[str] | None = None, **meta):
    """peft's LoraConfig of the settings; with `targets`, for exactly those module names instead of the pattern."""
    from peft import LoraConfig

    if targets is not None:
        extra = dict(target_modules=targets)
    else:
        extra = dict(target_modules=list(settings.target_modules))
        if settings.blocks:
            extra.update(layers_to_transform=list(settings.blocks), layers_pattern="blocks")
    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      bias="none", **extra, **meta)


def lora_targets(model: EAT, settings: TrainSettings) -> list[str]:
    """Module names the LoRA target pattern selects; refuses a pattern that matches nothing or a non-Linear."""
    from peft.tuners.tuners_utils import check_target_module_exists

    config = lora_config(settings)
    hits = [name for name, _ in model.named_modules() if name and check_target_module_exists(config, name)]
    if not hits:
        raise TrainingError(f"lora.target_modules = {list(settings.target_modules)} matches no layer of the encoder "
                            "(attention layers are blocks.N.attn.qkv and blocks.N.attn.proj)")
    modules = dict(model.named_modules())
    wrong = [f"{n} ({type(modules[n]).__name__})" for n in hits if not isinstance(modules[n], nn.Linear)]
    if wrong:
        raise TrainingError(f"lora.target_modules = {list(settings.target_modules)} matches non-Linear layers: {', '.join(wrong)}")
    return hits


def prepare_encoder(encoder: EAT, settings: TrainSettings) -> nn.Module:
    """The encoder with exactly the parameters the mode trains set to require gradients."""
    if settings.mode == "lora":
        from peft import get_peft_model

        lora_targets(encoder, settings)
        return get_peft_model(encoder, lora_config(settings))
    encoder.requires_grad_(settings.mode == "full")
    return encoder


def merged_encoder(encoder: nn.Module) -> EAT:
    """A plain EAT with any LoRA weights merged in (loads without peft)."""
    if isinstance(encoder, EAT):
        return encoder
    import copy

    return copy.deepcopy(encoder).merge_and_unload()


# ----------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    """The training normals of every training machine type, read batch by batch from the feature files:
    one row per view of a clip (features.channels = each gives a clip one view per channel, each with
    the clip's label)."""

    files: list[FeatureFile]
    clips: pd.DataFrame  # one row per view with columns file, row, clip, view, path, machine, aux_label, y
    classes: list[str]
    granularity: str
    mixer: NoiseMixer | None = None  # train.noise_mix

    def split(self, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """train_val_split of the clips, as positions of their views: a clip's views stay together."""
        first = self.clips.drop_duplicates("clip")
        tr, va = train_val_split(first["aux_label"].reset_index(drop=True), val_fraction, seed)
        clip = self.clips["clip"].to_numpy()
        chosen = lambda picks: np.flatnonzero(np.isin(clip, first["clip"].to_numpy()[picks]))  # noqa: E731
        return chosen(tr), chosen(va)

    def read(self, idx: np.ndarray, gen: torch.Generator | None = None) -> torch.Tensor:
        """Features of the rows `idx`; with `gen` (training batches) and a noise mix, some rows come with
        noise mixed into their waveform, drawn from `gen`."""
        files, rows = self.clips["file"].to_numpy()[idx], self.clips["row"].to_numpy()[idx]
        out = torch.empty(len(idx), *self.files[0].shape[1:])
        for f in np.unique(files):
            out[files == f] = self.files[f].read(rows[files == f])
        if gen is not None and self.mixer is not None:
            for i, row in enumerate(self.clips.iloc[idx].itertuples()):
                drawn = self.mixer.draw(row.machine, gen)
                if drawn is not None:
                    out[i] = self.mixer.features(row.path, int(row.view), *drawn)
        return out


def load_training_data(feature_paths: list[str | Path], manifests: list[pd.DataFrame], feature_settings: FeatureSettings,
                       granularity: str, pseudo_labels: int = 0, supplemental: str = "ignore",
                       noise_mix: dict | None = None) -> TrainingData:
    """The training rows of the feature files: training normals, and with supplemental = normal the
    supplemental machine recordings as normal clips of their section; with noise_mix, the noise
    recordings of the same manifests to mix in. With granularity auto and pseudo_labels, sections
    without attributes get their labels later (train_encoder), so fewer than 2 classes here is no
    error yet."""
    parts = []
    files = []
    for i, (path, manifest) in enumerate(zip(feature_paths, manifests)):
        regular = training_clips(manifest)
        clips = pd.concat([regular, supplemental_clips(manifest)]) if supplemental == "normal" else regular
        if clips.empty:
            continue
        ff = FeatureFile(path, feature_settings)
        files.append(ff)
        keys = clips["key"].tolist()
        rows = ff.rows(keys)
        views = len(rows) // max(1, len(keys))
        clips = clips.loc[clips.index.repeat(views)].assign(file=len(files) - 1, row=rows,
                                                            view=np.array([ff.views[r] for r in rows], dtype=int),
                                                            regular=np.repeat(clips["split"].to_numpy() == "train", views))
        parts.append(clips)
    if not parts:
        raise TrainingError("no normal training clips in the training machine types: nothing to train on")
    clips = pd.concat(parts, ignore_index=True)
    clips["clip"] = clips.groupby(["file", "key"], sort=False).ngroup()
    # the supplemental recordings carry no attributes: the label level is that of the training clips
    level = resolve_granularity(clips[clips["regular"]], granularity)
    clips["aux_label"] = aux_labels(clips, level).to_numpy()
    classes = sorted(clips["aux_label"].unique())
    if len(classes) < 2 and not (granularity == "auto" and pseudo_labels and (clips["attributes"] == "{}").any()):
        raise TrainingError(f"the auxiliary classifier needs at least 2 classes; granularity {level!r} gives only {classes} "
                            "(add machine types, or use a finer train.granularity)")
    clips["y"] = clips["aux_label"].map({c: i for i, c in enumerate(classes)})
    mixer = None
    if (mix := NoiseMix.of(noise_mix)) is not None:
        machines = set(clips["machine"].astype(str))
        noise = noise_recordings(manifests, machines)
        if not noise:
            raise TrainingError(f"train.noise_mix.prob = {mix.prob}, but the training machine types {sorted(machines)} "
                                "have no noise-only recordings (supplemental/ clips named ..._noise_...)")
        without = sorted(machines - set(noise))
        if without:
            log.warning("train.noise_mix: no noise recordings for %s; their clips stay clean", ", ".join(without))
        mixer = NoiseMixer(mix, noise, feature_settings.channels, feature_settings.target_frames)
    return TrainingData(files, clips, classes, level, mixer)


def augment(x: torch.Tensor, settings: TrainSettings, gen: torch.Generator) -> torch.Tensor:
    """Random time crop and SpecAugment-style time/frequency masks, drawn from `gen`."""
    b, t, f = x.shape
    if settings.crop_frames and settings.crop_frames < t:
        starts = torch.randint(0, t - settings.crop_frames + 1, (b,), generator=gen)
        x = torch.stack([x[i, s : s + settings.crop_frames] for i, s in enumerate(starts.tolist())])
        t = settings.crop_frames
    if settings.time_masks or settings.freq_masks:
        x = x.clone()
        for i in range(b):
            for _ in range(settings.time_masks):
                w = int(torch.randint(0, settings.time_mask_frames + 1, (1,), generator=gen))
                s = int(torch.randint(0, max(1, t - w), (1,), generator=gen))
                x[i, s : s + w] = 0
            for _ in range(settings.freq_masks):
                w = int(torch.randint(0, settings.freq_mask_bins + 1, (1,), generator=gen))
                s = int(torch.randint(0, max(1, f - w), (1,), generator=gen))
                x[i, :, s : s + w] = 0
    return x


# ----------------------------------------------------------------------------- loop


def lr_lambda(total_steps: int, warmup_fraction: float, schedule: str = "cosine"):
    warmup = max(1, int(round(total_steps * warmup_fraction)))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def validation_loss(model: AuxClassifier, data: TrainingData, idx: np.ndarray, batch_size: int, device,
                    precision: str = "auto") -> tuple[float, float]:
    """Mean loss and accuracy of the classifier on the held-out training clips `idx`."""
    model.eval()
    total_loss, correct = 0.0, 0
    for s in range(0, len(idx), batch_size):
        b = idx[s : s + batch_size]
        x = to_device(data.read(b).unsqueeze(1), device)
        y = torch.as_tensor(data.clips["y"].to_numpy()[b], device=device)
        with autocast(device, precision, training=True):
            logits = model(x)
        total_loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / max(1, len(idx)), correct / max(1, len(idx))


def train_encoder(encoder_source: str | Path, data: TrainingData, settings: TrainSettings, out_dir: str | Path,
                  device=None, revision: str | None = None) -> dict:
    """Train, keep the best epoch by validation loss, and write the merged encoder and reports to out_dir.

    Writes the files of eat_asd.layout.Training(out_dir): the encoder (Hub layout, load with load_eat),
    the LoRA adapter (peft, LoRA mode), the classifier head, the training log and the summary. An
    interrupted run resumes from its checkpoint.
    """
    files = Training(str(out_dir))
    device = resolve_device(device)
    started = time.time()
    torch.manual_seed(settings.seed)
    try:
        directory = resolve_checkpoint(encoder_source, revision)
        base = load_eat(directory)
    except Exception as err:
        raise TrainingError(f"encoder {encoder_source}: {err}") from err
    origin = BaseEncoder.of(encoder_source, directory, revision)
    pseudo = {}
    if settings.mode != "frozen" and settings.granularity == "auto" and settings.pseudo_labels:
        from .pseudo_labels import assign_pseudo_labels

        pseudo = assign_pseudo_labels(data, base, settings.pseudo_labels, settings.seed, settings.pooling, device)
        for section, sizes in pseudo.items():
            log.info("%s has no attributes: %d pseudo-label clusters of %s clips", section, len(sizes), sizes)
    if settings.mode != "frozen" and len(data.classes) < 2:
        raise TrainingError(f"the auxiliary classifier needs at least 2 classes, the training clips give {data.classes}")
    tr_idx, va_idx = data.split(settings.val_fraction, settings.seed)
    summary = dict(mode=settings.mode, encoder=str(encoder_source), encoder_hub_id=origin.hub_id,
                   encoder_local_path=origin.local_path, encoder_revision=revision, encoder_commit=origin.commit,
                   classes=len(data.classes), granularity=data.granularity, pooling=settings.pooling,
                   n_train=int(len(tr_idx)), n_val=int(len(va_idx)), pseudo_labels=pseudo, settings=asdict(settings),
                   # what else the weights depend on: the reductions' thread count, the torch version, the device
                   torch_threads=torch.get_num_threads(), torch_version=torch.__version__,
                   precision=resolve_precision(settings.precision, device, training=True))
    if settings.mode == "frozen":
        save_eat(base, files.encoder)
        write_csv(files.log, pd.DataFrame(columns=LOG_COLUMNS))
        summary.update(best_epoch=None, trainable_parameters=0, total_parameters=_count(base), seconds=time.time() - started)
        write_json(files.summary, summary)
        log.info("finetune.mode = frozen: the pre-trained encoder is used as is")
        return summary

    targets = lora_targets(base, settings) if settings.mode == "lora" else []
    encoder = prepare_encoder(base, settings)
    model = AuxClassifier(encoder, make_head(settings, base.pooled_dim(settings.pooling), len(data.classes)), settings.pooling).to(device)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    log.info("training %s: %d of %d parameters trainable (%.2f%%), %d classes (%s), %d train / %d validation clips",
             settings.mode, n_trainable, n_total, 100 * n_trainable / n_total, len(data.classes), data.granularity,
             len(tr_idx), len(va_idx))
    optimizer, scheduler, total_steps = _optimiser(model, settings, len(tr_idx))

    ckpt_path = Path(files.checkpoint)
    state = dict(epoch=0, step=0, best_val=float("inf"), best_epoch=None, best_state=None, log=[])
    if ckpt_path.is_file():
        state = _resume(ckpt_path, settings, data, model, optimizer, scheduler, origin) or state

    for epoch in range(state["epoch"], settings.epochs):
        if state["step"] >= total_steps:
            break
        t0 = time.time()
        model.train()
        gen = torch.Generator().manual_seed(settings.seed * 1000 + epoch)  # order and augmentation per epoch
        mix_rng = np.random.default_rng([settings.seed, epoch])  # mixup draws apart, so mixup_prob = 0 changes nothing
        order = tr_idx[torch.randperm(len(tr_idx), generator=gen).numpy()]
        train_loss, train_acc = _train_epoch(model, data, order, settings, optimizer, scheduler, state, total_steps,
                                             gen, mix_rng, device, epoch)
        val_loss, val_acc = validation_loss(model, data, va_idx, settings.batch_size, device, settings.precision) if len(va_idx) else (float("nan"), float("nan"))
        row = dict(epoch=epoch + 1, step=state["step"], train_loss=train_loss, train_acc=train_acc,
                   val_loss=val_loss, val_acc=val_acc, lr=scheduler.get_last_lr()[0], seconds=time.time() - t0)
        if len(va_idx) and not math.isfinite(val_loss):
            raise TrainingError(f"epoch {epoch + 1}: the validation loss is {val_loss}; "
                                + _non_finite_cause(data, va_idx, None, settings))
        state["log"].append(row)
        log.info("epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f | %.1f s", row["epoch"], row["train_loss"],
                 row["train_acc"], val_loss, val_acc, row["seconds"])
        # no validation clips: the last epoch counts as best
        if not len(va_idx) or val_loss < state["best_val"]:
            state.update(best_val=val_loss, best_epoch=epoch + 1, best_state=trainable_state(model))
        state["epoch"] = epoch + 1
        _checkpoint(ckpt_path, settings, data, model, optimizer, scheduler, state, origin)

    model.load_state_dict(state["best_state"], strict=False)
    model.eval().cpu()
    best = state["log"][state["best_epoch"] - 1]
    _write_outputs(files, model, data, settings, origin, targets)
    summary.update(best_epoch=state["best_epoch"], val_loss=best["val_loss"], val_acc=best["val_acc"],
                   train_loss=best["train_loss"], train_acc=best["train_acc"], steps=state["step"],
                   trainable_parameters=n_trainable, total_parameters=n_total,
                   trainable_percent=100 * n_trainable / n_total, seconds=time.time() - started,
                   seconds_per_epoch=float(np.mean([r["seconds"] for r in state["log"]])), device=str(device))
    write_csv(files.log, pd.DataFrame(state["log"], columns=LOG_COLUMNS))
    write_json(files.summary, summary)
    shutil.rmtree(ckpt_path.parent, ignore_errors=True)
    return summary


def _optimiser(model: nn.Module, settings: TrainSettings, n_train: int):
    """AdamW over the trainable parameters and its learning-rate schedule over the run's optimiser steps:
    (optimizer, scheduler, total steps)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(n_train / settings.batch_size) / settings.grad_accum)
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    schedule = lr_lambda(total_steps, settings.warmup_fraction, settings.lr_schedule)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), total_steps


def _train_epoch(model: nn.Module, data: TrainingData, order: np.ndarray, settings: TrainSettings, optimizer, scheduler,
                 state: dict, total_steps: int, gen: torch.Generator, mix_rng: np.random.Generator, device,
                 epoch: int) -> tuple[float, float]:
    """One pass over the training clips in `order`, batch by batch with gradient accumulation; counts the
    optimiser steps in state["step"] and stops at total_steps. Returns the loss and accuracy of the clips seen."""
    labels_all = data.clips["y"].to_numpy()
    batches_per_epoch = math.ceil(len(order) / settings.batch_size)
    run_loss, run_correct, seen = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(range(batches_per_epoch), desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch", mininterval=2)
    for bi in bar:
        b = order[bi * settings.batch_size : (bi + 1) * settings.batch_size]
        x = to_device(augment(data.read(b, gen), settings, gen).unsqueeze(1), device)
        y = torch.as_tensor(labels_all[b], device=device)
        target_rows = F.one_hot(y, len(data.classes)).float()
        mixed = settings.mixup_prob > 0 and mix_rng.random() < settings.mixup_prob
        if mixed:
            lam = float(mix_rng.beta(settings.mixup_alpha, settings.mixup_alpha))
            x, target_rows = mixup(x, target_rows, lam, torch.as_tensor(mix_rng.permutation(len(b)), device=device))
        with autocast(device, settings.precision, training=True):
            logits = model(x, target_rows)
        loss = soft_cross_entropy(logits.float(), target_rows) if mixed else F.cross_entropy(logits.float(), y)
        if not torch.isfinite(loss):
            raise TrainingError(f"epoch {epoch + 1}, batch {bi + 1}: the training loss is {loss.item()}; "
                                + _non_finite_cause(data, b, x, settings))
        (loss * len(b) / (settings.batch_size * settings.grad_accum)).backward()
        run_loss += loss.item() * len(b)
        run_correct += int((logits.argmax(1) == y).sum())
        seen += len(b)
        if (bi + 1) % settings.grad_accum == 0 or bi + 1 == batches_per_epoch:
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            bar.set_postfix(loss=f"{run_loss / seen:.4f}")
            if state["step"] >= total_steps:
                break
    return run_loss / seen, run_correct / seen


LOG_COLUMNS = ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]


def _non_finite_cause(data: TrainingData, idx: np.ndarray, x: torch.Tensor | None, settings: TrainSettings) -> str:
    """Why a loss is not finite: features holding NaN/inf (named), or training that diverged."""
    if x is None:
        x = data.read(idx)
    bad = ~torch.isfinite(x.reshape(len(idx), -1)).all(dim=1).cpu().numpy()
    if bad.any():
        clips = data.clips.iloc[idx[bad]]
        files = sorted({str(data.files[f].path) for f in clips["file"]})
        return (f"the features of {int(bad.sum())} clip(s) are not finite, e.g. {', '.join(clips['path'].head(3))} "
                f"(in {', '.join(files)}): rebuild the feature file")
    return f"training diverged: lower train.lr (now {settings.lr})"


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class BaseEncoder:
    """The pre-trained encoder a run starts from. The LoRA adapter and the model cards name it by its Hub id,
    or, for a local folder whose Hub id is unknown, by the folder's name alone: the absolute local path is
    recorded in the run's summary only, never in what `eat-asd publish` uploads."""

    name: str  # the Hub id, else the local folder's name
    hub_id: str | None  # given, or known from a local folder (a Hub cache snapshot, or its config.json)
    local_path: str | None  # absolute path of a local folder
    revision: str | None  # the Hub commit it resolved to (else the asked revision)
    commit: str | None

    @classmethod
    def of(cls, source, directory: Path, revision: str | None) -> "BaseEncoder":
        if not Path(source).is_dir():
            commit = hub_commit(directory)
            return cls(str(source), str(source), None, commit or revision, commit)
        path = Path(source).resolve()
        hub_id, commit = hub_origin(path)
        return cls(hub_id or path.name, hub_id, str(path), commit, commit)


def _write_outputs(files: Training, model: AuxClassifier, data: TrainingData, settings: TrainSettings, origin: BaseEncoder,
                   targets: list[str]) -> None:
    from safetensors.torch import save_file

    save_eat(merged_encoder(model.encoder), files.encoder)
    with atomic_path(files.head) as tmp:
        save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, str(tmp),
                  metadata={"classes": json.dumps(data.classes), "loss": settings.loss, "pooling": settings.pooling})
    if settings.mode == "lora":
        write_adapter(Path(files.adapter), model.encoder, settings, origin, targets)


def write_adapter(directory: Path, peft_model: nn.Module, settings: TrainSettings, origin: BaseEncoder, targets: list[str]) -> None:
    """The LoRA adapter in peft's format, relative to the Hugging Face EATModel (the encoder under `model.`),
    with exact target names and the base it was trained on, so peft alone attaches it to
    AutoModel.from_pretrained(base_model_name_or_path, revision=revision)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from .model_card import adapter_card

    inner = "base_model.model."
    state = {inner + HUB_PREFIX + k[len(inner):]: v.detach().cpu().contiguous()
             for k, v in get_peft_model_state_dict(peft_model).items()}
    config = lora_config(settings, [HUB_PREFIX + t for t in targets], base_model_name_or_path=origin.name,
                         revision=origin.revision)
    with atomic_dir(directory) as tmp_dir:
        config.save_pretrained(str(tmp_dir))
        save_file(state, str(tmp_dir / ADAPTER_WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp_dir / MODEL_CARD_FILE).write_text(adapter_card(origin.name, origin.hub_id, origin.revision, settings.r, settings.alpha,
                                                        targets))


def _checkpoint(path: Path, settings, data, model, optimizer, scheduler, state, origin: BaseEncoder) -> None:
    payload = dict(settings=settings.key(), encoder=json.dumps(asdict(origin)), classes=data.classes, trainable=trainable_state(model),
                   optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=torch.get_rng_state(),
                   epoch=state["epoch"], step=state["step"], best_val=state["best_val"], best_epoch=state["best_epoch"],
                   best_state=state["best_state"], log=json.dumps(state["log"]))
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _resume(path: Path, settings, data, model, optimizer, scheduler, origin: BaseEncoder) -> dict | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        log.warning("%s: cannot be read (%s); starting from scratch", path, err)
        return None
    if (payload["settings"] != settings.key() or payload["classes"] != data.classes
            or payload.get("encoder") != json.dumps(asdict(origin))):
        log.warning("%s: written with other settings, classes or base encoder; starting from scratch", path)
        return None
    model.load_state_dict(payload["trainable"], strict=False)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"])
    log.info("resuming from %s after epoch %d", path, payload["epoch"])
    return dict(epoch=payload["epoch"], step=payload["step"], best_val=payload["best_val"], best_epoch=payload["best_epoch"],
                best_state=payload["best_state"], log=json.loads(payload["log"]))


__all__ = ["TrainSettings", "TrainingData", "TrainingError", "load_training_data", "train_encoder", "lora_targets", "prepare_encoder"]
