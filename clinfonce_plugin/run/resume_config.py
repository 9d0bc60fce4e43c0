"""What a resumed run may change: its config is compared with the ``args.json`` of the run it
continues, before anything is written.

A resumed run restores from its checkpoint the weights, the optimiser (its learning rates,
momenta, weight decay), the schedule's position, the loop counters and the random
generators; a new value of a key behind that state would be recorded in ``args.json`` but not
be used. So a key may differ on resume only when its new value is applied for real:

- ``NOT_TRAINING``: keys that say where the run is and how it is run, watched or saved,
  not what it learns (run control, paths of the run, logging, data-loader workers, image
  checks, checkpoint frequency, validation-only limits);
- ``APPLIED_ON_RESUME``: training keys the resumed run applies: ``max_epochs`` (the trainer's
  last epoch, and the schedule's horizon on both hosts: ``run.callbacks.ScheduleFromConfig``
  puts the current config's horizon back over the one the checkpoint stored).

Every other difference is refused with one error naming each key as ``key: old -> new``.
Each resume is recorded in ``resumes.json`` of the run directory: when, from which
checkpoint (epoch, step) and which keys changed.
"""
import datetime as _dt
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError
from ..utils.atomic import atomic_write_json

RECORD = "resumes.json"

# prefixes (a key or a section) that may differ on resume without touching the training
NOT_TRAINING: Tuple[str, ...] = (
    "name", "checkpoint.dir", "resume", "resume_from_checkpoint", "overwrite", "break_lock",
    "auto_resume", "enable_progress_bar", "log_every_n_steps", "wandb", "tensorboard",
    "data.num_workers", "data.verify_images", "data.generate", "checkpoint.enabled",
    "checkpoint.frequency", "num_sanity_val_steps", "limit_val_batches",
)

ABSENT = "<absent>"


# training keys a resumed run applies for real (run.callbacks.ScheduleFromConfig)
APPLIED_ON_RESUME: Tuple[str, ...] = ("max_epochs",)


def flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    """``{dotted key: value}`` of a JSON-like config; list items as ``key[i]``."""
    if isinstance(node, dict):
        out: Dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out if out or not prefix else {prefix: {}}
    if isinstance(node, list):
        out = {}
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out if out else {prefix: []}
    return {prefix: node}


def as_json(config: Any) -> Any:
    """``config`` (plain containers) as ``args.json`` holds it."""
    return json.loads(json.dumps(config, default=str))


def differences(old: Any, new: Any) -> Dict[str, Tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every key whose value differs (``ABSENT`` for a key
    one side lacks)."""
    a, b = flatten(as_json(old)), flatten(as_json(new))
    return {k: (a.get(k, ABSENT), b.get(k, ABSENT)) for k in sorted(set(a) | set(b))
            if a.get(k, ABSENT) != b.get(k, ABSENT)}


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "[")
               for p in prefixes)


def check_resume_config(old: Any, new: Any, args_path: str) -> Dict[str, Tuple[Any, Any]]:
    """Compares the config ``new`` of a resumed run with ``old``, the config of the run it
    continues (read from ``args_path``). Returns every difference; raises ConfigError naming
    the training keys that changed and would not be applied."""
    changed = differences(old, new)
    allowed = NOT_TRAINING + APPLIED_ON_RESUME
    refused = [k for k in changed if not _under(k, allowed)]
    if refused:
        listed = ", ".join(f"{k}: {_show(changed[k][0])} -> {_show(changed[k][1])}"
                           for k in refused)
        may = ", ".join(APPLIED_ON_RESUME)
        raise ConfigError(
            f"resume: {len(refused)} training key(s) differ from the run being resumed "
            f"({args_path}; values as it records them): {listed}. A resumed run restores "
            f"its optimiser, schedule and random state from the checkpoint, so these "
            f"values would not be used: resume with the run's values, or start a new run "
            f"(another name=, or overwrite=true; "
            f"backbone.pretrained=<checkpoint> starts from its weights). Training keys that "
            f"may change on resume here: {may} (docs/reliability.md)")
    return changed


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if value == ABSENT else json.dumps(value)


def previous_config(args_path: str) -> Optional[dict]:
    """The config in ``args_path``, or None when there is no such file."""
    if not os.path.isfile(args_path):
        return None
    try:
        with open(args_path, encoding="utf-8-sig") as f:
            config = json.load(f)
    except ValueError as err:
        raise ConfigError(f"resume: {args_path} (the config of the run being resumed) is not "
                          f"valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"resume: {args_path} does not hold a config (a mapping)")
    return config


def record_resume(run_dir: str, checkpoint: str, epoch: int, step: int,
                  changed: Dict[str, Tuple[Any, Any]]) -> None:
    """Appends this resume to ``<run_dir>/resumes.json`` (write, then rename)."""
    path = os.path.join(run_dir, RECORD)
    history: List[dict] = []
    if os.path.isfile(path):
        try:
            with open(path) as f:
                history = json.load(f)
        except ValueError:
            history = None
        if not isinstance(history, list):  # not a record this module wrote: kept aside
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            os.replace(path, f"{path}.unreadable-{stamp}")
            history = []
    history.append({
        "resumed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": checkpoint, "epoch": epoch, "global_step": step,
        "changed": {k: {"old": old, "new": new} for k, (old, new) in changed.items()},
    })
    atomic_write_json(path, history, indent=2)
