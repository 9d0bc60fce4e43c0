"""Cluster-quality metrics: I(Z;T), H(Z|T), the k selection of Cl-InfoNCE Fig. 4, and NMI and
clustering accuracy against labels."""
from clinfonce_plugin.metrics.clustering import clustering_accuracy, normalized_mutual_information
from clinfonce_plugin.metrics.information import (
    conditional_entropy,
    contingency,
    entropy,
    mutual_information,
)
from clinfonce_plugin.metrics.k_selection import (
    SelectionResult,
    choose_k,
    format_table,
    plot_selection,
    select_k,
)

__all__ = [
    "SelectionResult",
    "choose_k",
    "clustering_accuracy",
    "conditional_entropy",
    "contingency",
    "entropy",
    "format_table",
    "mutual_information",
    "normalized_mutual_information",
    "plot_selection",
    "select_k",
]
