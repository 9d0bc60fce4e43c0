"""Small omegaconf helpers shared by the runtime and the plugin."""
from typing import Any

from omegaconf import DictConfig, OmegaConf


def select(cfg: DictConfig, key: str, default: Any = None) -> Any:
    """Value at dotted ``key``, or ``default`` when absent, None or ``???``
    (solo-learn's ``omegaconf_select``)."""
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if value is None or value == "???":
        return default
    return value
