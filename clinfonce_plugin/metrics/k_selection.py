"""Choice of the number k of attributes (or the hierarchy level l) that define the clusters.

Implements the k-selection of Cl-InfoNCE (https://arxiv.org/abs/2202.06670), Sec. 4 and
Fig. 4: for attribute clusters Z_k built from the top-k attributes, I(Z_k;T) with the
downstream labels T rises with k while H(Z_k|T) also rises (finer clusters split each
class). Both are min-max normalised over the range of k and the chosen k is where the
normalised I(Z;T) meets the normalised -H(Z|T). The same sweep over hierarchy levels l
gives Cl-InfoNCE Fig. 6 (I(Z;T) and H(Z|T) against l); the swept integer is called
``parameter`` ("k" or "level") in the table and the plot.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from clinfonce_plugin.metrics.information import conditional_entropy, mutual_information

__all__ = ["SelectionResult", "choose_k", "select_k", "format_table", "plot_selection"]

AXIS_LABELS = {"k": "k (number of attributes)", "level": "level l of the hierarchy (root = 1)"}


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi == lo:
        # a flat curve carries no preference: put it in the middle of [0, 1]
        return np.full(x.shape, 0.5)
    return (x - lo) / (hi - lo)


def _as_curve(x, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like ks, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _as_ks(ks) -> np.ndarray:
    arr = np.asarray(ks)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"ks must be a non-empty 1-D sequence, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"ks must be integers, got dtype {arr.dtype}: {arr.tolist()}")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"ks must be distinct, got {arr.tolist()}")
    return arr.astype(np.int64)


def choose_k(ks: Sequence[int], mi: Sequence[float], cond_ent: Sequence[float]
             ) -> Tuple[int, Dict[str, object]]:
    """Picks k where normalised I(Z;T) and normalised -H(Z|T) cross (Cl-InfoNCE Fig. 4).

    Rules, in this order:

    1. Normalisation over the given range: ``a = norm(mi)``, ``b = norm(-cond_ent)`` with
       ``norm(x) = (x - min x) / (max x - min x)``; a constant curve (max == min, which
       includes a single k) is 0.5 everywhere. So ``b = 1 - norm(cond_ent)`` unless flat.
    2. The ks are scanned in increasing order (the inputs may come in any order; they
       are sorted, must be distinct integers). Let ``d = a - b``.
    3. Crossing: the chosen k is the first scanned k_j with ``d_j == 0`` exactly, or with
       ``d_{j-1} < 0 <= d_j`` (a sign change from negative to non-negative; the k at or
       after the change is taken). Only the earliest such k counts. A change from
       non-negative to negative is not a crossing.
    4. No crossing: the k minimising ``|d|``; ties go to the smaller k.

    Args:
        ks: (K,) distinct integers.
        mi: (K,) I(Z_k;T) per k.
        cond_ent: (K,) H(Z_k|T) per k.

    Returns:
        index: position of the chosen k in the *given* ``ks``.
        details: ``{"mi_norm": (K,), "neg_cond_ent_norm": (K,), "diff": (K,)`` (all in the
        given order) ``, "rule": "crossing" | "closest"}``.
    """
    ks_arr = _as_ks(ks)
    n = ks_arr.size
    mi_arr = _as_curve(mi, "mi", n)
    h_arr = _as_curve(cond_ent, "cond_ent", n)
    a = _normalise(mi_arr)
    b = _normalise(-h_arr)
    d = a - b

    order = np.argsort(ks_arr, kind="stable")
    d_sorted = d[order]
    chosen = None
    rule = "closest"
    for j in range(n):
        if d_sorted[j] == 0 or (j > 0 and d_sorted[j - 1] < 0 <= d_sorted[j]):
            chosen, rule = j, "crossing"
            break
    if chosen is None:
        # argmin returns the first minimum, i.e. the smallest k among ties
        chosen = int(np.argmin(np.abs(d_sorted)))
    index = int(order[chosen])
    details = {"mi_norm": a, "neg_cond_ent_norm": b, "diff": d, "rule": rule}
    return index, details


@dataclass
class SelectionResult:
    """Table of the k sweep, one entry per k in increasing k.

    Attributes:
        ks: (K,) the swept k.
        num_clusters: (K,) number of distinct cluster ids at each k.
        mi: (K,) I(Z;T) in bits.
        cond_ent: (K,) H(Z|T) in bits.
        mi_norm: (K,) min-max normalised I(Z;T).
        neg_cond_ent_norm: (K,) min-max normalised -H(Z|T).
        chosen_index: row of the chosen k.
        rule: "crossing" or "closest" (see :func:`choose_k`).
    """

    ks: np.ndarray
    num_clusters: np.ndarray
    mi: np.ndarray
    cond_ent: np.ndarray
    mi_norm: np.ndarray
    neg_cond_ent_norm: np.ndarray
    chosen_index: int
    rule: str
    parameter: str = "k"

    @property
    def chosen_k(self) -> int:
        return int(self.ks[self.chosen_index])

    def rows(self) -> List[Dict[str, object]]:
        """One dict per k: k, num_clusters, I, H(Z|T), I_norm, negH_norm, chosen."""
        return [
            {
                "k": int(self.ks[i]),
                "num_clusters": int(self.num_clusters[i]),
                "I": float(self.mi[i]),
                "H(Z|T)": float(self.cond_ent[i]),
                "I_norm": float(self.mi_norm[i]),
                "negH_norm": float(self.neg_cond_ent_norm[i]),
                "chosen": i == self.chosen_index,
            }
            for i in range(len(self.ks))
        ]


def select_k(cluster_fn: Callable[[int], np.ndarray], labels, ks: Sequence[int],
             ignore_label: int = -1, parameter: str = "k") -> SelectionResult:
    """Sweeps k, measures I(Z_k;T) and H(Z_k|T) in bits and applies :func:`choose_k`.

    Args:
        cluster_fn: k -> (N,) integer cluster ids. For attribute clusters wrap the
            provider helper, e.g. ``lambda k: attribute_cluster_ids(attrs, k)[0]``.
        labels: (N,) integer downstream labels T.
        ks: the k to try (distinct integers, any order; the result is sorted by k).
        ignore_label: samples with this label (unknown target) are left out of I and H.
        parameter: what the swept integers are ("k", "level"), for the table and plot.

    Returns:
        :class:`SelectionResult`.
    """
    t = np.asarray(labels)
    if t.ndim != 1 or t.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got {t.dtype} {t.shape}")
    keep = t != ignore_label
    if not np.any(keep):
        raise ValueError(f"every label equals ignore_label={ignore_label}: nothing to measure")
    ks_sorted = np.sort(_as_ks(ks))
    num_clusters, mis, hs = [], [], []
    for k in ks_sorted:
        out = cluster_fn(int(k))
        if isinstance(out, tuple):
            raise ValueError(
                f"cluster_fn({k}) returned a tuple; it must return the (N,) ids only "
                "(wrap a helper returning (ids, names) as lambda k: f(k)[0])"
            )
        z = np.asarray(out)
        if z.shape != t.shape:
            raise ValueError(
                f"cluster_fn({k}) returned shape {z.shape}, expected {t.shape} like labels"
            )
        z = z[keep]
        num_clusters.append(int(np.unique(z).size))
        mis.append(mutual_information(z, t[keep]))
        hs.append(conditional_entropy(z, t[keep]))
    index, details = choose_k(ks_sorted, mis, hs)
    return SelectionResult(
        ks=ks_sorted,
        num_clusters=np.asarray(num_clusters, dtype=np.int64),
        mi=np.asarray(mis),
        cond_ent=np.asarray(hs),
        mi_norm=details["mi_norm"],
        neg_cond_ent_norm=details["neg_cond_ent_norm"],
        chosen_index=index,
        rule=str(details["rule"]),
        parameter=parameter,
    )


def format_table(result: SelectionResult) -> str:
    """Markdown table of a sweep; the chosen row is bold and marked ``<- chosen``."""
    lines = [
        f"| {result.parameter} | clusters | I(Z;T) [bits] | H(Z\\|T) [bits] | I norm | -H norm | |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in result.rows():
        cells = [
            str(row["k"]),
            str(row["num_clusters"]),
            f"{row['I']:.4f}",
            f"{row['H(Z|T)']:.4f}",
            f"{row['I_norm']:.3f}",
            f"{row['negH_norm']:.3f}",
        ]
        if row["chosen"]:
            cells = [f"**{c}**" for c in cells] + ["<- chosen"]
        else:
            cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_selection(result: SelectionResult, path: str) -> str:
    """Draws Fig. 4 of Cl-InfoNCE for a sweep and writes it as a PNG.

    Two curves over k or l (normalised I(Z;T) and normalised -H(Z|T)) and a vertical line at
    the chosen k. Needs matplotlib (``pip install clinfonce-plugin[plots]``); uses the Agg
    canvas directly, so the global pyplot backend is left untouched.

    Returns:
        path.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "plot_selection needs matplotlib: pip install clinfonce-plugin[plots]"
        ) from err
    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result.ks, result.mi_norm, marker="o", label="I(Z;T) (normalised)")
    ax.plot(result.ks, result.neg_cond_ent_norm, marker="s", label="-H(Z|T) (normalised)")
    ax.axvline(result.chosen_k, color="gray", linestyle="--",
               label=f"chosen {result.parameter} = {result.chosen_k}")
    ax.set_xlabel(AXIS_LABELS.get(result.parameter, result.parameter))
    ax.set_ylabel("normalised value")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
