"""Optional packages (the extras of setup.py): imported when a config asks for them, with one
error that names what to install when one is missing."""
import importlib
from types import ModuleType

from ..errors import MissingPackage


def require(module: str, package: str, extra: str, use: str) -> ModuleType:
    """``module`` imported, or MissingPackage (one ``error:`` line, exit 2) naming the pip
    ``package`` and the setup.py ``extra`` that brings it; ``use`` says what needs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(f"{use} needs the package {package!r}, which is not installed: "
                             f"pip install {package} (or pip install -e \".[{extra}]\" in "
                             f"this repository)") from None
