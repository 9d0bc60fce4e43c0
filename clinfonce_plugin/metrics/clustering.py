"""Clustering quality against labels: normalised mutual information (NMI) and clustering
accuracy (ACC), the two scores of deep-clustering evaluations such as IDFD (Tao et al. 2021,
https://arxiv.org/abs/2106.00131) that Cl-InfoNCE compares with in its Table 4
(https://arxiv.org/abs/2202.06670, App. A.2).

- NMI = I(Z;T) / ((H(Z) + H(T)) / 2): the arithmetic-mean normalisation (scikit-learn's
  ``normalized_mutual_info_score`` default, which IDFD's evaluation calls). In [0, 1]; 1 when
  both labelings hold a single value (no information to share, nothing missed).
- ACC: the fraction of samples whose cluster is matched to their label by the one-to-one
  cluster -> label assignment that matches the most samples (Hungarian algorithm,
  ``scipy.optimize.linear_sum_assignment`` on the contingency table). With more clusters
  than labels (or fewer) the unmatched clusters (labels) count as wrong.

Plain numpy/scipy: no torch, no host.
"""
from scipy.optimize import linear_sum_assignment

from clinfonce_plugin.metrics.information import contingency, entropy, mutual_information

__all__ = ["normalized_mutual_information", "clustering_accuracy"]


def normalized_mutual_information(clusters, labels) -> float:
    """NMI of integer cluster ids against integer labels (any values), in [0, 1].

    Args:
        clusters: (N,) cluster id per sample.
        labels: (N,) label per sample.
    """
    # the log base cancels in the ratio
    mi = mutual_information(clusters, labels)
    mean_entropy = (entropy(clusters) + entropy(labels)) / 2
    if mean_entropy == 0.0:
        return 1.0  # both labelings constant: identical partitions
    return float(min(mi / mean_entropy, 1.0))  # rounding may leave a few ulps above 1


def clustering_accuracy(clusters, labels) -> float:
    """ACC in percent: samples whose cluster the best one-to-one cluster -> label matching
    maps to their label, over all samples.

    Args:
        clusters: (N,) cluster id per sample.
        labels: (N,) label per sample.
    """
    table = contingency(clusters, labels).toarray()  # (K, C): K clusters x C labels
    rows, cols = linear_sum_assignment(table, maximize=True)
    return 100.0 * float(table[rows, cols].sum()) / float(table.sum())
