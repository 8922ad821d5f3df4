"""Classifier heads of the auxiliary task and the loss they are trained with.

Every head maps clip embeddings to class logits; the training loss is the cross entropy of those
logits with the (one-hot, or mixup's soft) targets. `targets` given to a head is a (B, C) float
matrix whose rows sum to 1: the margin heads need it to know where the margin goes.
  softmax            linear layer, W x + b
  arcface            s cos(theta_y + m) for the true class, s cos(theta) for the others (Deng et al. 2019)
  adacos             s cos(theta) with the fixed AdaCos scale s = sqrt(2) ln(C - 1) (Zhang et al. 2019)
  subcluster_adacos  S centres per class, trainable or fixed; the class probability is the sum of
                     its centres' softmax probabilities, i.e. class logit = logsumexp over its centres
                     of s cos(theta), with s = sqrt(2) ln(C S - 1) over all C S centres (Wilkinghoff 2021)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import TrainingError

LOSSES = ("softmax", "arcface", "adacos", "subcluster_adacos")


def adacos_scale(n_centres: int) -> float:
    """AdaCos's fixed scale sqrt(2) ln(C - 1): it is 0 for 2 centres, so at least 3 are needed."""
    if n_centres < 3:
        raise TrainingError(f"the AdaCos scale sqrt(2) ln(C - 1) needs at least 3 classes or sub-cluster centres, got {n_centres} "
                            "(use a finer train.granularity, train.subclusters > 1, or another train.loss)")
    return math.sqrt(2) * math.log(n_centres - 1)


def _cosines(emb: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(F.normalize(emb), F.normalize(weight)).clamp(-1 + 1e-7, 1 - 1e-7)


class SoftmaxHead(nn.Module):
    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, emb: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(emb)


class ArcMarginHead(nn.Module):
    """Additive angular margin (ArcFace): logits s cos(theta_c + m y_c).

    y_c is the class's target weight: with one-hot targets the true class gets the full margin m and
    the others none (plain ArcFace); under mixup each of the two mixed classes gets the share of the
    margin its mixing weight gives it (lambda m and (1 - lambda) m)."""

    def __init__(self, dim: int, n_classes: int, margin: float, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin, self.scale = margin, scale

    def forward(self, emb: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        cos = _cosines(emb, self.weight)
        if targets is None:
            return self.scale * cos
        theta = torch.acos(cos)
        return self.scale * torch.where(targets > 0, torch.cos(theta + self.margin * targets), cos)


class AdaCosHead(nn.Module):
    """Cosine logits with AdaCos's fixed scale and no margin (so mixup's soft targets apply as they are)."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = adacos_scale(n_classes)

    def forward(self, emb: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return self.scale * _cosines(emb, self.weight)


class SubclusterAdaCosHead(nn.Module):
    """Sub-cluster AdaCos: `subclusters` centres per class (rows c S ... c S + S - 1 of `centres`),
    trainable or fixed at their random start. No margin, so mixup's soft targets apply as they are."""

    def __init__(self, dim: int, n_classes: int, subclusters: int, trainable: bool):
        super().__init__()
        self.n_classes, self.subclusters = n_classes, subclusters
        centres = torch.empty(n_classes * subclusters, dim)
        nn.init.xavier_uniform_(centres)
        self.centres = nn.Parameter(centres, requires_grad=trainable)
        self.scale = adacos_scale(n_classes * subclusters)

    def forward(self, emb: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.scale * _cosines(emb, self.centres)
        return torch.logsumexp(logits.view(len(emb), self.n_classes, self.subclusters), dim=2)


def make_head(settings, dim: int, n_classes: int) -> nn.Module:
    """The head train.loss names, with its train.* settings."""
    if settings.loss == "arcface":
        return ArcMarginHead(dim, n_classes, settings.arcface_margin, settings.arcface_scale)
    if settings.loss == "adacos":
        return AdaCosHead(dim, n_classes)
    if settings.loss == "subcluster_adacos":
        return SubclusterAdaCosHead(dim, n_classes, settings.subclusters, settings.trainable_centres)
    return SoftmaxHead(dim, n_classes)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy against target distributions (rows of `targets` sum to 1)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def mixup(x: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018): lam x + (1 - lam) x[perm] on the inputs and on the target rows."""
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]
