"""Weighted k-nearest-neighbour classification of frozen features: the kNN monitor of
InstDisc (Wu et al. 2018, https://arxiv.org/abs/1805.01978) as solo-learn evaluates it.

For a test feature, the k most similar training features vote for their labels:

- ``cosine``: features are L2-normalised, similarity s = <a, b>, a vote weighs
  exp(s / temperature);
- ``euclidean``: d = ||a - b||, the k nearest vote with weight 1 / (d + 1e-5), as solo-learn's
  WeightedKNNClassifier (the temperature is not used).

A class's score is the sum of its votes. Top-1: the highest-scoring class is the label.
Top-5: the label is among the (at most) five highest-scoring classes that received a vote
(a class no neighbour voted for is never a prediction).

Ties, so that a result is reproducible: among training features equally similar to the test
feature the one with the lower index is taken first; among classes with equal scores the
lower class id ranks first.

Plain torch (no host, no Lightning). The test set is processed in chunks so that one chunk's
test x train similarity matrix holds at most ``max_matrix_elements`` elements.
"""
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

DISTANCES = ("cosine", "euclidean")
EUCLIDEAN_EPSILON = 1e-5  # solo-learn's: keeps the weight of a duplicate finite


def _check_labels(y: torch.Tensor, num_classes: int, what: str) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{what} labels must lie in [0, {num_classes}); got min {int(y.min())}, "
                         f"max {int(y.max())} (-1 marks an unknown label, which kNN cannot use)")


@torch.no_grad()
def weighted_knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                          test_y: torch.Tensor, ks: Sequence[int], distance: str,
                          temperature: float, num_classes: int,
                          max_matrix_elements: int) -> Dict[int, Tuple[float, float]]:
    """{k: (top-1 %, top-5 %)} of the weighted kNN classifier for every k in ``ks``
    (each 1 <= k <= number of training samples)."""
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}. Choose from {list(DISTANCES)}")
    n_train = train_x.size(0)
    if n_train == 0 or test_x.size(0) == 0:
        raise ValueError("kNN needs at least one training and one test sample")
    bad = [k for k in ks if not 1 <= int(k) <= n_train]
    if bad:
        raise ValueError(f"k must lie in [1, {n_train}] (the number of training samples), "
                         f"got {bad}")
    _check_labels(train_y, num_classes, "training")
    _check_labels(test_y, num_classes, "test")
    train_x, test_x = train_x.float(), test_x.float()
    if distance == "cosine":
        train_x, test_x = F.normalize(train_x, dim=1), F.normalize(test_x, dim=1)
    # labels live with the features (the online kNN runs on the accelerator)
    train_y, test_y = train_y.long().to(train_x.device), test_y.long().to(test_x.device)
    k_max = max(int(k) for k in ks)
    top = min(5, num_classes)
    hits1 = {int(k): 0 for k in ks}
    hits5 = {int(k): 0 for k in ks}
    chunk = max(1, int(max_matrix_elements) // n_train)
    for start in range(0, test_x.size(0), chunk):
        a, y = test_x[start:start + chunk], test_y[start:start + chunk]
        if distance == "cosine":
            sim = a @ train_x.T
            # stable sort: equally similar training samples keep index order
            sim, idx = torch.sort(sim, dim=1, descending=True, stable=True)
            sim, idx = sim[:, :k_max], idx[:, :k_max]
            # exp((s - s_max) / T): the same ranking as exp(s / T) (a per-row factor), without
            # overflow for a small temperature
            weight = torch.exp((sim - sim[:, :1]) / temperature)
        else:
            dist, idx = torch.sort(torch.cdist(a, train_x), dim=1, stable=True)
            dist, idx = dist[:, :k_max], idx[:, :k_max]
            weight = 1.0 / (dist + EUCLIDEAN_EPSILON)
        labels = train_y[idx]
        for k in hits1:
            scores = torch.zeros(a.size(0), num_classes, device=a.device).scatter_add_(
                1, labels[:, :k], weight[:, :k])
            votes = torch.zeros(a.size(0), num_classes, device=a.device).scatter_add_(
                1, labels[:, :k], torch.ones_like(weight[:, :k]))
            scores[votes == 0] = -1.0  # below every voted class (weights are >= 0)
            ranked = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top]
            voted = torch.gather(votes, 1, ranked) > 0
            correct = (ranked == y[:, None]) & voted
            hits1[k] += int(correct[:, 0].sum())
            hits5[k] += int(correct.any(1).sum())
    n = test_x.size(0)
    return {k: (100.0 * hits1[k] / n, 100.0 * hits5[k] / n) for k in hits1}
