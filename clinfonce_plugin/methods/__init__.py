"""The plugin's methods, one file each; file name = registry key = yaml ``method:``."""
from .clinfonce import ClInfoNCE

PLUGIN_METHODS = {"clinfonce": ClInfoNCE}

__all__ = ["PLUGIN_METHODS", "ClInfoNCE"]
