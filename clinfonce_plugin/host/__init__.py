"""Host resolution: solo-learn (main, >= 1.0.6) when importable, else the bundled runtime.

Everything the plugin uses of its host comes from here (the host contract of DESIGN.md):
``BaseMethod``, ``METHODS``, ``parse_cfg``, ``build_transform_pipeline``,
``NCropAugmentation``, ``FullTransformPipeline`` and ``HOST_NAME`` ("solo-learn" or
"runtime"), plus two adapter functions: ``prepare_host_cfg(cfg)`` (the host's parse_cfg on a
checked config) and ``make_host_backbone(cfg)`` (a bare backbone as the host's BaseMethod
builds it). solo-learn specifics live in ``host/solo.py``. Set ``CLINFONCE_HOST=runtime`` to
use the bundled runtime even where solo-learn is installed (``CLINFONCE_HOST=solo`` makes a
missing solo-learn an error).
"""
import importlib.util
import os

from .solo import SOLO_INSTALL_HINT, HostError


def _load_runtime() -> dict:
    from . import runtime

    names = {name: getattr(runtime, name) for name in runtime.__all__}
    return {"HOST_NAME": "runtime", **names}


def resolve_host() -> dict:
    """Returns the host's contract names (see module docstring)."""
    choice = os.environ.get("CLINFONCE_HOST", "auto").lower()
    if choice not in ("auto", "solo", "runtime"):
        raise HostError(f"CLINFONCE_HOST={choice!r}: expected 'auto', 'solo' or 'runtime'")
    if choice == "runtime":
        return _load_runtime()
    if importlib.util.find_spec("solo") is None:
        if choice == "solo":
            raise HostError(f"CLINFONCE_HOST=solo but solo-learn is not importable; "
                            f"{SOLO_INSTALL_HINT}")
        return _load_runtime()
    from . import solo

    return solo.load()


_HOST = resolve_host()
HOST_NAME: str = _HOST["HOST_NAME"]
BaseMethod = _HOST["BaseMethod"]
METHODS = _HOST["METHODS"]
parse_cfg = _HOST["parse_cfg"]
prepare_host_cfg = _HOST["prepare_host_cfg"]
make_host_backbone = _HOST["make_host_backbone"]
build_transform_pipeline = _HOST["build_transform_pipeline"]
NCropAugmentation = _HOST["NCropAugmentation"]
FullTransformPipeline = _HOST["FullTransformPipeline"]

__all__ = ["HOST_NAME", "BaseMethod", "METHODS", "parse_cfg", "prepare_host_cfg",
           "make_host_backbone", "build_transform_pipeline", "NCropAugmentation",
           "FullTransformPipeline", "resolve_host", "HostError"]
