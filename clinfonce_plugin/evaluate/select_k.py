"""Choose the number k of attributes, or the hierarchy level l, that define the clusters,
without training anything.

Implements the k selection of Cl-InfoNCE (https://arxiv.org/abs/2202.06670, Fig. 4) and its
level sweep (App. B, Fig. 6) on the training split of a pretrain config. Two sources of
cluster ids, one sweep:

- the config's provider is ``hierarchy``: the clusters are the level-l ancestors of the
  classes in its tree (``pairs_file`` / ``pairs``, or the dataset's own hierarchy), for
  every level l;
- otherwise: attribute clusters built from the top-k highest-entropy attributes, for
  every k.

For each value, I(Z;T) and H(Z|T) (bits) against the training labels are computed,
min-max normalised, and the value where the normalised I(Z;T) meets the normalised -H(Z|T)
is chosen (rules in ``metrics.k_selection.choose_k``)::

    python -m clinfonce_plugin.select_k --config-name clinfonce_cub.yaml
    python -m clinfonce_plugin.select_k --config-name clinfonce_synthetic_cub.yaml \\
        'select_k.ks=[1,2,4,8,12]' select_k.output=select_k.png
    python -m clinfonce_plugin.select_k --config-name clinfonce_hierarchy_cifar100.yaml

Reads the config's ``data`` keys and ``method_kwargs.clusters`` (the same hydra configs as
``main_pretrain.py``, from this repository's ``scripts/pretrain``). Prints the table with
the chosen row marked and writes a PNG like Fig. 4 (x axis k, or l for a hierarchy; needs
matplotlib: the ``plots`` extra).

``select_k`` keys (set them with ``select_k.<key>=...``):
    ks (list of int): attribute sweep only: the k to sweep (default 1 .. min(B, 20), B =
        binary attribute columns after one-hot binarisation).
    levels (list of int): hierarchy sweep only: the levels to sweep (default 1 .. D, D =
        the deepest level of a class of the training split; the root is level 1).
    output (str): PNG path (default ``select_k-<name>.png`` in the working directory).
    plot (bool): write the PNG (default true).
"""
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from ..config import ConfigError, check_known_keys
from ..errors import DataError
from ..clusters.attributes import attribute_cluster_ids, binarize_attributes
from ..clusters.hierarchy import class_levels, dataset_tree, level_cluster_ids
from ..clusters.sample_info import SampleInfo
from ..metrics.k_selection import SelectionResult, format_table, plot_selection, select_k

SELECT_K = {"ks": None, "levels": None, "output": None, "plot": True}
MAX_DEFAULT_K = 20


@dataclass
class Sweep:
    """One source of cluster ids: ``cluster_ids(value)`` for each swept value."""
    parameter: str                         # "k" or "level"
    values: List[int]
    cluster_ids: Callable[[int], np.ndarray]
    what: str                              # what Z is, for the header line


def _int_list(name: str, value: Any) -> Optional[List[int]]:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"select_k.{name} must be a non-empty list of integers, got {value!r}")
    return [int(v) for v in value]


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
    for name in ("ks", "levels"):
        options[name] = _int_list(name, options[name])
    return options


def _check_range(name: str, values: List[int], top: int, what: str) -> None:
    bad = [v for v in values if not 1 <= v <= top]
    if bad:
        raise ConfigError(f"select_k.{name}: {bad} out of range; {what}, so 1 <= "
                          f"{name[:-1]} <= {top}")


def attribute_sweep(info: SampleInfo, ks: Optional[List[int]], dataset: str) -> Sweep:
    """Top-k attribute clusters for each k."""
    if info.attributes is None:
        raise DataError(f"select_k: dataset {dataset!r} provides no attributes; the k "
                        "selection sweeps attribute clusters (a config whose provider is "
                        "'hierarchy' sweeps levels instead)")
    binary, _ = binarize_attributes(info.attributes, info.attribute_names)
    columns = binary.shape[1]
    ks = ks or list(range(1, min(columns, MAX_DEFAULT_K) + 1))
    _check_range("ks", ks, columns, f"the {dataset} training split has {columns} binary "
                 "attribute columns")
    return Sweep("k", ks,
                 lambda k: attribute_cluster_ids(info.attributes, k, info.attribute_names)[0],
                 f"{columns} binary attributes; the top-k attribute clusters Z")


def level_sweep(info: SampleInfo, clusters: Dict[str, Any], levels: Optional[List[int]],
                dataset: str) -> Sweep:
    """Level-l hierarchy clusters for each l, from the tree the provider would build."""
    tree, source = dataset_tree(info, clusters.get("pairs_file"), clusters.get("pairs"))
    deepest = class_levels(tree, info)
    levels = levels or list(range(1, deepest + 1))
    _check_range("levels", levels, deepest, f"the deepest class of the {dataset} training "
                 f"split sits at level {deepest} of {source}")
    return Sweep("level", levels, lambda level: level_cluster_ids(tree, info, level)[0],
                 f"hierarchy of {source}, classes down to level {deepest}; the level-l "
                 f"clusters Z")


def run_select_k(cfg: DictConfig, source: Optional[str] = None) -> SelectionResult:
    """Sweeps k (or the level) on the training split named by ``cfg.data``; prints the
    table, writes the PNG.

    Args:
        cfg: a pretrain config (hydra-composed), optionally with a ``select_k`` node.
        source: the yaml file, for error messages.

    Returns:
        the :class:`SelectionResult` (``chosen_k``, per-value I and H(Z|T)).
    """
    from .. import host  # the pretrain checks validate method and dataset names
    from ..config import check_pretrain_cfg
    from ..data.custom import LABELS_HINT
    from ..data.registry import DATASETS, open_split

    OmegaConf.set_struct(cfg, False)
    options = _options(cfg)
    cfg = check_pretrain_cfg(cfg, DATASETS, host.METHODS, source)
    clusters = OmegaConf.to_container(cfg.method_kwargs, resolve=True).get("clusters") or {}
    hierarchy = clusters.get("provider") == "hierarchy"
    wrong = "ks" if hierarchy else "levels"
    if options[wrong] is not None:
        raise ConfigError(f"select_k.{wrong} does not apply: the config's cluster provider is "
                          f"{clusters.get('provider', 'attributes')!r}, so select_k sweeps "
                          f"{'levels (select_k.levels)' if hierarchy else 'k (select_k.ks)'}")
    dataset = cfg.data.dataset
    info = open_split(cfg.data, "train").info
    if info.labels is None or not (np.asarray(info.labels) >= 0).any():
        raise DataError(f"select_k: dataset {dataset!r} at {cfg.data.train_path} provides no "
                        f"labels, and k is chosen by measuring the clusters against them: "
                        f"{LABELS_HINT} (dataset custom)")
    try:
        sweep = (level_sweep(info, clusters, options["levels"], dataset) if hierarchy
                 else attribute_sweep(info, options["ks"], dataset))
    except (ValueError, FileNotFoundError) as err:
        if isinstance(err, (ConfigError, DataError)):
            raise
        raise DataError(f"select_k: {err}") from None
    labels = np.asarray(info.labels)

    result = select_k(sweep.cluster_ids, labels, sweep.values, parameter=sweep.parameter)
    known = int((labels != -1).sum())
    print(f"[select_k] {dataset} train split at {cfg.data.train_path}: "
          f"{info.num_samples} images ({known} labelled), {sweep.what}; I(Z;T) and H(Z|T) "
          f"in bits against the labels T")
    print(format_table(result), end="")
    print(f"[select_k] chosen {sweep.parameter} = {result.chosen_k} ({result.rule}); "
          f"train with method_kwargs.clusters.{sweep.parameter}={result.chosen_k}")
    if options["plot"]:
        output = options["output"] or f"select_k-{cfg.name}.png"
        folder = os.path.dirname(os.path.abspath(output))
        os.makedirs(folder, exist_ok=True)
        plot_selection(result, output)
        print(f"[select_k] plot: {output}")
    return result
