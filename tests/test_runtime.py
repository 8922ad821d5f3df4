import numpy as np
import pytest
import torch

from eat_asd import runtime
from eat_asd.runtime import autocast, inference_weights, resolve_device, resolve_precision


def test_auto_precision_follows_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: True)
    assert resolve_precision("auto", cpu) == "bfloat16"
    assert resolve_precision("auto", cpu, training=True) == "float32"  # bf16 CPU training changed the demo's scores
    assert resolve_precision("bfloat16", cpu, training=True) == "bfloat16"
    assert resolve_precision("auto", torch.device("cuda"), training=True) == "bfloat16"
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: False)
    assert resolve_precision("auto", cpu) == "float32"
    assert resolve_precision("bfloat16", cpu) == "bfloat16" and resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("auto", torch.device("cuda")) == "bfloat16"
    assert resolve_precision("auto", torch.device("mps")) == "float32"
    with pytest.raises(ValueError, match="precision = 'fp16'"):
        resolve_precision("fp16", cpu)


def test_autocast_only_when_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: False)
    with autocast(cpu, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, "bfloat16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: True)
    with autocast(cpu, "auto", training=True):
        assert not torch.is_autocast_enabled("cpu")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    assert resolve_device(None) == resolve_device("auto") == runtime.default_device()
    with pytest.raises(ValueError, match="device = 'gpu0'"):
        resolve_device("gpu0")


def test_inference_weights_cast_once_and_give_the_autocast_result(tiny_model):
    cpu = torch.device("cpu")
    fast = inference_weights(tiny_model, cpu, "bfloat16")
    assert fast is not tiny_model and tiny_model.blocks[0].attn.qkv.weight.dtype == torch.float32
    assert fast.blocks[0].attn.qkv.weight.dtype == fast.patch_embed.conv.weight.dtype == torch.bfloat16
    assert fast.blocks[0].norm1.weight.dtype == fast.extra_tokens.dtype == torch.float32  # LayerNorm, tokens stay float32
    x = torch.randn(2, 1, 64, 128)
    with torch.inference_mode(), autocast(cpu, "bfloat16"):
        assert torch.equal(fast(x), tiny_model(x))
    assert inference_weights(tiny_model, cpu, "float32") is tiny_model


def test_settings_check_precision():
    from eat_asd.embed import EmbedSettings
    from eat_asd.train import TrainSettings

    with pytest.raises(ValueError, match="embedding.precision"):
        EmbedSettings(precision="half")
    with pytest.raises(ValueError, match="train.precision"):
        TrainSettings(precision="half")


def test_embedding_with_auto_precision_uses_bf16_only_on_bf16_cpus(tiny_model, monkeypatch):
    from eat_asd.embed import EmbedSettings, embed_features

    feats = torch.randn(3, 64, 128)
    ref = embed_features(tiny_model, feats, EmbedSettings(precision="float32"), device="cpu")
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: False)
    assert np.array_equal(embed_features(tiny_model, feats, EmbedSettings(), device="cpu"), ref)
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: True)
    auto = embed_features(tiny_model, feats, EmbedSettings(), device="cpu")
    assert np.array_equal(auto, embed_features(tiny_model, feats, EmbedSettings(precision="bfloat16"), device="cpu"))
    assert not np.array_equal(auto, ref)
