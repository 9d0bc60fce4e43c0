"""Transitional alias of clinfonce_plugin.config (removed once every import moved)."""
from .config import REQUIRED, ConfigError, check_known_keys, fill_defaults  # noqa: F401
