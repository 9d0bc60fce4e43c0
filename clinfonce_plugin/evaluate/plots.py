"""PNG pictures with matplotlib (the ``plots`` extra): figures made without pyplot's global
state (no display needed), written atomically, and never over a file that exists unless
asked, in which case the old file is renamed aside, not deleted."""
import os
from typing import Iterable, List, Optional, Sequence

import numpy as np

from ..errors import OutputExists
from ..utils.atomic import atomic_path
from ..utils.extras import require
from ..run.rundir import aside_name

# at most this many distinct values get a legend (and a qualitative palette)
LEGEND_MAX = 20


def new_figure(width: float, height: float, use: str):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches (MissingPackage, exit 2,
    without matplotlib; ``use`` says what needs it)."""
    require("matplotlib", "matplotlib", "plots", use)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def check_outputs(paths: Iterable[str], overwrite: bool) -> None:
    """OutputExists naming every path that exists, unless ``overwrite`` (then ``save_png``
    and ``save_text`` set the old file aside)."""
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        raise OutputExists(f"{', '.join(existing)} exist(s): choose another name= or "
                           f"output_dir=, or set overwrite=true (the old file is renamed to "
                           f"<file>.replaced-<time>, never deleted)")


def _set_aside(path: str, keep_old: bool) -> Optional[str]:
    """Where an existing ``path`` was renamed to when ``keep_old`` (else None: it is
    replaced); called after the new file is written, before it is renamed into place."""
    if not (keep_old and os.path.lexists(path)):
        return None
    old = aside_name(path)
    os.replace(path, old)
    return old


def save_png(fig, path: str, dpi: int = 150, keep_old: bool = True) -> Optional[str]:
    """Writes ``fig`` as PNG to ``path`` (a temporary file renamed into place); returns where
    a file that was at ``path`` went, or None. ``keep_old=False`` replaces it: for a file
    the caller itself regenerates (a benchmark's chart beside its JSON)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
        old = _set_aside(path, keep_old)
    return old


def save_text(text: str, path: str) -> Optional[str]:
    """``save_png`` for a text file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        old = _set_aside(path, keep_old=True)
    return old


def palette(count: int) -> np.ndarray:
    """(count, 4) RGBA colours: matplotlib's qualitative tab10 / tab20 up to 20 values, else
    evenly spaced hues of ``turbo`` in a fixed shuffled order (neighbouring ids apart)."""
    from matplotlib import colormaps

    if count <= 10:
        return colormaps["tab10"](np.arange(count))
    if count <= LEGEND_MAX:
        return colormaps["tab20"](np.arange(count))
    colours = colormaps["turbo"](np.linspace(0.0, 1.0, count))
    return colours[np.random.default_rng(0).permutation(count)]


def scatter_by(ax, xy: np.ndarray, values: np.ndarray, names: Sequence[str],
               title: str) -> List:
    """Scatter of the (N, 2) points ``xy`` on ``ax``, one colour per distinct value of
    ``values`` (N,), named ``names[i]`` for the i-th distinct value in sorted order; a legend
    when there are at most ``LEGEND_MAX`` values. Returns the collections, one per value."""
    distinct = np.unique(values)
    colours = palette(len(distinct))
    size = float(np.clip(4000.0 / max(len(xy), 1), 2.0, 20.0))
    collections = []
    for i, value in enumerate(distinct):
        mask = values == value
        collections.append(ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=colours[i],
                                      label=names[i], linewidths=0))
    if len(distinct) <= LEGEND_MAX:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small",
                  markerscale=max(1.0, 20.0 / size) ** 0.5, frameon=False)
    else:
        title += f"\n({len(distinct)} colours, no legend)"
    ax.set_title(title, fontsize="medium")
    ax.set_xticks([])
    ax.set_yticks([])
    return collections
