"""The one hydra entry wrapper of ``main_pretrain.py``, ``main_linear.py``, ``main_knn.py``,
``main_finetune.py``, ``select_k`` and ``plot_embedding``.

- The command line is rewritten, checked and its sources found by ``config/command_line.py``.
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
import sys
from typing import Callable, Optional

from .config.command_line import check_command_line, rewrite_overrides, sources_from_hydra
from .errors import Interrupted, UserError
from .run.lightning_noise import lightning_noise_filtered

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def one_line(err: BaseException) -> str:
    """The message of a user error on one line (for an error re-raised from a data-loader
    worker, the original message, without the worker's traceback)."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def run_job(job: Callable, cfg, config_dir: str) -> None:
    """Calls ``job(cfg, sources)`` (Lightning's noise filtered, see ``lightning_noise``);
    user errors become one ``error:`` line and exit 2."""
    try:
        with lightning_noise_filtered():
            job(cfg, sources_from_hydra(config_dir))
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
