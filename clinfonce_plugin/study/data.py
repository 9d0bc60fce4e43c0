"""A pretrain config's training split for the study: composing the config, reading the
split's labels and image paths, and an optional label file matched to those paths."""
import copy
import os
from typing import List, Optional, Tuple

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO, "scripts", "pretrain")


def compose_pretrain(config_name: str, overrides: List[str]) -> DictConfig:
    """The hydra-composed pretrain config ``scripts/pretrain/<config_name>`` with ``key=value``
    overrides (set or add, as on ``main_pretrain.py``'s command line)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ..config.command_line import rewrite_overrides

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.2"):
            cfg = compose(config_name=config_name,
                          overrides=rewrite_overrides(list(overrides), CONFIG_DIR))
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--config-name {config_name} (from {CONFIG_DIR}) with overrides "
                          f"{list(overrides)}: {first}") from None
    OmegaConf.set_struct(cfg, False)
    return cfg


def training_split(cfg: DictConfig, source: Optional[str] = None):
    """(checked config, SampleInfo of the training split) of a pretrain config."""
    from .. import host
    from ..config import check_pretrain_cfg
    from ..data.registry import DATASETS, open_split

    checked = check_pretrain_cfg(copy.deepcopy(cfg), DATASETS, host.METHODS, source)
    return checked, open_split(checked.data, "train").info


def label_file(path: str, column: str, paths: List[str]) -> np.ndarray:
    """Labels T from a csv with a ``path`` column and the integer column ``column``, one row
    per training image (matched as precomputed-cluster files are: by relative path, then
    by the last two path components).

    Raises:
        DataError: unreadable file, no such column, or rows that do not match the dataset.
    """
    from ..clusters.precomputed import match_paths, read_cluster_csv

    if not os.path.isfile(path):
        raise DataError(f"--labels {path}: no such file")
    try:
        keys, values, _, _ = read_cluster_csv(path, column=column)
        rows = match_paths(keys, list(paths), path)
    except ValueError as err:
        raise DataError(f"--labels {path} does not match the dataset's training split "
                        f"({len(paths)} images): {err}") from None
    return values[rows]


def training_labels(cfg: DictConfig, labels: Optional[str] = None,
                    labels_column: str = "label") -> Tuple[DictConfig, np.ndarray, List[str]]:
    """(checked config, (N,) labels T, N image paths) of the training split; T from the
    dataset, or from ``labels`` (a csv, see ``label_file``).

    Raises:
        DataError: the split has no paths, or an image without a label (T = -1).
    """
    checked, info = training_split(cfg)
    if info.paths is None:
        raise DataError(f"data.dataset={checked.data.dataset}: the reader gives no image "
                        "paths, so no cluster file can be keyed to its images")
    paths = list(info.paths)
    if labels is not None:
        t = label_file(labels, labels_column, paths)
        where = f"--labels {labels}"
    else:
        if info.labels is None:
            raise DataError(f"data.dataset={checked.data.dataset} at {checked.data.train_path} "
                            "provides no labels; give them with --labels <csv>")
        t = np.asarray(info.labels, dtype=np.int64)
        where = f"the {checked.data.dataset} training split at {checked.data.train_path}"
    unknown = int((t < 0).sum())
    if unknown:
        raise DataError(f"{where}: {unknown} of {t.size} training images have no label (-1); "
                        "every image needs one to place it in the families")
    return checked, t, paths
