"""The row of a config table: ``Key`` (default, kinds, range, meaning), ``Unsupported``
(a solo-learn key accepted only at its neutral value), and the helpers that read tables."""
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from omegaconf import DictConfig, ListConfig

from ..utils.markers import REQUIRED


@dataclass(frozen=True)
class Key:
    """One config key: default (``REQUIRED`` if none), accepted kinds, range and meaning.

    ``kind``: any of "int", "float", "bool", "str", "list", "dict", "any"; a "|"-separated
    string accepts several. ``low``/``high`` bound numbers (``low_open``: strictly above).
    """
    default: Any
    kind: str
    doc: str = ""
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    choices: Optional[Tuple[Any, ...]] = None
    fill: bool = True  # False: an unset key stays absent (the host picks a default)


@dataclass(frozen=True)
class Unsupported:
    """A solo-learn key this runner does not act on: accepted (and dropped) only at its
    neutral value, where it would change nothing; ``None`` accepts a section whose
    ``enabled`` is false."""
    neutral: Any
    instead: str

    def is_neutral(self, value: Any) -> bool:
        if self.neutral is None:
            return value is None or (isinstance(value, Mapping) and value.get("enabled") is False)
        return value == self.neutral


def documented_keys(table: Mapping[str, Any], prefix: str = "") -> Dict[str, Key]:
    """Flat {dotted key: Key} of a table (nested sections expanded)."""
    out: Dict[str, Key] = {}
    for name, spec in table.items():
        if isinstance(spec, Mapping):
            out.update(documented_keys(spec, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec
    return out


def _infer_kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (dict, DictConfig)):
        return "dict"
    if isinstance(default, (list, tuple, ListConfig)):
        return "list"
    return "any"


def as_keys(defaults: Mapping[str, Any]) -> Dict[str, Key]:
    """A Key table from plain ``{key: default}`` (kind inferred from the default; a default
    of REQUIRED or None accepts any value). Keys already given as ``Key`` are kept."""
    table: Dict[str, Key] = {}
    for key, default in defaults.items():
        if isinstance(default, Key):
            table[key] = default
        elif default is REQUIRED or default == "???":
            table[key] = Key(REQUIRED, "any")
        else:
            table[key] = Key(default, _infer_kind(default))
    return table
