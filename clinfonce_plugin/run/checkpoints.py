"""Loading checkpoints that come from outside the current run: ``torch.load`` with
``weights_only=True`` only (no code runs while unpickling), with errors that say what is
wrong with the file."""
import json
import os
import pickle
import re
import warnings
from typing import Any, Dict, Optional

import torch

from ..errors import CheckpointError


def safe_load(path: str, what: str = "checkpoint") -> Dict[str, Any]:
    """The object stored in ``path``, loaded with ``weights_only=True`` on the CPU.

    Raises CheckpointError for a missing, empty or non-torch file, and for a file that needs
    arbitrary unpickling (it names the object it refers to); nothing in the file is run.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): an interrupted copy or write?")
    try:
        with warnings.catch_warnings():
            # garbage bytes can look like a pickle of another protocol: torch warns before
            # failing, and the failure below is the message that matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        culprit = refused_global(text)
        if culprit is not None:
            raise CheckpointError(
                f"{what} {path} was refused: it needs arbitrary unpickling (it refers to "
                f"{culprit}), which could run code; the file was not loaded. Only checkpoints "
                f"of plain tensors and containers are loaded (torch.load weights_only=True); "
                f"the checkpoints this project writes load that way. Re-save the file's "
                f"state_dict if you trust it") from None
        raise CheckpointError(f"{what} {path} is not a readable torch checkpoint "
                              f"({size} bytes; not a torch file?): "
                              f"{unpickling_detail(text)}") from None
    except Exception as err:  # noqa: BLE001 - garbage bytes reach the unpickler's internals
        # (IndexError, KeyError, struct.error, ... besides RuntimeError/EOFError/BadZipFile)
        first = str(err).splitlines()[0].split(". ")[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{what} {path} is not a readable torch checkpoint ({size} "
                              f"bytes; truncated or not a torch file): {first}") from None


# how torch's weights-only unpickler names a global it refuses, by torch version: "Unsupported
# global: GLOBAL io.open was not an allowed global by default" (2.4 and later) and "Trying to
# load unsupported GLOBAL posix.system whose module posix is blocked" (2.14, for modules it
# blocks outright)
_REFUSED_GLOBAL = (re.compile(r"Unsupported global: GLOBAL ([\w.]+)"),
                   re.compile(r"unsupported GLOBAL ([\w.]+)"),
                   re.compile(r"\bGLOBAL ([\w.]+)"))


def refused_global(text: str) -> Optional[str]:
    """The name of the global (``module.name``) that torch's weights-only unpickler refused,
    read from its error message ``text``; None when the message names none."""
    for pattern in _REFUSED_GLOBAL:
        match = pattern.search(text)
        if match:
            return match.group(1).rstrip(".")
    return None


def unpickling_detail(text: str) -> str:
    """The line of a weights-only unpickling error that says what is wrong with the file,
    without torch's advice to load it with ``weights_only`` off (which would run its code)."""
    detail = re.search(r"WeightsUnpickler error: \s*(.+)", text)
    if detail:
        return detail.group(1).strip()
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and "weights_only" not in line and "Weights only load failed" not in
             line]
    return lines[0] if lines else "the weights-only unpickler refused it"


def state_dict_of(obj: Any, path: str) -> Dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint, or the mapping itself."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a checkpoint "
                              f"dict with a state_dict")
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict is a {type(state).__name__}, expected a dict")
    return state


# the key under which a zoo file carries its pretrain config (what args.json holds for a run)
ARGS_KEY = "args"


def pretrain_args(path: str, obj: Any) -> Dict[str, Any]:
    """The pretrain config of the checkpoint at ``path`` (already loaded as ``obj``): the run's
    ``args.json`` beside it, else the config the file carries under ``"args"`` (zoo files)."""
    args_path = os.path.join(os.path.dirname(os.path.abspath(path)), "args.json")
    if os.path.isfile(args_path):
        try:
            with open(args_path, encoding="utf-8-sig") as f:
                args = json.load(f)
        except ValueError as err:
            raise CheckpointError(f"{args_path} is not valid JSON: {err}") from None
        where = args_path
    elif isinstance(obj, dict) and ARGS_KEY in obj:
        args, where = obj[ARGS_KEY], f"{path} (its {ARGS_KEY!r} entry)"
    else:
        raise CheckpointError(f"expected the pretrain config args.json beside {path} (looked "
                              f"for {args_path}), or a zoo file carrying it under "
                              f"{ARGS_KEY!r}")
    if not isinstance(args, dict) or not isinstance(args.get("backbone"), dict):
        raise CheckpointError(f"{where}: expected a pretrain config (a mapping with a "
                              f"'backbone' section)")
    return args


def check_finite(weights: Dict[str, torch.Tensor], path: str) -> None:
    """Refuses weights holding NaN or infinity (a diverged run)."""
    bad = [k for k, v in weights.items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} has non-finite (NaN or inf) weights in {len(bad)} "
                              f"tensor(s), e.g. {bad[:3]}: the run that wrote it diverged; "
                              f"evaluate an earlier checkpoint or retrain with a lower lr")


def prefixed(state: Dict[str, Any], prefix: str) -> Dict[str, torch.Tensor]:
    """The entries of ``state`` whose key starts with ``prefix``, the prefix removed (the
    weights of one submodule of a method's state_dict, e.g. ``projector.``)."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def backbone_weights(path: str, what: str = "backbone.pretrained") -> Dict[str, torch.Tensor]:
    """The backbone weights stored in ``path`` (loaded weights-only): the ``backbone.*``
    entries of a checkpoint this project (or solo-learn) wrote, prefix removed, or the file's
    mapping itself when it is a plain backbone state_dict (no ``backbone.`` keys, e.g. a zoo
    file of backbone weights only). Non-finite weights are refused."""
    state = state_dict_of(safe_load(path, what), path)
    weights = prefixed(state, "backbone.")
    if not weights:
        weights = {k: v for k, v in state.items() if torch.is_tensor(v)}
    if not weights:
        raise CheckpointError(f"{what} {path} holds no tensors: expected a checkpoint with "
                              f"'backbone.*' weights or a backbone state_dict")
    check_finite(weights, path)
    return weights


# what a host may put before a network's own keys: solo-learn wraps the timm models it does
# not have itself in a module whose network is ``.model`` (host/solo.py TimmBackbone)
WRAPPER_PREFIXES = ("model.",)


def fit_keys(weights: Dict[str, torch.Tensor], own_keys) -> Dict[str, torch.Tensor]:
    """``weights`` renamed to the key layout of a module whose keys are ``own_keys``: the same
    network saved by the other host (timm model bare on the runtime, wrapped under
    solo-learn) gains or loses the wrapper prefix. Keys are returned unchanged when no
    layout makes them all match (the caller reports what does not fit)."""
    own = set(own_keys)
    if set(weights) <= own:
        return weights
    for prefix in WRAPPER_PREFIXES:
        added = {prefix + k: v for k, v in weights.items()}
        if set(added) <= own:
            return added
        if all(k.startswith(prefix) for k in weights):
            stripped = {k[len(prefix):]: v for k, v in weights.items()}
            if set(stripped) <= own:
                return stripped
    return weights


def load_backbone(backbone: torch.nn.Module, path: str, name: str,
                  what: str = "backbone.pretrained") -> None:
    """Copies the backbone weights of ``path`` into ``backbone`` (network ``name``), written
    by either host (key layouts mapped by ``fit_keys``); every tensor must match by key and
    shape."""
    weights = fit_keys(backbone_weights(path, what), backbone.state_dict())
    load_exact(backbone, weights, f"{what} {path}", f"backbone {name!r}",
               "give a checkpoint of the same backbone (and stem)")


def load_exact(module: torch.nn.Module, weights: Dict[str, torch.Tensor], source: str,
               target: str, hint: str) -> None:
    """Copies ``weights`` into ``module`` when every tensor matches by key and shape; else
    a CheckpointError naming the missing, unexpected and reshaped keys (``source`` and
    ``target`` name the file and the module in it, ``hint`` says what to do)."""
    own = module.state_dict()
    shapes = [k for k, v in weights.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not fit {target}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}, {len(shapes)} of another shape "
            f"{shapes[:3]}; {hint}")
    module.load_state_dict(weights, strict=True)
