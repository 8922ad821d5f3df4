"""Each head and loss against its formula, computed by hand in NumPy on a tiny batch."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eat_asd.errors import TrainingError
from eat_asd.losses import (AdaCosHead, ArcMarginHead, SoftmaxHead, SubclusterAdaCosHead, mixup,
                            soft_cross_entropy)

RNG = np.random.default_rng(0)
EMB = RNG.normal(size=(4, 5)).astype(np.float32)
LABELS = np.array([0, 2, 1, 2])


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def np_cross_entropy(logits, targets):
    logits = logits - logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-(targets * log_p).sum(axis=1).mean())


def one_hot(labels, n):
    return np.eye(n, dtype=np.float32)[labels]


def test_softmax_head_and_soft_cross_entropy():
    head = SoftmaxHead(5, 3)
    w, b = head.linear.weight.detach().numpy(), head.linear.bias.detach().numpy()
    logits = head(torch.from_numpy(EMB)).detach().numpy()
    np.testing.assert_allclose(logits, EMB @ w.T + b, rtol=1e-5, atol=1e-6)
    soft = np.array([[0.3, 0.7, 0], [0, 0, 1], [0.5, 0.5, 0], [0, 0.1, 0.9]], np.float32)
    got = soft_cross_entropy(torch.from_numpy(logits), torch.from_numpy(soft))
    assert float(got) == pytest.approx(np_cross_entropy(logits, soft), rel=1e-5)
    # one-hot targets give the ordinary cross entropy
    hard = soft_cross_entropy(torch.from_numpy(logits), torch.from_numpy(one_hot(LABELS, 3)))
    assert float(hard) == pytest.approx(float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(LABELS))), rel=1e-6)


def test_arcface_logits_add_the_margin_to_the_true_angle_only():
    m, s = 0.3, 10.0
    head = ArcMarginHead(5, 3, margin=m, scale=s)
    cos = unit(EMB) @ unit(head.weight.detach().numpy()).T
    targets = one_hot(LABELS, 3)
    expected = s * np.where(targets > 0, np.cos(np.arccos(cos) + m), cos)
    got = head(torch.from_numpy(EMB), torch.from_numpy(targets)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # without targets (validation, inference): plain scaled cosines
    np.testing.assert_allclose(head(torch.from_numpy(EMB)).detach().numpy(), s * cos, rtol=1e-4, atol=1e-4)
    # under mixup each mixed class gets its weight's share of the margin
    soft = np.array([[0.25, 0.75, 0], [0, 0, 1], [0.6, 0.4, 0], [0, 0, 1]], np.float32)
    expected = s * np.where(soft > 0, np.cos(np.arccos(cos) + m * soft), cos)
    got = head(torch.from_numpy(EMB), torch.from_numpy(soft)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_adacos_uses_the_fixed_scale():
    head = AdaCosHead(5, 6)
    s = math.sqrt(2) * math.log(6 - 1)
    cos = unit(EMB) @ unit(head.weight.detach().numpy()).T
    logits = head(torch.from_numpy(EMB), torch.from_numpy(one_hot(LABELS, 6))).detach().numpy()
    np.testing.assert_allclose(logits, s * cos, rtol=1e-4, atol=1e-5)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(LABELS))
    assert float(loss) == pytest.approx(np_cross_entropy(s * cos, one_hot(LABELS, 6)), rel=1e-4)
    with pytest.raises(TrainingError, match="at least 3"):
        AdaCosHead(5, 2)


def test_subcluster_adacos_sums_the_probabilities_of_a_class_centres():
    n_classes, sub = 3, 4
    head = SubclusterAdaCosHead(5, n_classes, sub, trainable=True)
    s = math.sqrt(2) * math.log(n_classes * sub - 1)
    cos = unit(EMB) @ unit(head.centres.detach().numpy()).T  # (4, 12), class c owns columns c*sub .. c*sub+sub-1
    logits = head(torch.from_numpy(EMB)).detach().numpy()
    # class logit: log of the summed exponentials of its centres' scaled cosines
    expected = np.log(np.exp(s * cos).reshape(4, n_classes, sub).sum(axis=2))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    # so the loss is minus the log of the summed softmax probabilities of the true class's centres
    p = np.exp(s * cos) / np.exp(s * cos).sum(axis=1, keepdims=True)
    by_class = p.reshape(4, n_classes, sub).sum(axis=2)
    want = -np.mean(np.log(by_class[np.arange(4), LABELS]))
    got = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(LABELS))
    assert float(got) == pytest.approx(want, rel=1e-4)
    # with one centre per class the class logits are max = the only cosine, scaled
    one = SubclusterAdaCosHead(5, 4, 1, trainable=True)
    cos1 = unit(EMB) @ unit(one.centres.detach().numpy()).T
    np.testing.assert_allclose(one(torch.from_numpy(EMB)).detach().numpy(), math.sqrt(2) * math.log(3) * cos1, rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("trainable", [True, False])
def test_centres_train_or_stay_fixed(trainable):
    torch.manual_seed(0)
    head = SubclusterAdaCosHead(5, 3, 2, trainable=trainable)
    start = head.centres.detach().clone()
    emb = torch.from_numpy(EMB).requires_grad_(True)
    # the training loop's optimizer: AdamW over the parameters that require gradients
    params = [p for p in head.parameters() if p.requires_grad]
    if not trainable:
        assert params == []
        params = [emb]
    optimizer = torch.optim.AdamW(params, lr=0.1, weight_decay=0.01)
    loss = F.cross_entropy(head(emb), torch.from_numpy(LABELS))
    loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    if trainable:
        assert head.centres.grad is not None and head.centres.grad.abs().sum() > 0
    else:
        assert head.centres.grad is None
    optimizer.step()
    assert torch.equal(head.centres.detach(), start) != trainable


def test_mixup_mixes_inputs_and_targets():
    x = torch.from_numpy(RNG.normal(size=(4, 3, 2)).astype(np.float32))
    targets = torch.from_numpy(one_hot(LABELS, 3))
    perm = torch.tensor([2, 0, 3, 1])
    mx, mt = mixup(x, targets, 0.3, perm)
    xn, tn = x.numpy(), targets.numpy()
    np.testing.assert_allclose(mx.numpy(), 0.3 * xn + 0.7 * xn[[2, 0, 3, 1]], rtol=1e-6)
    np.testing.assert_allclose(mt.numpy(), 0.3 * tn + 0.7 * tn[[2, 0, 3, 1]], rtol=1e-6)
    np.testing.assert_allclose(mt.numpy().sum(axis=1), 1, rtol=1e-6)
