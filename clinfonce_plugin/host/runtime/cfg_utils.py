"""Transitional alias of clinfonce_plugin.config.select (removed once every import moved)."""
from clinfonce_plugin.config import select  # noqa: F401
