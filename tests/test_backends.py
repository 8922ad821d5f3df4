"""Scoring back-ends against independent NumPy computations on random embeddings."""

import numpy as np
import pandas as pd
import pytest

from eat_asd.backends import KMeansBackend, KnnBackend, KnnRescaledBackend, smote
from eat_asd.scoring import ScoreSettings, score_machine

RNG = np.random.default_rng(1)


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def cos_dist(a, b):
    return 1 - unit(a) @ unit(b).T


def bank(n_source=20, n_target=5, dim=8):
    emb = RNG.normal(size=(n_source + n_target, dim)).astype(np.float32)
    domains = np.array(["source"] * n_source + ["target"] * n_target)
    perm = RNG.permutation(len(emb))  # domains interleaved, as in a manifest
    return emb[perm], domains[perm]


def np_domain_min_knn(x, emb, domains, k, skip=None):
    """Mean distance to the k nearest of each domain's clips (row `skip` of emb left out), min over domains."""
    out = []
    for d in ("source", "target"):
        keep = domains == d
        if skip is not None:
            keep = keep & (np.arange(len(emb)) != skip)
        dist = np.sort(cos_dist(x[None], emb[keep])[0])[:k]
        out.append(dist.mean())
    return min(out)


def test_kmeans_with_a_centre_per_source_clip_is_domain_min_knn_with_k1():
    emb, domains = bank()
    queries = RNG.normal(size=(7, 8)).astype(np.float32)
    est = KMeansBackend(n_centres=20).fit(emb, domains)
    expected = [np_domain_min_knn(q, emb, domains, 1) for q in queries]
    np.testing.assert_allclose(est.score_samples(queries), expected, rtol=1e-5, atol=1e-6)
    # leave-one-out: every clip against the others
    loo = est.loo_scores(np.arange(len(emb)))
    np.testing.assert_allclose(loo, [np_domain_min_knn(emb[i], emb, domains, 1, skip=i) for i in range(len(emb))],
                               rtol=1e-5, atol=1e-6)
    # and so does the knn back-end with k = 1 and domain-min banks
    knn = KnnBackend(k=1, domain_strategy="min").fit(emb, domains)
    np.testing.assert_allclose(knn.score_samples(queries), expected, rtol=1e-5, atol=1e-6)


def test_kmeans_scores_against_its_centres_and_every_target_clip():
    emb, domains = bank(n_source=40, n_target=6)
    est = KMeansBackend(n_centres=4).fit(emb, domains)
    assert len(est.centres_) == 4
    src = unit(emb[domains == "source"])
    # each centre is the normalised mean of its members
    for c in range(4):
        np.testing.assert_allclose(est.centres_[c], unit(src[est.labels_ == c].mean(0, keepdims=True))[0], atol=1e-5)
    queries = RNG.normal(size=(5, 8))
    reference = np.concatenate([est.centres_, unit(emb[domains == "target"])])
    np.testing.assert_allclose(est.score_samples(queries), cos_dist(queries, reference).min(axis=1), atol=1e-5)
    # leaving a source clip out recomputes its centre from the rest of its cluster
    i = int(np.flatnonzero(domains == "source")[0])
    c = est.labels_[0]
    members = src[est.labels_ == c]
    rest = unit(members[1:].mean(0, keepdims=True))
    expected = cos_dist(emb[i][None], np.concatenate([np.delete(est.centres_, c, 0), rest, unit(emb[domains == "target"])])).min()
    assert est.loo_scores(np.array([i]))[0] == pytest.approx(expected, abs=1e-5)
    # same bank, same centres
    assert np.array_equal(KMeansBackend(n_centres=4).fit(emb, domains).labels_, est.labels_)


@pytest.mark.parametrize("k, k_ref", [(1, 16), (3, 4), (2, 30)])  # 30: more than the bank has
def test_knn_rescaled_is_the_formula(k, k_ref):
    emb, domains = bank(n_source=18, n_target=4)
    queries = RNG.normal(size=(6, 8))
    n = len(emb)
    d_bank = cos_dist(emb, emb)
    np.fill_diagonal(d_bank, np.inf)
    kr = min(k_ref, n - 1)
    density = np.sort(d_bank, axis=1)[:, :kr].mean(axis=1)  # n_j
    expected = np.sort(cos_dist(queries, emb) / density, axis=1)[:, :k].mean(axis=1)
    est = KnnRescaledBackend(k=k, k_ref=k_ref).fit(emb, domains)
    np.testing.assert_allclose(est.score_samples(queries), expected, rtol=1e-4)
    # leave-one-out: clip i against the bank without it, every n_j recomputed without it
    for i in (0, 5, n - 1):
        rest = np.delete(emb, i, axis=0)
        d_rest = cos_dist(rest, rest)
        np.fill_diagonal(d_rest, np.inf)
        dens = np.sort(d_rest, axis=1)[:, : min(k_ref, n - 2)].mean(axis=1)
        want = np.sort(cos_dist(emb[i][None], rest)[0] / dens)[:k].mean()
        assert est.loo_scores(np.array([i]))[0] == pytest.approx(want, rel=1e-4)


def test_smote_points_lie_between_target_neighbours_and_reach_the_ratio():
    emb, domains = bank(n_source=50, n_target=4)
    target = unit(emb[domains == "target"])
    new, parents = smote(target, 6, 2, np.random.default_rng(0))
    assert new.shape == (6, 8)
    sims = target @ target.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :2]
    for p, (i, j) in zip(new, parents):
        assert j in nearest[i]
        # p is the normalised x_i + t (x_j - x_i), 0 <= t <= 1: a non-negative mix of x_i and x_j
        coef, *_ = np.linalg.lstsq(np.stack([target[i], target[j]], axis=1), p, rcond=None)
        np.testing.assert_allclose(np.stack([target[i], target[j]], axis=1) @ coef, p, atol=1e-5)
        assert (coef >= -1e-6).all()
        assert np.linalg.norm(p) == pytest.approx(1, abs=1e-5)
    # the knn back-end enlarges the target clips to smote_ratio x the source clips
    est = KnnBackend(k=1, domain_strategy="min", smote_ratio=0.2, smote_neighbours=2).fit(emb, domains)
    target_bank = next(b for b in est.banks_ if (domains[b[b < len(emb)]] == "target").all())
    assert len(target_bank) == round(0.2 * 50) == 10
    # leave-one-out skips the clip and the points made from it
    i = int(np.flatnonzero(domains == "target")[0])
    made = len(emb) + np.flatnonzero((est.parents_ == i).any(axis=1))
    keep = np.setdiff1d(target_bank, np.concatenate([[i], made]))
    want = min(cos_dist(emb[i][None], est.bank_[keep]).min(), cos_dist(emb[i][None], emb[domains == "source"]).min())
    assert est.loo_scores(np.array([i]))[0] == pytest.approx(want, abs=1e-5)


def meta(domains, sections=None, prefix="c"):
    n = len(domains)
    return pd.DataFrame(dict(filename=[f"{prefix}{i}.wav" for i in range(n)], machine="fan",
                             section=sections if sections is not None else ["00"] * n, domain=domains,
                             label="normal", attribute_string=""))


@pytest.mark.parametrize("backend", ["kmeans", "knn_rescaled"])
@pytest.mark.parametrize("bank_split", ["machine", "section"])
def test_every_backend_scores_a_machine_type(backend, bank_split):
    emb, domains = bank(n_source=30, n_target=6)
    sections = np.array(["00", "01"] * 18)
    test = RNG.normal(size=(8, 8)).astype(np.float32)
    settings = ScoreSettings(backend=backend, bank_split=bank_split, domain_strategy="min", k=2, kmeans_centres=4, k_ref=4)
    table, threshold, train_scores, k_used = score_machine(emb, meta(domains, sections), test,
                                                           meta(["source"] * 8, ["00", "01"] * 4, "t"), settings)
    assert np.isfinite(table["score"]).all() and np.isfinite(threshold) and len(train_scores) == len(emb)
    # by section: each test clip against its own section's bank only
    if bank_split == "section":
        for s in ("00", "01"):
            rows = sections == s
            est = (KMeansBackend(4) if backend == "kmeans" else KnnRescaledBackend(2, 4, "min")).fit(emb[rows], domains[rows])
            np.testing.assert_allclose(table["score"][table["section"] == s], est.score_samples(test[[i for i in range(8) if i % 2 == (s == "01")]]),
                                       rtol=1e-6)


def test_smote_applies_to_knn_only():
    with pytest.raises(ValueError, match="scoring.smote_ratio"):
        ScoreSettings(backend="kmeans", smote_ratio=0.2)
    with pytest.raises(ValueError, match="scoring.backend"):
        ScoreSettings(backend="lof")
