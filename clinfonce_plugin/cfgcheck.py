"""Config-key checking shared by every config section: defaults in one place, unknown keys
rejected with the list of valid ones (solo-learn silently accepts typos; we do not)."""
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf, open_dict

REQUIRED = "???"  # a default of REQUIRED means the key must be given


class ConfigError(ValueError):
    """A config value or key is wrong; the message says where and what was expected."""


def check_known_keys(node: Any, allowed: Iterable[str], where: str) -> None:
    """Raises ConfigError if ``node`` (a mapping) has a key outside ``allowed``."""
    if node is None:
        return
    if not isinstance(node, (Mapping, DictConfig)):
        raise ConfigError(f"{where} must be a mapping, got {type(node).__name__}: {node!r}")
    allowed = set(allowed)
    unknown = sorted(set(node.keys()) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in {where}. Valid keys: {sorted(allowed)}"
        )


def fill_defaults(cfg: DictConfig, path: str, defaults: Mapping[str, Any]) -> DictConfig:
    """Checks the mapping at dotted ``path`` against ``defaults`` (unknown keys fail, REQUIRED
    keys must be present) and fills the missing ones. Returns the node."""
    node = OmegaConf.select(cfg, path) if path else cfg
    if node is None:
        with open_dict(cfg):
            OmegaConf.update(cfg, path, {}, force_add=True)
        node = OmegaConf.select(cfg, path)
    check_known_keys(node, defaults.keys(), path or "config")
    with open_dict(node):
        for key, default in defaults.items():
            present = key in node and not OmegaConf.is_missing(node, key) and node[key] is not None
            if present:
                continue
            if isinstance(default, str) and default == REQUIRED:
                raise ConfigError(f"missing required key {path + '.' if path else ''}{key}")
            node[key] = default
    return node
