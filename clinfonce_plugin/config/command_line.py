"""The command line of the hydra entry points: plain ``key=value`` overrides rewritten as
``++key=value`` (so any documented key can be set without hydra's ``+``; unknown keys are then
refused by the config check, which names the override), and the ``Sources`` of a running job
(which yaml file, config group or override set each key)."""
import os
from typing import List

from .sources import Sources


def rewrite_overrides(argv: List[str], config_dir: str) -> List[str]:
    """``key=value`` -> ``++key=value`` for every override that is not a hydra option, a
    config-group choice (a folder of ``config_dir``) or already prefixed."""
    out = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg or arg[0] in "+~":
            out.append(arg)
            continue
        key = arg.split("=", 1)[0]
        is_group = os.path.isdir(os.path.join(config_dir, key))
        if key.startswith("hydra.") or key == "hydra" or is_group:
            out.append(arg)
        else:
            out.append("++" + arg)
    return out


def sources_from_hydra(config_dir: str) -> Sources:
    """Where each key of the running hydra job came from: the primary yaml, the config
    groups' files, the command-line overrides."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    name = hc.job.config_name
    primary = None
    if name:
        primary = os.path.join(config_dir, name if name.endswith(".yaml") else f"{name}.yaml")
    groups = {}
    for group, choice in hc.runtime.choices.items():
        if group.startswith("hydra") or choice is None:
            continue
        # "group@package": a group's file placed at another key (warmup_augmentations)
        group, _, package = group.partition("@")
        file = os.path.join(config_dir, group, choice if choice.endswith(".yaml")
                            else f"{choice}.yaml")
        if os.path.isfile(file):
            groups[(package or group).replace("/", ".")] = file
    overrides = [o.lstrip("+") for o in hc.overrides.task]
    return Sources(primary=primary, groups=groups, overrides=overrides)
