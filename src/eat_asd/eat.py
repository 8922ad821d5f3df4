"""The EAT audio encoder (ViT-B over 16x16 fbank patches, post-norm blocks), natively.

Parameter names follow the Hugging Face `worstchan/EAT-*` checkpoints (after their
`model.` prefix), with one exception: the patch-embedding convolution is called
`patch_embed.conv` here instead of `local_encoder.proj`, so that the LoRA target
names `qkv` and `proj` match only the attention Linear layers
(`blocks.N.attn.qkv`, `blocks.N.attn.proj`). Loading and saving translate the name.

Everything above the checkpoints section is also the exported model code (see hf.py): it
may import only the standard library and torch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .encoder_source import hub_offline, is_hub_id, missing_config_keys
from .layout import CONFIG_FILE, WEIGHTS_FILE
from .io import atomic_path
from .errors import CheckpointError

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "worstchan/EAT-base_epoch30_pretrain"
HUB_PREFIX = "model."
# hub key prefix -> our key prefix
_RENAMES = {"local_encoder.proj.": "patch_embed.conv."}
# Layers of checkpoints fine-tuned for classification (e.g. AS-2M): not part of the encoder.
CLASSIFIER_PREFIXES = ("head.", "fc_norm.")
POOLINGS = ("cls", "mean", "cls+mean")




@dataclass
class EATConfig:
    """EAT hyper-parameters, under the field names of the Hub config.json."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    stride: int = 16
    in_chans: int = 1
    mel_bins: int = 128
    max_length: int = 768  # time patches covered by the fixed positions
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    norm_affine: bool = True
    layer_norm_first: bool = False
    fixed_positions: bool = True
    img_size: list = field(default_factory=lambda: [1024, 128])
    num_classes: int = 527
    model_variant: str = "pretrain"
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    activation_dropout: float = 0.0
    post_mlp_drop: float = 0.0
    start_drop_path_rate: float = 0.0
    end_drop_path_rate: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "EATConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(set(d) - known)
        if ignored:
            log.debug("EAT config: ignoring fields %s", ignored)
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % 4:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of 4 for 2-D sin-cos positions")
        if self.patch_size != self.stride:
            raise ValueError("only non-overlapping patches (patch_size == stride) are supported")
        if self.layer_norm_first:
            raise ValueError("EAT checkpoints use post-norm blocks (layer_norm_first = false)")
        if self.mel_bins % self.patch_size:
            raise ValueError(f"mel_bins {self.mel_bins} is not a multiple of patch_size {self.patch_size}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(model_type="eat", architectures=["EATModel"])
        return d

    @classmethod
    def variant(cls, name: str) -> "EATConfig":
        """The published sizes: EAT-base (768-dim, 12 blocks, 12 heads) and EAT-large (1024, 24, 16)."""
        if name not in VARIANTS:
            raise ValueError(f"EAT variant {name!r}: choose one of {', '.join(VARIANTS)}")
        return cls(**VARIANTS[name])

    @property
    def freq_patches(self) -> int:
        return self.mel_bins // self.patch_size


VARIANTS = {"base": dict(embed_dim=768, depth=12, num_heads=12), "large": dict(embed_dim=1024, depth=24, num_heads=16)}


def sincos_positions(time_patches: int, freq_patches: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positions, (time_patches * freq_patches, dim), time-major.

    First dim/2 channels encode the frequency index, the last dim/2 the time index,
    each as [sin(p w_i), cos(p w_i)] with w_i = 10000^(-i / (dim/4)).
    """
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)

    def encode(p: torch.Tensor) -> torch.Tensor:
        angles = p.to(torch.float64)[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    t = torch.arange(time_patches).repeat_interleave(freq_patches)
    f = torch.arange(freq_patches).repeat(time_patches)
    return torch.cat([encode(f), encode(t)], dim=1).float()


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu":
            x = matmul_attention(q, k, v)
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as two batched matmuls, for bf16 on the CPU.

    There the fused SDPA kernel reaches only about a fifth of the bf16 matmul peak at EAT's 513
    tokens, while these matmuls run near it; the softmax kernel accumulates bf16 input in float32.
    The scores are rounded to bf16 once (SDPA keeps them in float32).
    """
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))
    return torch.matmul(scores.softmax(dim=-1), v)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Post-norm transformer block: x = norm1(x + attn(x)); x = norm2(x + mlp(x))."""

    def __init__(self, cfg: EATConfig):
        super().__init__()
        d = cfg.embed_dim
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias)
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: EATConfig):
        super().__init__()
        self.conv = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(2).transpose(1, 2)  # (B, D, T', F') -> (B, T'F', D), time-major


class FixedPositions(nn.Module):
    def __init__(self, cfg: EATConfig):
        super().__init__()
        pos = sincos_positions(cfg.max_length, cfg.freq_patches, cfg.embed_dim)
        self.register_buffer("positions", pos.unsqueeze(0))


class EAT(nn.Module):
    """forward(x: (B, 1, T, mel_bins)) -> tokens (B, 1 + N, D); token 0 is the CLS token."""

    def __init__(self, config: EATConfig):
        super().__init__()
        config.validate()
        self.config = config
        d = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        self.fixed_positional_encoder = FixedPositions(config)
        self.extra_tokens = nn.Parameter(torch.zeros(1, 1, d))
        self.pre_norm = nn.LayerNorm(d, eps=config.norm_eps, elementwise_affine=config.norm_affine)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        nn.init.trunc_normal_(self.extra_tokens, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        _, _, t, f = x.shape
        p = self.config.patch_size
        if t % p or f != self.config.mel_bins:
            raise ValueError(f"expected input (B, 1, T, {self.config.mel_bins}) with T a multiple of {p}, got {tuple(x.shape)}")
        x = self.patch_embed(x)
        n = x.shape[1]
        positions = self.fixed_positional_encoder.positions
        if n > positions.shape[1]:
            raise ValueError(
                f"input of {t} frames gives {n} patches; the fixed positions cover {positions.shape[1]} "
                f"({self.config.max_length * p} frames)"
            )
        x = x + positions[:, :n].to(x.dtype)
        x = torch.cat([self.extra_tokens.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x)
        return x

    @staticmethod
    def pool(tokens: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
        """Clip embedding from the output tokens: the CLS token, the mean of the patch tokens, or both
        concatenated. Training and embedding both pool here, so the classifier sees what the banks hold."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        if pooling == "cls":
            return tokens[:, 0]
        patches = tokens[:, 1:].mean(dim=1)
        return patches if pooling == "mean" else torch.cat([tokens[:, 0], patches], dim=1)

    def pooled_dim(self, pooling: str = "cls") -> int:
        return self.config.embed_dim * (2 if pooling == "cls+mean" else 1)


# ---------------------------------------------------------------------------- checkpoints


def _hub_to_ours(key: str) -> str:
    if key.startswith(HUB_PREFIX):
        key = key[len(HUB_PREFIX):]
    for hub, ours in _RENAMES.items():
        if key.startswith(hub):
            return ours + key[len(hub):]
    return key


def _ours_to_hub(key: str) -> str:
    for hub, ours in _RENAMES.items():
        if key.startswith(ours):
            key = hub + key[len(ours):]
    return HUB_PREFIX + key


def resolve_checkpoint(source: str | os.PathLike, revision: str | None = None) -> Path:
    """A local directory holding config.json and weights, downloading a Hub id (at `revision`, a branch,
    tag or commit; None = main) into the HF cache if needed."""
    path = Path(source)
    if path.is_dir():
        if revision:
            raise CheckpointError(f"encoder_revision = {revision!r} applies to Hub ids only, but encoder {source} is a local folder")
        return path
    src = str(source)
    if path.exists() or not is_hub_id(src):
        raise CheckpointError(f"encoder checkpoint {src!r}: no such directory (and not a Hub id like owner/name)")
    from huggingface_hub import snapshot_download

    try:
        # Only configuration and weights: the Hub repo's Python files are never fetched or run.
        # safetensors first; .bin weights (read with weights_only=True) only when a repo has no other.
        path = Path(snapshot_download(src, revision=revision, allow_patterns=[CONFIG_FILE, "*.safetensors"]))
        if not any(path.glob("*.safetensors")):
            path = Path(snapshot_download(src, revision=revision, allow_patterns=[CONFIG_FILE, "*.bin"]))
        return path
    except Exception as err:
        hint = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if hub_offline() else ""
        at = f" at revision {revision!r}" if revision else ""
        raise CheckpointError(f"encoder checkpoint {src!r}{at}: cannot download from the Hugging Face Hub{hint}: {err}") from err


def hub_commit(directory: Path) -> str | None:
    """The commit of a Hub snapshot folder (huggingface_hub names them snapshots/<commit>), else None."""
    return directory.name if directory.parent.name == "snapshots" else None


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    st = directory / WEIGHTS_FILE
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except Exception as err:
            raise CheckpointError(f"{st}: not a readable safetensors file ({err})") from err
    bins = sorted(directory.glob("*.bin"))
    if bins:
        try:
            return torch.load(bins[0], map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"{bins[0]}: cannot be loaded with weights_only=True ({err})") from err
    raise CheckpointError(f"{directory}: no {WEIGHTS_FILE} (or .bin weights) found")


def load_eat(source: str | os.PathLike = DEFAULT_ENCODER, revision: str | None = None) -> EAT:
    """Load an EAT encoder from a local directory or a Hub id (at `revision`); returns it in eval mode
    on the CPU. The classification layers of fine-tuned checkpoints are left out (and logged)."""
    directory = resolve_checkpoint(source, revision)
    cfg_path = directory / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_FILE}")
    try:
        values = json.loads(cfg_path.read_text())
        missing = missing_config_keys(values)
        if missing:  # the defaults would load silently (num_heads) or fail later without naming the key
            raise ValueError(f"lacks {', '.join(missing)}")
        config = EATConfig.from_dict(values)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{cfg_path}: {err}") from err
    model = EAT(config)
    state = {_hub_to_ours(k): v for k, v in _read_weights(directory).items()}
    classifier = sorted(k for k in state if k.startswith(CLASSIFIER_PREFIXES))
    if classifier:
        log.info("%s: fine-tuned for classification; not used by the encoder: %s", directory, ", ".join(classifier))
        state = {k: v for k, v in state.items() if k not in classifier}
    pos_key = "fixed_positional_encoder.positions"
    if pos_key not in state:
        state[pos_key] = model.fixed_positional_encoder.positions.clone()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing keys: " + ", ".join(_ours_to_hub(k) for k in missing))
        if unexpected:
            parts.append("unexpected keys: " + ", ".join(unexpected))
        raise CheckpointError(f"{directory}: weights do not fit the EAT config; " + "; ".join(parts))
    wrong = [f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}" for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{directory}: wrong shapes: " + ", ".join(wrong))
    model.load_state_dict(state)
    return model.eval()


def save_eat(model: EAT, directory: str | os.PathLike) -> Path:
    """Write config.json and model.safetensors in the Hub layout that load_eat reads, plus the modeling
    file that makes the folder a transformers model (AutoModel with trust_remote_code=True)."""
    from safetensors.torch import save_file

    from .hf import HF_CONFIG, write_modeling_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {_ours_to_hub(k): v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(directory / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps({**model.config.to_dict(), **HF_CONFIG}, indent=2) + "\n")
    write_modeling_file(directory)
    return directory


def count_flops(config: EATConfig, frames: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass over `frames` input frames."""
    d, p = config.embed_dim, config.patch_size
    n = (frames // p) * config.freq_patches + 1
    hidden = int(d * config.mlp_ratio)
    per_block = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * hidden
    return 2 * (n - 1) * p * p * config.in_chans * d + config.depth * per_block


__all__ = ["EAT", "EATConfig", "load_eat", "save_eat", "sincos_positions", "CheckpointError", "DEFAULT_ENCODER", "count_flops"]
