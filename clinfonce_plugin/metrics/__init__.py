"""Cluster-quality metrics: I(Z;T), H(Z|T) and the k selection of Cl-InfoNCE Fig. 4."""
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
    "conditional_entropy",
    "contingency",
    "entropy",
    "format_table",
    "mutual_information",
    "plot_selection",
    "select_k",
]
