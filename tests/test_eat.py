import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from eat_asd.eat import EAT, CheckpointError, EATConfig, count_flops, load_eat, save_eat, sincos_positions


def test_tiny_reference_features(reference):
    model = load_eat(reference / "eat_tiny")
    assert not model.training
    x = torch.from_numpy(np.load(reference / "eat_tiny" / "input.npy"))
    expected = np.load(reference / "eat_tiny" / "expected_features.npy")
    with torch.inference_mode():
        batch = model(x).numpy()
        single = np.concatenate([model(x[i : i + 1]).numpy() for i in range(len(x))])
    assert batch.shape == expected.shape == (2, 33, 64)
    assert np.abs(batch - expected).max() < 1e-4
    assert np.abs(single - expected).max() < 1e-4


def test_rebuilt_positions_equal_checkpoint(reference):
    stored = load_file(str(reference / "eat_tiny" / "model.safetensors"))["model.fixed_positional_encoder.positions"]
    cfg = json.loads((reference / "eat_tiny" / "config.json").read_text())
    rebuilt = sincos_positions(cfg["max_length"], cfg["mel_bins"] // 16, cfg["embed_dim"])
    assert torch.allclose(stored[0], rebuilt, atol=1e-5)


def test_base_parameter_names_and_shapes(reference):
    """Our EAT-base has exactly the Hub checkpoint's parameters (names after translation, shapes)."""
    from eat_asd.eat import _ours_to_hub

    listed = {}
    for line in (reference / "eat_base_state_dict.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")
        listed[name] = json.loads(shape)
    with torch.device("meta"):
        model = EAT(EATConfig())
    ours = {_ours_to_hub(k): list(v.shape) for k, v in model.state_dict().items()}
    block0_or_global = {k: v for k, v in ours.items() if ".blocks." not in k or ".blocks.0." in k}
    assert block0_or_global == listed
    assert sum(".blocks.11." in k for k in ours) == 12 and not any(".blocks.12." in k for k in ours)


def test_lora_target_names_hit_only_attention_linears(tiny_model):
    hits = {n: type(m) for n, m in tiny_model.named_modules() if n.split(".")[-1] in ("qkv", "proj")}
    assert set(hits) == {f"blocks.{i}.attn.{p}" for i in range(2) for p in ("qkv", "proj")}
    assert all(t is torch.nn.Linear for t in hits.values())


def test_save_load_round_trip(tmp_path, tiny_model):
    save_eat(tiny_model, tmp_path / "ckpt")
    keys = load_file(str(tmp_path / "ckpt" / "model.safetensors")).keys()
    assert "model.local_encoder.proj.weight" in keys and all(k.startswith("model.") for k in keys)
    loaded = load_eat(tmp_path / "ckpt")
    x = torch.randn(3, 1, 64, 128)
    with torch.inference_mode():
        assert torch.equal(tiny_model(x), loaded(x))
    assert not list(tmp_path.glob("ckpt/.*tmp"))


def _rewrite(src, dst, edit):
    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    save_file(edit(state), str(dst / "model.safetensors"))
    return dst


def test_keys_without_prefix_and_without_positions(reference, tmp_path):
    def strip(state):
        return {k.removeprefix("model."): v for k, v in state.items() if "positions" not in k}

    ckpt = _rewrite(reference / "eat_tiny", tmp_path / "c", strip)
    model = load_eat(ckpt)
    x = torch.from_numpy(np.load(reference / "eat_tiny" / "input.npy"))
    with torch.inference_mode():
        assert np.abs(model(x).numpy() - np.load(reference / "eat_tiny" / "expected_features.npy")).max() < 1e-4


def test_missing_key_is_named(reference, tmp_path):
    ckpt = _rewrite(reference / "eat_tiny", tmp_path / "c", lambda s: {k: v for k, v in s.items() if k != "model.blocks.1.mlp.fc2.bias"})
    with pytest.raises(CheckpointError, match=r"missing keys: model\.blocks\.1\.mlp\.fc2\.bias"):
        load_eat(ckpt)


def test_unexpected_key_is_named(reference, tmp_path):
    ckpt = _rewrite(reference / "eat_tiny", tmp_path / "c", lambda s: {**s, "model.decoder.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: decoder\.weight"):
        load_eat(ckpt)


def test_checkpoint_finetuned_for_classification_loads_as_encoder(reference, tmp_path, caplog):
    """The AS-2M fine-tuned layout: extra fc_norm and head layers, model_variant finetune."""
    def add_classifier(state):
        d = state["model.extra_tokens"].shape[-1]
        return {**state, "model.fc_norm.weight": torch.ones(d), "model.fc_norm.bias": torch.zeros(d),
                "model.head.weight": torch.randn(527, d), "model.head.bias": torch.zeros(527)}

    ckpt = _rewrite(reference / "eat_tiny", tmp_path / "ft", add_classifier)
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**cfg, "model_variant": "finetune"}))
    caplog.set_level("INFO", logger="eat_asd.eat")
    model = load_eat(ckpt)
    lines = [r.getMessage() for r in caplog.records if "not used by the encoder" in r.getMessage()]
    assert len(lines) == 1 and "fc_norm.bias, fc_norm.weight, head.bias, head.weight" in lines[0]
    x = torch.from_numpy(np.load(reference / "eat_tiny" / "input.npy"))
    with torch.inference_mode():
        assert np.abs(model(x).numpy() - np.load(reference / "eat_tiny" / "expected_features.npy")).max() < 1e-4


HUB_LARGE_CONFIG = {  # the EAT-large field values, with the extra fields a Hub config.json carries
    "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0, "patch_size": 16, "stride": 16, "in_chans": 1,
    "mel_bins": 128, "max_length": 768, "num_classes": 527, "model_variant": "pretrain", "qkv_bias": True,
    "layer_norm_first": False, "norm_eps": 1e-6, "norm_affine": True, "fixed_positions": True, "img_size": [1024, 128],
    "model_type": "eat", "architectures": ["EATModel"], "torch_dtype": "float32", "transformers_version": "4.51.0",
    "auto_map": {"AutoConfig": "configuration_eat.EATConfig", "AutoModel": "modeling_eat.EATModel"},
}


def test_eat_large_config_and_weights_load(tmp_path):
    cfg = EATConfig.from_dict(HUB_LARGE_CONFIG)
    assert cfg == EATConfig.variant("large") and (cfg.embed_dim, cfg.depth, cfg.num_heads) == (1024, 24, 16)
    with torch.device("meta"):
        model = EAT(cfg)
    assert len(model.blocks) == 24 and model.blocks[0].attn.qkv.weight.shape == (3072, 1024)
    assert model.blocks[0].mlp.fc1.weight.shape == (4096, 1024)
    params = sum(p.numel() for p in model.parameters())
    assert 300e6 < params < 310e6  # EAT-large has about 309M parameters
    # the large layout (1024-dim, 16 heads of 64) loads from files; one block keeps the test small
    torch.manual_seed(0)
    small = EAT(EATConfig(**{**VARIANT_LARGE_ONE_BLOCK}))
    save_eat(small, tmp_path / "large")
    loaded = load_eat(tmp_path / "large")
    x = torch.randn(1, 1, 32, 128)
    with torch.inference_mode():
        assert torch.equal(small.eval()(x), loaded(x)) and loaded(x).shape == (1, 17, 1024)
    with pytest.raises(ValueError, match="choose one of base, large"):
        EATConfig.variant("huge")


VARIANT_LARGE_ONE_BLOCK = dict(embed_dim=1024, depth=1, num_heads=16, max_length=4)


def test_pool_cls_mean_and_both(tiny_model):
    tokens = torch.randn(2, 5, 32)
    assert torch.equal(EAT.pool(tokens, "cls"), tokens[:, 0])
    assert torch.allclose(EAT.pool(tokens, "mean"), tokens[:, 1:].mean(1))
    both = EAT.pool(tokens, "cls+mean")
    assert both.shape == (2, 64) and torch.equal(both[:, :32], tokens[:, 0])
    assert tiny_model.pooled_dim("cls+mean") == 64 and tiny_model.pooled_dim("mean") == 32
    with pytest.raises(ValueError, match="pooling 'max'"):
        EAT.pool(tokens, "max")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no_such_dir"):
        load_eat(tmp_path / "no_such_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_eat(tmp_path / "empty")


def test_input_checks(tiny_model):
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny_model(torch.zeros(1, 1, 30, 128))
    with pytest.raises(ValueError, match="fixed positions cover"):
        tiny_model(torch.zeros(1, 1, 16 * 17, 128))


def _fake_hub_cache(cache, repo, reference, weights="safetensors"):
    """huggingface_hub's cache layout for one repo snapshot, as a download would leave it."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    shutil.copy(reference / "eat_tiny" / "config.json", snap / "config.json")
    if weights == "safetensors":
        shutil.copy(reference / "eat_tiny" / "model.safetensors", snap / "model.safetensors")
    else:
        torch.save(load_file(str(reference / "eat_tiny" / "model.safetensors")), snap / "pytorch_model.bin")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("a" * 40)


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_hub_id_loads_from_offline_cache(reference, tmp_path, weights):
    """A Hub id resolves through huggingface_hub's cache layout, with HF_HUB_OFFLINE=1 and no network;
    a repo with only .bin weights loads them with weights_only=True."""
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "worstchan/EAT-tiny-test", reference, weights)
    code = (
        "import numpy as np, torch; from eat_asd.eat import load_eat;"
        "m = load_eat('worstchan/EAT-tiny-test');"
        f"x = torch.from_numpy(np.load({str(reference / 'eat_tiny' / 'input.npy')!r}));"
        f"e = np.load({str(reference / 'eat_tiny' / 'expected_features.npy')!r});"
        "print(float(np.abs(m(x).detach().numpy() - e).max()))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 1e-4
    # an id that is not in the cache fails with a message naming it
    code = "from eat_asd.eat import load_eat; load_eat('worstchan/not-there')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "worstchan/not-there" in out.stderr and "HF_HUB_OFFLINE" in out.stderr


def test_encoder_revision_pins_a_hub_commit(reference, tmp_path):
    """A revision selects that snapshot of the cache, and the commit is read back from its folder name;
    an unknown revision fails naming it; a local folder refuses a revision."""
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "worstchan/EAT-tiny-test", reference)
    code = (
        "from eat_asd.eat import resolve_checkpoint, hub_commit, load_eat;"
        "d = resolve_checkpoint('worstchan/EAT-tiny-test', revision='main'); print(hub_commit(d));"
        "load_eat('worstchan/EAT-tiny-test', revision='" + "a" * 40 + "');"
        "load_eat('worstchan/EAT-tiny-test', revision='v9')"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "a" * 40
    assert out.returncode != 0 and "at revision 'v9'" in out.stderr
    with pytest.raises(CheckpointError, match="encoder_revision = 'v1' applies to Hub ids only"):
        load_eat(reference / "eat_tiny", revision="v1")


def test_flop_count_matches_profiler(tiny_model):
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, 64, 128)
    with FlopCounterMode(display=False) as counter:
        tiny_model(x)
    cfg = tiny_model.config
    n = 4 * 8 + 1
    # torch's counter has no formula for the CPU flash-attention kernel: add q k^T and attn v by hand
    attention = cfg.depth * 2 * (2 * n * n * cfg.embed_dim)
    assert counter.get_total_flops() + attention == count_flops(cfg, 64)


class _Payload:
    """Stands in for code a pickled checkpoint could smuggle in."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_bin_weights_never_unpickle_code(tmp_path, reference):
    ckpt = tmp_path / "c"
    ckpt.mkdir()
    shutil.copy(reference / "eat_tiny" / "config.json", ckpt / "config.json")
    torch.save({"model.extra_tokens": _Payload()}, ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: cannot be loaded with weights_only=True"):
        load_eat(ckpt)


def test_matmul_attention_equals_sdpa_with_gradients():
    from eat_asd.eat import matmul_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ours = matmul_attention(q, k, v)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(ours, ref, atol=1e-12)
    g = torch.randn_like(ref)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(torch.autograd.grad(ours, (q, k, v), g),
                                                                  torch.autograd.grad(ref, (q, k, v), g)))


def test_bf16_on_cpu_takes_the_matmul_attention(tiny_model, monkeypatch):
    import eat_asd.eat as eat

    calls = []
    real = eat.matmul_attention
    monkeypatch.setattr(eat, "matmul_attention", lambda *a: calls.append(a[0].dtype) or real(*a))
    x = torch.randn(2, 1, 64, 128)
    with torch.inference_mode():
        ref = tiny_model(x)
        assert not calls  # float32 keeps the fused kernel (the golden reference path)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny_model(x)
    assert calls == [torch.bfloat16] * len(tiny_model.blocks)
    cos = torch.nn.functional.cosine_similarity(low.float().flatten(1), ref.flatten(1))
    assert cos.min() > 0.999
