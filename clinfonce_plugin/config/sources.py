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
    label: str = "<config>"  # where a key is said to be when no file or override has it

    @staticmethod
    def of(source: Any) -> "Sources":
        if isinstance(source, Sources):
            return source
        return Sources(primary=source)

    def where(self, path: str) -> str:
        parts = _split_path(path)
        # the last override of a key given twice is the one that took effect
        for override in reversed(self.overrides):
            key = override.split("=", 1)[0].lstrip("+~")
            if _split_path(key) == parts[: len(_split_path(key))]:
                return f"command line ({override})"
        in_files = any(_yaml_line(file, parts[len(_split_path(package)):])
                       for package, file in self.groups.items()
                       if parts[: len(_split_path(package))] == _split_path(package))
        in_files = in_files or bool(self.primary and _yaml_line(self.primary, parts))
        if not in_files:
            # a section no file has, made by an override of a key below it (foo.bar=1)
            for override in reversed(self.overrides):
                key = _split_path(override.split("=", 1)[0].lstrip("+~"))
                if key[: len(parts)] == parts:
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
        return self.label


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
