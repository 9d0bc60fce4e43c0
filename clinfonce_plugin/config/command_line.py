"""The command line of the hydra entry points: plain ``key=value`` overrides rewritten as
``++key=value`` (so any documented key can be set without hydra's ``+``; unknown keys are then
refused by the config check, which names the override), the check of the command line
before hydra reads it, and the ``Sources`` of a running job (which yaml file, config group
or override set each key)."""
import argparse
import difflib
import os
import re
from typing import List, Optional

from ..errors import ConfigError
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


def check_command_line(argv: List[str], rewritten: List[str], config_dir: str,
                       default_config: Optional[str] = None) -> None:
    """Refuses, as a ConfigError naming the argument, what hydra would stop on with a
    traceback-like message and exit code 1: an option without its value, an unknown option,
    a ``--config-name`` or config-group choice with no such file in ``config_dir``, a group
    choice without a config whose defaults list has the group, and an override hydra's
    grammar cannot read (a newline in it, an unbalanced ``[``). ``rewritten`` is ``argv``
    after ``rewrite_overrides`` (what hydra is given); ``default_config`` the config read
    without ``--config-name``."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = get_args_parser()
    parser.exit_on_error = False

    def refuse(message: str) -> None:
        raise ConfigError(f"command line: {message}")

    parser.error = refuse
    try:
        args = parser.parse_args(rewritten)
    except argparse.ArgumentError as err:
        refuse(str(err))
    folder = os.path.abspath(config_dir)
    if args.config_name is not None and not (args.config_dir or args.config_path):
        _check_config_file(config_dir, args.config_name, f"--config-name {args.config_name}",
                           folder)
    original = dict(zip(rewritten, argv))
    for override in args.overrides:
        given = original.get(override, override)
        bad = re.search(r"[\x00-\x1f\x7f]", given)
        if bad:
            raise ConfigError(f"command line ({given!r}): the override holds the control "
                              f"character {bad.group(0)!r} (a newline pasted into the "
                              f"command?); expected key=value on one line")
        try:
            parsed = OverridesParser.create().parse_overrides([override])[0]
        except HydraException as err:
            reason = str(err).splitlines()[0]
            if reason.startswith("LexerNoViableAltException"):
                reason = "hydra's override grammar cannot read it"
            raise ConfigError(f"command line ({given}): not a valid override: {reason}; "
                              f"expected key=value (quote a value with brackets, commas or "
                              f"spaces: key='a b')") from None
        key = parsed.key_or_group
        if (parsed.package is None and not override.startswith("+") and
                os.path.isdir(os.path.join(config_dir, key)) and
                isinstance(parsed.value(), str)):
            if args.config_name is None and default_config is None:
                raise ConfigError(f"command line ({given}): a config-group choice needs a "
                                  f"--config-name whose defaults list has the group (or "
                                  f"+{given} to add it)")
            _check_config_file(os.path.join(config_dir, key), parsed.value(), given,
                               os.path.join(folder, key))


def _check_config_file(folder: str, name: str, given: str, shown: str) -> None:
    file = os.path.join(folder, name if name.endswith(".yaml") else f"{name}.yaml")
    if os.path.isfile(file):
        return
    choices = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
    close = difflib.get_close_matches(os.path.basename(file), choices, n=3, cutoff=0.5)
    hint = (f"did you mean {', '.join(close)}?" if close else
            f"{len(choices)} configs there, e.g. {', '.join(choices[:3])}")
    raise ConfigError(f"command line ({given}): no config {os.path.basename(file)} in "
                      f"{shown}/ ({hint})")


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
    label = "<config>" if primary else "command line (no --config-name given)"
    return Sources(primary=primary, groups=groups, overrides=overrides, label=label)
