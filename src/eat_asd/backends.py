"""Scoring back-ends: estimators fitted on one memory bank (its normal training embeddings and their
domains) that give each embedding a cosine-distance anomaly score (higher = more anomalous).

  knn           mean distance to the k nearest bank clips; with domain_strategy min, the minimum over
                a source and a target bank; smote_ratio > 0 first enlarges the target clips by SMOTE
  kmeans        minimum distance to k-means centres of the source clips plus every target clip
                (Wilkinghoff, ICASSP 2023)
  knn_rescaled  mean of the k smallest d(x, b_j) / n_j, n_j = b_j's mean distance to its k_ref nearest
                other bank clips (Wilkinghoff, ICASSP 2025, "Keeping the balance")

Each has fit(bank, domains), score_samples(x) and loo_scores(positions): the scores of bank clips,
each computed as if it were not in the bank (the training scores the decision threshold is fitted on).
What "not in the bank" means: knn drops the clip and every SMOTE point made from it; kmeans drops a
target clip, and for a source clip recomputes the centre of its cluster without it (the other
centres and the partition stay, so a clip alone in its cluster loses its centre, and with a centre
per source clip this is exactly kNN with k = 1); knn_rescaled drops the clip and recomputes every
n_j without it.
"""

from __future__ import annotations

import numpy as np
import torch

from .banks import memory_banks, usable_k

SEED = 0  # k-means and SMOTE draws: the same bank gives the same scores


def l2_normalise(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _unit(x: np.ndarray) -> np.ndarray:
    return l2_normalise(x).numpy()


def knn_distance(queries, bank, k: int = 1, exclude_self: bool = False, query_chunk: int = 1024,
                 bank_chunk: int = 16384, device=None) -> np.ndarray:
    """Mean cosine distance of each query to its k nearest bank embeddings, exactly.

    Queries and bank are walked in chunks with a running top-k, so memory stays at
    query_chunk x bank_chunk similarities whatever the bank size. With
    exclude_self, queries are the bank itself and each row skips its own entry
    (leave-one-out).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    q, b = l2_normalise(queries).to(device), l2_normalise(bank).to(device)
    n_bank = b.shape[0] - (1 if exclude_self else 0)
    if n_bank < 1:
        raise ValueError("memory bank is empty" + (" after leaving one out" if exclude_self else ""))
    if k > n_bank:
        raise ValueError(f"k = {k} exceeds the memory bank size {n_bank}")
    out = torch.empty(q.shape[0])
    for qs in range(0, q.shape[0], query_chunk):
        qc = q[qs : qs + query_chunk]
        best = torch.full((qc.shape[0], k), -float("inf"), device=device)
        for bs in range(0, b.shape[0], bank_chunk):
            sims = qc @ b[bs : bs + bank_chunk].T
            if exclude_self:
                rows = torch.arange(qc.shape[0], device=device)
                cols = rows + qs - bs
                keep = (cols >= 0) & (cols < sims.shape[1])
                sims[rows[keep], cols[keep]] = -float("inf")
            # top-k of the chunk first, then merge: concatenating the whole chunk would copy it
            chunk_best = torch.topk(sims, min(k, sims.shape[1]), dim=1).values
            best = torch.topk(torch.cat([best, chunk_best], dim=1), k, dim=1).values
        out[qs : qs + qc.shape[0]] = (1 - best).mean(dim=1).cpu()
    return out.numpy()


def loo_knn(emb: np.ndarray, bank_idx: np.ndarray, query_idx: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """kNN distances of the clips query_idx to the bank bank_idx (positions into emb), each query that
    is in the bank skipping itself; and the fewest neighbours any score used."""
    out = np.empty(len(query_idx))
    inside = np.isin(query_idx, bank_idx)
    k_used = k
    if inside.any():
        sub = bank_idx[np.isin(bank_idx, query_idx[inside])]
        # queries inside the bank: order the bank so those come first and exclude the diagonal
        rest = bank_idx[~np.isin(bank_idx, sub)]
        order = np.concatenate([sub, rest])
        kk = k_used = usable_k(k, len(order), leave_one_out=True)
        if kk < 1:
            out[inside] = np.inf  # a bank of one clip cannot score itself
        else:
            d = knn_distance(emb[sub], emb[order], kk, exclude_self=True)
            pos = {c: i for i, c in enumerate(sub)}
            out[inside] = d[[pos[c] for c in query_idx[inside]]]
    if (~inside).any():
        kk = usable_k(k, len(bank_idx))
        out[~inside] = knn_distance(emb[query_idx[~inside]], emb[bank_idx], kk)
        k_used = min(k_used, kk)
    return out, k_used


def domain_banks(domains, domain_strategy: str) -> list[np.ndarray]:
    """The banks (positions) one group's clips form: one, or one per domain present (memory_banks' rule)."""
    banks = memory_banks(["0"] * len(domains), list(domains), "all", domain_strategy)["all"]
    return [np.asarray(b, dtype=int) for b in banks]


def smote(points: np.ndarray, n_new: int, neighbours: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE (Chawla et al. 2002) on unit vectors: each new point starts at a random clip i, moves a
    uniform fraction of the way to one of i's `neighbours` nearest other clips j (cosine), and is
    L2-normalised again. Returns the new points and their (i, j) parents."""
    n = len(points)
    neighbours = min(neighbours, n - 1)
    if n_new <= 0 or neighbours < 1:
        return np.zeros((0, points.shape[1]), np.float32), np.zeros((0, 2), int)
    sims = points @ points.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :neighbours]
    base = rng.integers(0, n, n_new)
    other = nearest[base, rng.integers(0, neighbours, n_new)]
    gap = rng.random(n_new)[:, None]
    new = points[base] + gap * (points[other] - points[base])
    return _unit(new), np.stack([base, other], axis=1)


class KnnBackend:
    """kNN cosine distance, min over the domain banks; SMOTE-enlarged target clips if smote_ratio > 0."""

    def __init__(self, k: int = 1, domain_strategy: str = "pooled", smote_ratio: float = 0.0, smote_neighbours: int = 2):
        self.k, self.domain_strategy = k, domain_strategy
        self.smote_ratio, self.smote_neighbours = smote_ratio, smote_neighbours

    def fit(self, bank: np.ndarray, domains) -> "KnnBackend":
        domains = np.asarray(domains)
        self.bank_ = np.asarray(bank, dtype=np.float32)
        self.banks_ = domain_banks(domains, self.domain_strategy)
        self.parents_ = np.zeros((0, 2), int)  # of the SMOTE points, rows len(bank) on in bank_
        if self.smote_ratio > 0:
            target = np.flatnonzero(domains == "target")
            n_new = int(round(self.smote_ratio * int((domains != "target").sum()))) - len(target)
            new, parents = smote(_unit(self.bank_[target]), n_new, self.smote_neighbours, np.random.default_rng(SEED))
            if len(new):
                rows = len(self.bank_) + np.arange(len(new))
                self.bank_ = np.concatenate([self.bank_, new])
                self.parents_ = target[parents]
                holder = next(i for i, b in enumerate(self.banks_) if np.isin(target, b).all())
                self.banks_[holder] = np.concatenate([self.banks_[holder], rows])
        self.k_used_ = self.k
        return self

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        per_bank = []
        for b in self.banks_:
            k = usable_k(self.k, len(b))
            per_bank.append(knn_distance(x, self.bank_[b], k))
            self.k_used_ = min(self.k_used_, k)
        return np.min(per_bank, axis=0)

    def loo_scores(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions)
        per_bank = []
        for b in self.banks_:
            if len(self.parents_) == 0:
                d, k = loo_knn(self.bank_, b, positions, self.k)
            else:
                d, k = self._loo_with_synthetic(b, positions)
            per_bank.append(d)
            self.k_used_ = min(self.k_used_, k)
        return np.min(per_bank, axis=0)

    def _loo_with_synthetic(self, b: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, int]:
        """Each query skips itself and the SMOTE points made from it."""
        n_real = len(self.bank_) - len(self.parents_)
        made_from = np.zeros((len(positions), len(b)), bool)
        synthetic = b >= n_real
        for r, p in enumerate(positions):
            made_from[r] = b == p
            made_from[r, synthetic] = (self.parents_[b[synthetic] - n_real] == p).any(axis=1)
        k = min(self.k, len(b) - int(made_from.sum(axis=1).max()))
        if k < 1:
            return np.full(len(positions), np.inf), 0
        sims = _unit(self.bank_[positions]) @ _unit(self.bank_[b]).T
        sims[made_from] = -np.inf
        best = -np.sort(-sims, axis=1)[:, :k]
        return (1 - best).mean(axis=1), k


class KMeansBackend:
    """Minimum cosine distance to `n_centres` k-means centres of the source clips (L2-normalised
    before and after) and to every target clip. With at least as many centres as source clips,
    every source clip is its own centre."""

    def __init__(self, n_centres: int = 16):
        self.n_centres = n_centres

    def fit(self, bank: np.ndarray, domains) -> "KMeansBackend":
        domains = np.asarray(domains)
        unit = _unit(bank)
        self.unit_ = unit
        self.source_, self.target_ = np.flatnonzero(domains != "target"), np.flatnonzero(domains == "target")
        src = unit[self.source_]
        self.k_used_ = None  # scoring.k does not apply
        # a centre per source clip: the clips themselves, i.e. kNN with k = 1 over a source and a target bank
        # (delegated, so that the two give the very same numbers)
        self.every_clip_ = len(src) <= self.n_centres
        if self.every_clip_:
            self.knn_ = KnnBackend(1, "min").fit(bank, domains)
            self.centres_, self.labels_ = src, np.arange(len(src))
            return self
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=self.n_centres, n_init=10, random_state=SEED).fit_predict(src.astype(np.float64))
        n = labels.max() + 1 if len(labels) else 0
        # centres as the (re-normalised) means of their members, so leaving a member out is exact
        self.sums_ = np.zeros((n, unit.shape[1]), np.float64)
        np.add.at(self.sums_, labels, src.astype(np.float64))
        self.counts_ = np.bincount(labels, minlength=n)
        self.labels_ = labels
        self.centres_ = _unit(self.sums_)
        return self

    def _set(self) -> np.ndarray:
        return np.concatenate([self.centres_, self.unit_[self.target_]])

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        if self.every_clip_:
            return self.knn_.score_samples(x)
        return 1 - (_unit(x) @ self._set().T).max(axis=1)

    def loo_scores(self, positions: np.ndarray) -> np.ndarray:
        if self.every_clip_:
            return self.knn_.loo_scores(positions)
        positions = np.asarray(positions)
        x = self.unit_[positions]
        sims = x @ self._set().T
        n_c = len(self.centres_)
        for r, p in enumerate(positions):
            if p in self.target_:
                sims[r, n_c + int(np.flatnonzero(self.target_ == p)[0])] = -np.inf
            else:
                c = self.labels_[int(np.flatnonzero(self.source_ == p)[0])]
                rest = self.sums_[c] - self.unit_[p]
                sims[r, c] = -np.inf if self.counts_[c] == 1 else float(x[r] @ (rest / max(np.linalg.norm(rest), 1e-12)))
        return 1 - sims.max(axis=1)


class KnnRescaledBackend:
    """kNN with every bank clip's distances divided by its local density n_j (its mean distance to its
    k_ref nearest other bank clips): the mean of the k smallest d(x, b_j) / n_j, min over the domain banks."""

    def __init__(self, k: int = 1, k_ref: int = 16, domain_strategy: str = "pooled"):
        self.k, self.k_ref, self.domain_strategy = k, k_ref, domain_strategy

    def fit(self, bank: np.ndarray, domains) -> "KnnRescaledBackend":
        self.unit_ = _unit(bank)
        self.banks_ = domain_banks(np.asarray(domains), self.domain_strategy)
        self.k_used_ = self.k
        return self

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        return np.min([self._score_bank(b, x) for b in self.banks_], axis=0)

    def _density(self, b: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Each bank clip's `width` nearest other bank clips: (distances ascending, their positions in b).
        Walked in row chunks, so memory stays at chunk x bank distances."""
        u = self.unit_[b]
        dist, order = np.empty((len(b), width), np.float32), np.empty((len(b), width), int)
        for s in range(0, len(b), 1024):
            d = 1 - u[s : s + 1024] @ u.T
            d[np.arange(len(d)), s + np.arange(len(d))] = np.inf  # not its own neighbour
            part = np.argpartition(d, width - 1, axis=1)[:, :width] if width < len(b) else np.argsort(d, axis=1)[:, :width]
            part_d = np.take_along_axis(d, part, axis=1)
            o = np.argsort(part_d, axis=1, kind="stable")
            dist[s : s + len(d)], order[s : s + len(d)] = np.take_along_axis(part_d, o, axis=1), np.take_along_axis(part, o, axis=1)
        return dist, order

    def _score_bank(self, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        kr = min(self.k_ref, len(b) - 1)
        n = self._density(b, kr)[0].mean(axis=1) if kr >= 1 else np.ones(len(b))
        k = usable_k(self.k, len(b))
        self.k_used_ = min(self.k_used_, k)
        ratio = (1 - _unit(x) @ self.unit_[b].T) / np.maximum(n, 1e-6)
        return np.sort(ratio, axis=1)[:, :k].mean(axis=1)

    def loo_scores(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions)
        per_bank = []
        for b in self.banks_:
            inside = np.isin(positions, b)
            out = np.empty(len(positions))
            if (~inside).any():
                out[~inside] = self._score_bank(b, self.unit_[positions[~inside]])
            if inside.any():
                out[inside] = self._loo_inside(b, positions[inside])
            per_bank.append(out)
        return np.min(per_bank, axis=0)

    def _loo_inside(self, b: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Each query p (in bank b) against b without p, every n_j recomputed without p: j's kr nearest
        without p are its first kr if p is not among them, else its first kr + 1 less p."""
        if len(b) < 2:
            return np.full(len(queries), np.inf)
        k = usable_k(self.k, len(b), leave_one_out=True)
        self.k_used_ = min(self.k_used_, k)
        if len(b) == 2:  # the one clip left has no neighbour to rescale by
            u = self.unit_[b]
            return np.full(len(queries), float(1 - u[0] @ u[1]))
        kr = min(self.k_ref, len(b) - 2)  # neighbours left once p is out
        dist, order = self._density(b, kr + 1)
        first, one_more = dist[:, :kr].sum(axis=1), dist.sum(axis=1)
        local = {int(c): i for i, c in enumerate(b)}
        u = self.unit_[b]
        out = np.empty(len(queries))
        for r, p in enumerate(queries):
            i = local[int(p)]
            d_i = 1 - u @ u[i]
            near = (order[:, :kr] == i).any(axis=1)
            n = np.where(near, one_more - d_i, first) / kr
            ratio = d_i / np.maximum(n, 1e-6)
            ratio[i] = np.inf
            out[r] = np.sort(ratio)[:k].mean()
        return out


def make_backend(settings):
    """The back-end scoring.backend names, with its scoring.* settings."""
    if settings.backend == "kmeans":
        return KMeansBackend(settings.kmeans_centres)
    if settings.backend == "knn_rescaled":
        return KnnRescaledBackend(settings.k, settings.k_ref, settings.domain_strategy)
    return KnnBackend(settings.k, settings.domain_strategy, settings.smote_ratio, settings.smote_neighbours)
