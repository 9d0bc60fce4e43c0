"""Host resolution: solo-learn (main, >= 1.0.6) when importable, else the bundled runtime.

Everything the plugin uses of its host comes from here (the host contract of DESIGN.md):
``BaseMethod``, ``METHODS``, ``parse_cfg``, ``build_transform_pipeline``,
``NCropAugmentation``, ``FullTransformPipeline`` and ``HOST_NAME`` ("solo-learn" or
"runtime"). Set ``CLINFONCE_HOST=runtime`` to use the bundled runtime even where solo-learn
is installed (``CLINFONCE_HOST=solo`` makes a missing solo-learn an error).
"""
import importlib
import importlib.util
import os

SOLO_INSTALL_HINT = (
    "install solo-learn from its repository instead: "
    "`git clone https://github.com/vturrisi/solo-learn && pip install -e ./solo-learn` "
    "(or uninstall it with `pip uninstall solo-learn` to use the bundled runtime)"
)


class HostError(ImportError):
    """The installed host cannot be used; the message says why and what to do."""


def _solo_version() -> str:
    try:
        from importlib.metadata import version

        return version("solo-learn")
    except Exception:  # noqa: BLE001 - an uninstalled checkout on sys.path has no metadata
        return "unknown"


def _load_solo():
    """Imports solo-learn's contract names, refusing the 2021 PyPI release (1.0.2)."""
    has_modern_api = importlib.util.find_spec("solo.args.pretrain") is not None
    if not has_modern_api:
        raise HostError(
            f"solo-learn {_solo_version()} is installed but it is the old PyPI release without "
            f"the hydra API (solo.args.pretrain.parse_cfg); clinfonce-plugin needs solo-learn "
            f">= 1.0.6 from the main branch: {SOLO_INSTALL_HINT}"
        )
    pretrain = importlib.import_module("solo.args.pretrain")
    if not hasattr(pretrain, "parse_cfg"):
        raise HostError(
            f"solo-learn {_solo_version()} has no solo.args.pretrain.parse_cfg (pre-1.0.6); "
            f"{SOLO_INSTALL_HINT}"
        )
    from solo.data.pretrain_dataloader import (
        FullTransformPipeline,
        NCropAugmentation,
        build_transform_pipeline,
    )
    from solo.methods import METHODS
    from solo.methods.base import BaseMethod

    from .solo_backbones import CPU_BACKBONES, register_timm_backbones

    register_timm_backbones(BaseMethod._BACKBONES, CPU_BACKBONES)

    return {
        "HOST_NAME": "solo-learn",
        "BaseMethod": BaseMethod,
        "METHODS": METHODS,
        "parse_cfg": pretrain.parse_cfg,
        "build_transform_pipeline": build_transform_pipeline,
        "NCropAugmentation": NCropAugmentation,
        "FullTransformPipeline": FullTransformPipeline,
    }


def _load_runtime():
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
    return _load_solo()


_HOST = resolve_host()
HOST_NAME: str = _HOST["HOST_NAME"]
BaseMethod = _HOST["BaseMethod"]
METHODS = _HOST["METHODS"]
parse_cfg = _HOST["parse_cfg"]
build_transform_pipeline = _HOST["build_transform_pipeline"]
NCropAugmentation = _HOST["NCropAugmentation"]
FullTransformPipeline = _HOST["FullTransformPipeline"]

__all__ = ["HOST_NAME", "BaseMethod", "METHODS", "parse_cfg", "build_transform_pipeline",
           "NCropAugmentation", "FullTransformPipeline", "resolve_host", "HostError"]
