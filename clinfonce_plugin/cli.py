"""The one hydra entry wrapper of ``main_pretrain.py``, ``main_linear.py``, ``main_knn.py``,
``main_finetune.py`` and ``select_k``.

- Configs are read from a fixed directory (no ``--config-path``); ``--config-name`` picks one.
- Every plain ``key=value`` override is given to hydra as ``++key=value`` (set or add), so any
  documented key can be set on the command line without hydra's ``+``; unknown keys are then
  refused by the config check, which names the override.
- A user error (``UserError``: config, data, checkpoint, zoo, run directory, divergence) is
  printed as one ``error:`` line with exit code 2; Ctrl-C exits with 130.
"""
import os
import sys
from typing import Callable, List

from .config import Sources
from .errors import Interrupted, UserError

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


def run_job(job: Callable, cfg, config_dir: str) -> None:
    """Calls ``job(cfg, sources)``; user errors become one ``error:`` line and exit 2."""
    try:
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


def hydra_main(config_dir: str, job: Callable) -> None:
    """Runs ``job`` as a hydra application over ``config_dir`` (see the module docstring)."""
    import hydra

    sys.argv = [sys.argv[0]] + rewrite_overrides(sys.argv[1:], config_dir)

    @hydra.main(version_base="1.2", config_path=config_dir, config_name=None)
    def main(cfg) -> None:
        run_job(job, cfg, config_dir)

    main()
