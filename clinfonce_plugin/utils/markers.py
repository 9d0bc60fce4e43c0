"""The one marker of a required setting, shared by the config tables (config/schema.py), method
kwargs and cluster-provider parameters (no dependencies, so clusters/ can import it)."""
from typing import Any


class _Required:
    """Default of a key the user must give."""

    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()
