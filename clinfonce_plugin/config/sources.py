"""Where each config value was set (yaml file and line, a config group's file, or the command
line), for errors that name the key and its place."""
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import yaml

from ..errors import ConfigError


@dataclass
class Sources:
    """Where a config came from: the primary yaml, the yaml of each defaults group, and the
    command-line overrides. ``where(path)`` finds the file:line of a dotted key."""
    primary: Optional[str] = None
    groups: Dict[str, str] = field(default_factory=dict)  # package -> yaml file
    overrides: Sequence[str] = ()

    @staticmethod
    def of(source: Any) -> "Sources":
        if isinstance(source, Sources):
            return source
        return Sources(primary=source)

    def where(self, path: str) -> str:
        parts = _split_path(path)
        for override in self.overrides:
            key = override.split("=", 1)[0].lstrip("+~")
            if _split_path(key) == parts[: len(_split_path(key))]:
                return f"command line ({override})"
        for package, file in self.groups.items():
            pkg = _split_path(package)
            if parts[: len(pkg)] == pkg:
                line = _yaml_line(file, parts[len(pkg):])
                if line:
                    return f"{file}:{line}"
        if self.primary:
            line = _yaml_line(self.primary, parts)
            return f"{self.primary}:{line}" if line else self.primary
        return "<config>"


def _split_path(path: str) -> List[Any]:
    parts: List[Any] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return parts


def _yaml_line(file: str, parts: List[Any]) -> Optional[int]:
    """1-based line of the deepest node of ``parts`` found in the yaml ``file``."""
    try:
        with open(file, encoding="utf-8-sig") as f:
            node = yaml.compose(f)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in parts:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = [(k, v) for k, v in node.value if k.value == part]
            if not match:
                return line
            key_node, node = match[0]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _error(sources: Sources, path: str, message: str) -> ConfigError:
    return ConfigError(f"{sources.where(path)}: {path}: {message}")
