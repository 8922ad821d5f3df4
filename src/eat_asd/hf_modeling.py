"""The EAT encoder as a Hugging Face transformers model (model type "eat").

Importing this module registers the model type with transformers' AutoConfig and AutoModel, so
`AutoModel.from_pretrained(folder)` needs no remote code where this package is installed.
Saved encoder folders carry this code as modeling_eat.py, after the model code of eat.py (see
hf.py), so that transformers loads them where this package is not installed: keep it to torch,
transformers and the names eat.py defines.
"""

from __future__ import annotations

import dataclasses

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .eat import EAT, EATConfig, FixedPositions, PatchEmbed, sincos_positions  # in modeling_eat.py: defined above


class EATHubConfig(PretrainedConfig):
    """The EAT fields of config.json (as in the worstchan/EAT-* Hub repos), with EATConfig's defaults."""

    model_type = "eat"

    def __init__(self, **kwargs):
        for f in dataclasses.fields(EATConfig):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            setattr(self, f.name, kwargs.pop(f.name, default))
        super().__init__(**kwargs)

    def eat_config(self) -> EATConfig:
        return EATConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EATConfig)})


class HubPatchEmbed(PatchEmbed):
    """PatchEmbed with its conv under the Hub checkpoints' name, `proj` (eat.py calls it `conv`)."""

    conv = property(lambda self: self._modules["proj"])

    def __init__(self, cfg: EATConfig):
        super().__init__(cfg)
        self.proj = self._modules.pop("conv")


class HubEAT(EAT):
    """EAT under the Hub checkpoints' module names, so their weights load by name: the patch
    embedding is `local_encoder.proj`. Same forward pass and pooling as EAT."""

    patch_embed = property(lambda self: self._modules["local_encoder"])

    def __init__(self, config: EATConfig):
        super().__init__(config)
        del self._modules["patch_embed"]
        self.local_encoder = HubPatchEmbed(config)


class EATModel(PreTrainedModel):
    """forward(input_values: (B, 1, T, mel_bins) normalised fbank) -> last_hidden_state (B, 1 + N, D),
    token 0 = CLS, and pooler_output (the CLS token). `model.pool(tokens, "mean")` gives the other poolings."""

    config_class = EATHubConfig
    base_model_prefix = "model"
    main_input_name = "input_values"

    def __init__(self, config: EATHubConfig):
        super().__init__(config)
        self.model = HubEAT(config.eat_config())
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        # weights missing from a checkpoint: the fixed positions are rebuilt, as eat.py does
        if isinstance(module, FixedPositions):
            cfg = self.config.eat_config()
            module.positions.copy_(sincos_positions(cfg.max_length, cfg.freq_patches, cfg.embed_dim).unsqueeze(0))

    def pool(self, tokens: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
        return EAT.pool(tokens, pooling)

    def forward(self, input_values: torch.Tensor, return_dict: bool | None = None, **kwargs):
        tokens = self.model(input_values)
        if return_dict is False:
            return tokens, tokens[:, 0]
        return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=tokens[:, 0])


# ---------------------------------------------------------------- registration (not exported)
AutoConfig.register("eat", EATHubConfig, exist_ok=True)
AutoModel.register(EATHubConfig, EATModel, exist_ok=True)
