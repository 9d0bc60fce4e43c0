"""The pretrain config a finished run saved (``args.json``, a zoo file's ``"args"``), read
back for evaluation: the keys it lacks because it was written before they existed take the
schema's defaults here, once, so the jobs that use it read every key directly."""
from typing import Any, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from ..utils.markers import REQUIRED
from .schema import AUGMENTATION, PRETRAIN

# the lists of crop pipelines, each entry with the AUGMENTATION table
_PIPELINE_KEYS = ("augmentations", "warmup_augmentations")


def _fill_missing(node: DictConfig, table: Mapping[str, Any]) -> None:
    """Adds the keys of ``table`` that ``node`` lacks, with their defaults (sections
    recursively). Present values are kept as the run wrote them: they were checked when
    the run started. Required keys cannot be filled and stay absent."""
    with open_dict(node):
        for key, spec in table.items():
            if isinstance(spec, Mapping):
                if not isinstance(node.get(key), DictConfig):
                    node[key] = {}
                _fill_missing(node[key], spec)
            elif key not in node and spec.fill and spec.default is not REQUIRED:
                node[key] = spec.default


def saved_pretrain_cfg(args: Mapping[str, Any]) -> DictConfig:
    """``args`` (a saved pretrain config, plain containers) as a DictConfig with every key
    of the current schema that has a default, including each crop pipeline's."""
    cfg = OmegaConf.create(dict(args))
    _fill_missing(cfg, PRETRAIN)
    for key in _PIPELINE_KEYS:
        pipelines = cfg.get(key)
        if isinstance(pipelines, ListConfig):
            for entry in pipelines:
                if isinstance(entry, DictConfig):
                    _fill_missing(entry, AUGMENTATION)
    return cfg
