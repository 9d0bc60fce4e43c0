"""The one hydra entry wrapper of ``main_pretrain.py``, ``main_linear.py``, ``main_knn.py``,
``main_finetune.py``, ``select_k`` and ``plot_embedding``.

- Configs are read from a fixed directory (no ``--config-path``); ``--config-name`` picks one
  (``plot_embedding`` has a default one). Without either, the config is the command line's
  keys alone (``main_linear.py pretrained=zoo:<name>``: every other key has its default or
  comes from the pretrain run).
- Every plain ``key=value`` override is given to hydra as ``++key=value`` (set or add), so any
  documented key can be set on the command line without hydra's ``+``; unknown keys are then
  refused by the config check, which names the override.
- A user error (``UserError``: config, data, checkpoint, zoo, run directory, divergence, a
  missing optional package, an existing output) is printed as one ``error:`` line with exit
  code 2; Ctrl-C exits with 130.
- Lightning's warnings listed in ``lightning_noise`` are not shown while the job runs.
"""
import argparse
import difflib
import os
import re
import sys
from typing import Callable, List, Optional

from .config import Sources
from .errors import ConfigError, Interrupted, UserError
from .lightning_noise import lightning_noise_filtered

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


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


def one_line(err: BaseException) -> str:
    """The message of a user error on one line (for an error re-raised from a data-loader
    worker, the original message, without the worker's traceback)."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def _sources(config_dir: str) -> Sources:
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


def run_job(job: Callable, cfg, config_dir: str) -> None:
    """Calls ``job(cfg, sources)`` (Lightning's noise filtered, see ``lightning_noise``);
    user errors become one ``error:`` line and exit 2."""
    try:
        with lightning_noise_filtered():
            job(cfg, _sources(config_dir))
    except Interrupted as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except UserError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


# Without a config the job gets only the command line's keys; hydra must then neither log to
# nor write into an outputs/ directory, as the yamls' own hydra sections ask.
NO_CONFIG_HYDRA = ["hydra.run.dir=.", "hydra.output_subdir=null",
                   "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def hydra_main(config_dir: str, job: Callable, config_name: Optional[str] = None) -> None:
    """Runs ``job`` as a hydra application over ``config_dir`` (see the module docstring);
    ``config_name`` is the config read when the command line gives no ``--config-name``."""
    import hydra

    argv = rewrite_overrides(sys.argv[1:], config_dir)
    try:
        check_command_line(sys.argv[1:], argv, config_dir, config_name)
    except UserError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    named = any(a in ("--config-name", "-cn") or a.startswith(("--config-name=", "-cn="))
                for a in argv)
    help_only = any(a in ("-h", "--help", "--hydra-help") for a in argv)
    if config_name is None and not named and not help_only:
        argv += NO_CONFIG_HYDRA
    sys.argv = [sys.argv[0]] + argv

    @hydra.main(version_base="1.2", config_path=config_dir, config_name=config_name)
    def main(cfg) -> None:
        run_job(job, cfg, config_dir)

    main()
