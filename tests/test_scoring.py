import numpy as np
import pandas as pd
import pytest
import torch

from eat_asd.scoring import ScoreSettings, knn_distance, score_against_banks, score_machine
from eat_asd.threshold import gamma_threshold


def brute_force(q, b, k, exclude_self=False):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    d = 1 - q @ b.T
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


@pytest.mark.parametrize("k", [1, 3])
def test_chunked_knn_equals_brute_force(k):
    rng = np.random.default_rng(0)
    q, b = rng.normal(size=(257, 16)), rng.normal(size=(1000, 16))
    fast = knn_distance(q, b, k, query_chunk=50, bank_chunk=128)
    assert np.allclose(fast, brute_force(q, b, k), atol=1e-5)
    loo = knn_distance(b, b, k, exclude_self=True, query_chunk=77, bank_chunk=100)
    assert np.allclose(loo, brute_force(b, b, k, exclude_self=True), atol=1e-5)


def test_knn_errors():
    with pytest.raises(ValueError, match="exceeds the memory bank size 2"):
        knn_distance(np.ones((1, 4)), np.ones((2, 4)), k=3)
    with pytest.raises(ValueError, match="empty"):
        knn_distance(np.ones((1, 4)), np.ones((1, 4)), k=1, exclude_self=True)


def meta(rows):
    return pd.DataFrame(rows, columns=["section", "domain"]).assign(
        filename=lambda f: [f"c{i}.wav" for i in range(len(f))], machine="fan", label="normal", attribute_string="")


def test_domain_min_and_section_banks():
    # bank: source clips around e0, target clips around e1; section 01 around e2
    e = np.eye(3)
    bank = np.stack([e[0], e[0] + 0.1 * e[2], e[1], e[2]])
    bank_meta = meta([("00", "source"), ("00", "source"), ("00", "target"), ("01", "source")])
    queries = np.stack([e[1], e[2]])
    q_meta = meta([("00", "target"), ("01", "source")])
    pooled = score_against_banks(bank, bank_meta, queries, q_meta, ScoreSettings(bank_split="section"))[0]
    mins = score_against_banks(bank, bank_meta, queries, q_meta, ScoreSettings(bank_split="section", domain_strategy="min"))[0]
    assert pooled[0] == pytest.approx(0.0, abs=1e-6) and mins[0] == pytest.approx(0.0, abs=1e-6)
    assert pooled[1] == pytest.approx(0.0, abs=1e-6)
    # one bank over all sections: the section-01 query finds e2 too
    one = score_against_banks(bank, bank_meta, queries, q_meta, ScoreSettings())[0]
    assert one[1] == pytest.approx(0.0, abs=1e-6)
    # k=2 with min over domains: the target bank has one clip, so k shrinks to it
    k2 = score_against_banks(bank, bank_meta, queries[:1], q_meta[:1], ScoreSettings(k=2, domain_strategy="min"))[0]
    assert k2[0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="section 02"):
        score_against_banks(bank, bank_meta, queries[:1], meta([("02", "source")]), ScoreSettings(bank_split="section"))[0]


def test_leave_one_out_training_scores():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(30, 8))
    m = meta([("00", "source")] * 25 + [("00", "target")] * 5)
    loo = score_against_banks(emb, m, emb, m, ScoreSettings(k=2), leave_one_out=True)[0]
    assert np.allclose(loo, brute_force(emb, emb, 2, exclude_self=True), atol=1e-5)
    # with domain min: a source clip is left out of the source bank but sees the whole target bank
    s = ScoreSettings(domain_strategy="min")
    loo = score_against_banks(emb, m, emb, m, s, leave_one_out=True)[0]
    src, tgt = emb[:25], emb[25:]
    expect_src = np.minimum(brute_force(src, src, 1, exclude_self=True), brute_force(src, tgt, 1))
    expect_tgt = np.minimum(brute_force(tgt, src, 1), brute_force(tgt, tgt, 1, exclude_self=True))
    assert np.allclose(loo, np.concatenate([expect_src, expect_tgt]), atol=1e-5)


def test_gamma_threshold():
    rng = np.random.default_rng(2)
    scores = rng.gamma(shape=4.0, scale=0.05, size=4000)
    t = gamma_threshold(scores, 0.9)
    assert abs(t - np.quantile(scores, 0.9)) < 0.01
    assert gamma_threshold(np.full(5, 0.3), 0.9) == 0.3
    with pytest.raises(ValueError, match="at least 3"):
        gamma_threshold(np.array([0.1, np.nan]), 0.9)


def test_score_machine_is_reproducible_and_separates():
    rng = np.random.default_rng(3)
    centre = rng.normal(size=16)
    train = centre + 0.1 * rng.normal(size=(40, 16))
    test = np.concatenate([centre + 0.1 * rng.normal(size=(10, 16)), rng.normal(size=(10, 16))])
    tm, qm = meta([("00", "source")] * 40), meta([("00", "source")] * 20)
    qm["label"] = ["normal"] * 10 + ["anomaly"] * 10
    a, thr, train_scores, k_used = score_machine(train, tm, test, qm, ScoreSettings())
    b, thr2, _, _ = score_machine(train, tm, test, qm, ScoreSettings())
    assert k_used == {"test": 1, "threshold": 1}
    assert a.equals(b) and thr == thr2 and len(train_scores) == 40
    assert a.loc[:9, "score"].max() < a.loc[10:, "score"].min()
    assert a.loc[10:, "decision"].all() and a.loc[:9, "decision"].mean() < 0.5
    assert list(a.columns) == ["filename", "machine", "section", "domain", "label", "attribute_string", "score", "decision"]


def test_settings_validation():
    with pytest.raises(ValueError, match="scoring.k"):
        ScoreSettings(k=0)
    with pytest.raises(ValueError, match="bank_split"):
        ScoreSettings(bank_split="domain")


F32 = dict(precision="float32")  # exact comparisons with the float32 model


def test_embedding_pooling_and_windows(tiny_model):
    from eat_asd.embed import EmbedSettings, embed_features, windows

    feats = torch.randn(5, 128, 128)
    cls = embed_features(tiny_model, feats, EmbedSettings(batch_size=2, **F32), device="cpu")
    both = embed_features(tiny_model, feats, EmbedSettings(pooling="cls+mean", **F32), device="cpu")
    assert cls.shape == (5, 32) and both.shape == (5, 64) and np.allclose(both[:, :32], cls, atol=1e-5)
    with torch.inference_mode():
        direct = np.stack([tiny_model(feats[i : i + 1, None])[0, 0].numpy() for i in range(5)])
    assert np.allclose(cls, direct, atol=1e-5)  # every clip, across CPU micro-batches and read batches
    assert np.allclose(embed_features(tiny_model, feats, EmbedSettings(batch_size=5, **F32), device="cpu"), direct, atol=1e-5)
    crop = embed_features(tiny_model, feats, EmbedSettings(segment_frames=64, **F32), device="cpu")
    with torch.inference_mode():
        assert np.allclose(crop[1], tiny_model(feats[1:2, None, :64])[0, 0].numpy(), atol=1e-5)
    slid = embed_features(tiny_model, feats, EmbedSettings(segment_frames=64, long_clips="sliding", **F32), device="cpu")
    with torch.inference_mode():
        halves = [tiny_model(feats[1:2, None, s : s + 64])[0, 0].numpy() for s in (0, 64)]
    assert np.allclose(slid[1], np.mean(halves, axis=0), atol=1e-5)
    assert windows(feats, EmbedSettings(segment_frames=64, long_clips="sliding", hop_frames=32)).shape == (5, 3, 64, 128)


def test_bf16_precision_is_close_to_float32(tiny_model):
    from eat_asd.embed import EmbedSettings, embed_features

    feats = torch.randn(4, 64, 128)
    ref = embed_features(tiny_model, feats, EmbedSettings(**F32), device="cpu")
    low = embed_features(tiny_model, feats, EmbedSettings(precision="bfloat16"), device="cpu")
    cos = (ref * low).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(low, axis=1))
    assert not np.array_equal(ref, low) and cos.min() > 0.999
    with pytest.raises(ValueError, match="embedding.precision"):
        EmbedSettings(precision="fp8")


def test_global_bank_of_every_machine_type():
    """bank_split = all: test clips meet the other machine types' training clips too; the threshold
    comes from this machine type's leave-one-out training scores against the whole bank."""
    e = np.eye(4)
    fan_train = np.stack([e[0], e[0] + 0.05 * e[3], e[0] + 0.1 * e[3]])
    pump_train = np.stack([e[1], e[1] + 0.05 * e[3]])
    fan_test = np.stack([e[0], e[1], e[2]])
    tm, pm, qm = meta([("00", "source")] * 3), meta([("00", "source")] * 2).assign(machine="pump"), meta([("00", "source")] * 3)
    own, _, own_train, _ = score_machine(fan_train, tm, fan_test, qm, ScoreSettings())
    glob, _, glob_train, k_used = score_machine(fan_train, tm, fan_test, qm, ScoreSettings(bank_split="all"), pump_train, pm)
    assert k_used == {"test": 1, "threshold": 1}
    assert own["score"][1] == pytest.approx(1.0, abs=1e-6) and glob["score"][1] == pytest.approx(0.0, abs=1e-6)
    assert glob["score"][0] == pytest.approx(0.0, abs=1e-6) and glob["score"][2] == pytest.approx(1.0, abs=1e-6)
    assert len(glob_train) == 3 and np.allclose(glob_train, own_train)  # fan's nearest neighbours are fan clips
    # leave-one-out against the global bank: a single-clip machine type finds the other machine types
    bank, bank_meta = np.concatenate([pump_train[:1], fan_train]), pd.concat([pm[:1], tm], ignore_index=True)
    lone_train = score_against_banks(bank, bank_meta, pump_train[:1], pm[:1], ScoreSettings(bank_split="all"), leave_one_out=True)[0]
    assert lone_train[0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="dimensions"):
        score_machine(fan_train, tm, fan_test, qm, ScoreSettings(bank_split="all"), np.ones((2, 5)), pm)
    assert ScoreSettings(bank_split="all").bank_split == "all"


def test_score_machine_says_which_k_small_banks_allowed(caplog):
    """Before, k was clamped to the bank silently and the scores JSON showed the requested k."""
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(7, 8)), rng.normal(size=(4, 8))
    tm = meta([("00", "source")] * 5 + [("00", "target")] * 2)
    qm = meta([("00", "source"), ("00", "target")] * 2)
    _, _, _, k_used = score_machine(train, tm, test, qm, ScoreSettings(k=3, domain_strategy="min"))
    assert k_used == {"test": 2, "threshold": 1}  # the target bank has 2 clips, 1 besides each clip itself
    assert "scoring.k = 3 is more than the smallest memory bank gives" in caplog.text
    _, _, _, k_used = score_machine(train, tm, test, qm, ScoreSettings(k=3))
    assert k_used == {"test": 3, "threshold": 3}


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_embedding_batch_size_changes_no_embedding_on_the_cpu(precision):
    """embedding.batch_size is an execution setting (the workflow does not rerun on it): on the CPU the
    embeddings are bit for bit the same whatever it is. Before, float32 read batches of 3 clips
    grouped the segments differently from batches of 32 (2 rows in a matmul instead of 4): up to 7e-7 apart."""
    from eat_asd.eat import EAT, EATConfig
    from eat_asd.embed import EmbedSettings, embed_features

    torch.manual_seed(0)
    model = EAT(EATConfig(embed_dim=512, depth=1, num_heads=4, max_length=16)).eval()  # wide enough to round
    feats = torch.randn(9, 32, 128)
    ref = embed_features(model, feats, EmbedSettings(batch_size=32, precision=precision), device="cpu")
    for batch_size in (1, 3, 5, 6):
        e = embed_features(model, feats, EmbedSettings(batch_size=batch_size, precision=precision), device="cpu")
        assert np.array_equal(e, ref), (batch_size, np.abs(e - ref).max())
