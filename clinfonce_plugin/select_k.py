"""Choose the number k of attributes that define the clusters, without training anything.

Implements the k selection of Cl-InfoNCE (https://arxiv.org/abs/2202.06670, Fig. 4) on the
training split of a pretrain config: for attribute clusters built from the top-k
highest-entropy attributes, I(Z;T) and H(Z|T) (bits) against the training labels are
computed for every k, min-max normalised, and the k where the normalised I(Z;T) meets the
normalised -H(Z|T) is chosen (rules in ``metrics.k_selection.choose_k``)::

    python -m clinfonce_plugin.select_k --config-name clinfonce_cub.yaml
    python -m clinfonce_plugin.select_k --config-name clinfonce_synthetic_cub.yaml \\
        'select_k.ks=[1,2,4,8,12]' select_k.output=select_k.png

Reads only ``data.dataset`` / ``data.train_path`` of the config (the same hydra configs as
``main_pretrain.py``, from this repository's ``scripts/pretrain``). Prints the table with
the chosen row marked and writes a PNG like Fig. 4 (needs matplotlib: the ``plots`` extra).

``select_k`` keys (set them with ``select_k.<key>=...``):
    ks (list of int): the k to sweep (default 1 .. min(B, 20), B = binary attribute columns
        after one-hot binarisation).
    output (str): PNG path (default ``select_k-<name>.png`` in the working directory).
    plot (bool): write the PNG (default true).
"""
import os
from typing import Any, Dict, List, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from .config import ConfigError, check_known_keys
from .errors import DataError
from .clusters.attributes import attribute_cluster_ids, binarize_attributes
from .metrics.k_selection import SelectionResult, format_table, plot_selection, select_k

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "scripts", "pretrain")
SELECT_K = {"ks": None, "output": None, "plot": True}
MAX_DEFAULT_K = 20


def _options(cfg: DictConfig) -> Dict[str, Any]:
    """Pops and checks the ``select_k`` node (not a pretrain key) from ``cfg``."""
    with open_dict(cfg):
        node = cfg.pop("select_k", None)
    if node is None:
        node = {}
    elif isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    check_known_keys(node, SELECT_K, "select_k")
    options = dict(SELECT_K, **node)
    ks = options["ks"]
    if ks is not None:
        if isinstance(ks, int) and not isinstance(ks, bool):
            ks = [ks]
        if (not isinstance(ks, (list, tuple)) or not ks
                or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks)):
            raise ConfigError(f"select_k.ks must be a non-empty list of integers, got {ks!r}")
        options["ks"] = [int(k) for k in ks]
    return options


def run_select_k(cfg: DictConfig, source: Optional[str] = None) -> SelectionResult:
    """Sweeps k on the training split named by ``cfg.data``; prints the table, writes the PNG.

    Args:
        cfg: a pretrain config (hydra-composed), optionally with a ``select_k`` node.
        source: the yaml file, for error messages.

    Returns:
        the :class:`SelectionResult` (``chosen_k``, per-k I and H(Z|T)).
    """
    from . import host  # the pretrain checks validate method and dataset names
    from .config import check_pretrain_cfg
    from .data.custom import LABELS_HINT
    from .data.registry import DATASETS, open_split

    OmegaConf.set_struct(cfg, False)
    options = _options(cfg)
    cfg = check_pretrain_cfg(cfg, DATASETS, host.METHODS, source)
    info = open_split(cfg.data, "train").info
    if info.attributes is None:
        raise DataError(f"select_k: dataset {cfg.data.dataset!r} at {cfg.data.train_path} "
                         "provides no attributes; the k selection sweeps attribute clusters")
    if info.labels is None or not (np.asarray(info.labels) >= 0).any():
        raise DataError(f"select_k: dataset {cfg.data.dataset!r} at {cfg.data.train_path} "
                        f"provides no labels, and k is chosen by measuring the clusters "
                        f"against them: {LABELS_HINT} (dataset custom)")
    binary, _ = binarize_attributes(info.attributes, info.attribute_names)
    num_columns = binary.shape[1]
    ks: List[int] = options["ks"] or list(range(1, min(num_columns, MAX_DEFAULT_K) + 1))
    bad = [k for k in ks if not 1 <= k <= num_columns]
    if bad:
        raise ConfigError(f"select_k.ks: {bad} out of range; the {cfg.data.dataset} training split "
                         f"has {num_columns} binary attribute columns, so 1 <= k <= {num_columns}")
    labels = np.asarray(info.labels)

    result = select_k(lambda k: attribute_cluster_ids(info.attributes, k, info.attribute_names)[0],
                      labels, ks)
    known = int((labels != -1).sum())
    print(f"[select_k] {cfg.data.dataset} train split at {cfg.data.train_path}: "
          f"{info.num_samples} images ({known} labelled), {num_columns} binary attributes; "
          f"I(Z;T) and H(Z|T) in bits of the top-k attribute clusters Z against the labels T")
    print(format_table(result), end="")
    print(f"[select_k] chosen k = {result.chosen_k} ({result.rule}); "
          f"train with method_kwargs.clusters.k={result.chosen_k}")
    if options["plot"]:
        output = options["output"] or f"select_k-{cfg.name}.png"
        folder = os.path.dirname(os.path.abspath(output))
        os.makedirs(folder, exist_ok=True)
        plot_selection(result, output)
        print(f"[select_k] plot: {output}")
    return result


def _main() -> None:
    from .cli import hydra_main

    hydra_main(CONFIG_DIR, run_select_k)


if __name__ == "__main__":
    _main()
