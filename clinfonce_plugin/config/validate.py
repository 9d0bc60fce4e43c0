"""The generic checks of a config section against its ``Key`` table: unknown keys refused,
kinds and ranges checked, defaults filled; each error names the key and where it was set."""
import math
from typing import Any, Iterable, Mapping, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from ..errors import ConfigError
from ..utils.markers import REQUIRED
from .keys import Key, Unsupported, as_keys
from .schema import NAME_PATTERN
from .sources import Sources, _error


_KINDS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, (list, tuple, ListConfig)),
    "dict": lambda v: isinstance(v, (dict, DictConfig)),
    "any": lambda v: True,
}
_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false",
               "str": "a string", "list": "a list", "dict": "a mapping", "any": "a value"}


def _check_value(spec: Key, value: Any) -> Optional[str]:
    """None if ``value`` fits ``spec``, else what was expected."""
    kinds = spec.kind.split("|")
    if not any(_KINDS[k](value) for k in kinds):
        return f"expected {' or '.join(_KIND_WORDS[k] for k in kinds)}, got {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return f"expected one of {list(spec.choices)}, got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        if spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low):
            return f"expected a value {'>' if spec.low_open else '>='} {spec.low}, got {value!r}"
        if spec.high is not None and value > spec.high:
            return f"expected a value <= {spec.high}, got {value!r}"
    return None


def check_known_keys(node: Any, allowed: Iterable[str], where: str) -> None:
    """Raises ConfigError if ``node`` (a mapping) has a key outside ``allowed``."""
    if node is None:
        return
    if not isinstance(node, (Mapping, DictConfig)):
        raise ConfigError(f"{where} must be a mapping, got {type(node).__name__}: {node!r}")
    unknown = sorted(set(node.keys()) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}. Valid keys: {sorted(allowed)}")


def fill_section(cfg: DictConfig, path: str, table: Mapping[str, Any],
                 sources: Any = None, unsupported: Mapping[str, Unsupported] = None,
                 ignore: Sequence[str] = ()) -> DictConfig:
    """Checks the mapping at dotted ``path`` of ``cfg`` against ``table`` (unknown keys,
    required keys, kinds, ranges, choices, recursively) and fills the defaults.

    ``unsupported`` maps dotted keys (relative to ``path``) to keys accepted only at their
    neutral value. Returns the node. Raises ConfigError naming the key and its location.
    """
    sources = Sources.of(sources)
    unsupported = unsupported or {}
    node = OmegaConf.select(cfg, path) if path else cfg
    if node is None:
        with open_dict(cfg):
            OmegaConf.update(cfg, path, {}, force_add=True)
        node = OmegaConf.select(cfg, path)
    _fill(node, path, table, sources, unsupported, "", ignore)
    return node


def _fill(node, path, table, sources, unsupported, rel, ignore) -> None:
    full = (lambda k: f"{path}.{k}" if path else k)
    if not isinstance(node, DictConfig):
        raise _error(sources, path, f"expected a mapping, got {node!r}")
    for key in list(node.keys()):
        rel_key = f"{rel}{key}"
        if key in table or key in ignore:
            continue
        if rel_key in unsupported:
            bad = unsupported[rel_key]
            value = node[key]
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            if not bad.is_neutral(value):
                raise _error(sources, full(key), f"not supported by this runner: "
                             f"{bad.instead}")
            with open_dict(node):
                del node[key]
            continue
        valid = sorted(set(table) | {k[len(rel):] for k in unsupported
                                     if k.startswith(rel) and "." not in k[len(rel):]})
        raise _error(sources, full(key), f"unknown key. Valid keys here: {valid}")
    with open_dict(node):
        for key, spec in table.items():
            if isinstance(spec, Mapping):
                if key not in node or node[key] is None:
                    node[key] = {}
                _fill(node[key], full(key), spec, sources, unsupported, f"{rel}{key}.", ())
                continue
            present = key in node and not OmegaConf.is_missing(node, key) and node[key] is not None
            if not present:
                if spec.default is REQUIRED:
                    raise _error(sources, full(key), "required key is missing")
                if spec.fill:
                    node[key] = spec.default
                elif key in node:
                    del node[key]  # an explicit null: the host's default, as when absent
                continue
            value = node[key]
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            problem = _check_value(spec, value)
            if problem:
                raise _error(sources, full(key), problem)


def fill_defaults(cfg: DictConfig, path: str, defaults: Mapping[str, Any],
                  sources: Any = None) -> DictConfig:
    """``fill_section`` with a plain ``{key: default}`` table (method kwargs)."""
    return fill_section(cfg, path, as_keys(defaults), sources)


def select(cfg: DictConfig, key: str, default: Any = None) -> Any:
    """Value at dotted ``key``, or ``default`` when absent, None or ``???``."""
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if value is None or value == "???":
        return default
    return value


def check_choice(cfg: DictConfig, key: str, choices: Sequence[str], what: str, of: str = "",
                 source: Any = None) -> None:
    """Raises ConfigError (with the key's location) if the value at dotted ``key`` is not
    one of ``choices`` (``what`` names the value, ``of`` whose choices they are)."""
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        raise _error(Sources.of(source), key, f"unknown {what} {value!r}. Choose from "
                     f"{of + ' ' if of else ''}{list(choices)}")


def validate_run_name(name: Any, where: str = "name") -> str:
    """A run name is one path component of safe characters (it becomes a directory)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name in (".", ".."):
        raise ConfigError(f"{where}: {name!r} is not a valid run name: use 1-128 letters, "
                          f"digits, '.', '_' or '-', starting with a letter or digit (it names "
                          f"a directory under checkpoint.dir/<method>/)")
    return name
