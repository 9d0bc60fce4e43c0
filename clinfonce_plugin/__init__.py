"""clinfonce-plugin: cluster-aware contrastive learning (Cl-InfoNCE, WCL) for solo-learn.

Importing the package resolves the host (solo-learn when installed, else the bundled
runtime) and registers the plugin's methods into the host's ``METHODS`` registry.
"""
from .host import HOST_NAME, METHODS
from .methods import PLUGIN_METHODS

__version__ = "0.1.0"


def register_methods(registry: dict = METHODS) -> dict:
    """Adds the plugin's methods to ``registry``; a different class under the same name is an
    error rather than a silent override."""
    for name, cls in PLUGIN_METHODS.items():
        current = registry.get(name)
        if current is not None and current is not cls:
            raise RuntimeError(
                f"method {name!r} is already registered in the {HOST_NAME} host by "
                f"{current.__module__}.{current.__qualname__}; refusing to override it"
            )
        registry[name] = cls
    return registry


register_methods()

__all__ = ["HOST_NAME", "METHODS", "PLUGIN_METHODS", "register_methods", "__version__"]
