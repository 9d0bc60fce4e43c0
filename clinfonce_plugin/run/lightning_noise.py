"""The warnings Lightning prints in this project's jobs that say nothing a user can act on,
filtered by their exact message while a job runs (docs/reliability.md lists every warning the
jobs print, and why each is kept or filtered).

The filter is a context (``warnings.catch_warnings``), not a process-wide setting: importing
the plugin inside solo-learn changes no warning of solo-learn's own jobs.
"""
import contextlib
import logging
import re
import warnings
from typing import Iterator, NamedTuple, Type


class Noise(NamedTuple):
    """One filtered warning: its category, a regex matching its whole message from the start
    (numbers in it are the only variable parts) and why the user need not see it."""
    category: Type[Warning]
    message: str
    why: str


NOISE = (
    Noise(UserWarning,
          re.escape("You defined a `validation_step` but have no `val_dataloader`. "
                    "Skipping val loop.") + "$",
          "the host's method always defines the online probe's validation step; without "
          "data.val_path there is nothing to validate, by the user's choice"),
    Noise(UserWarning,
          r"The number of training batches \(\d+\) is smaller than the logging interval "
          r"Trainer\(log_every_n_steps=\d+\)\. Set a lower value for log_every_n_steps if "
          r"you want to see logs for the training epoch\.$",
          "step rows are written every log_every_n_steps optimizer steps counted across "
          "epochs, and every epoch writes its epoch row: no log is lost"),
    Noise(FutureWarning,
          re.escape("`isinstance(treespec, LeafSpec)` is deprecated, use "
                    "`isinstance(treespec, TreeSpec) and treespec.is_leaf()` instead.") + "$",
          "Lightning's own use of a torch API that torch deprecated; fixed by a later "
          "Lightning, nothing in the run depends on it"),
)


# Lightning's log lines (not warnings) that say nothing a user can act on: (logger, regex)
LOG_NOISE = (
    # Lightning >= 2.5 logs it at every checkpoint save that leaves save_checkpoint's
    # weights_only unset: a line per epoch; the runner's checkpoints are the full training
    # state on purpose (they resume the run)
    ("lightning.pytorch.trainer.connectors.checkpoint_connector",
     re.escape("`weights_only` was not set, defaulting to `False`.") + "$"),
)


class _DropMessages(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


@contextlib.contextmanager
def lightning_noise_filtered() -> Iterator[None]:
    """Within the context, the warnings of ``NOISE`` and the log lines of ``LOG_NOISE`` are
    not shown; every other warning and log line is."""
    filters = [(logging.getLogger(name), _DropMessages(pattern)) for name, pattern in LOG_NOISE]
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for noise in NOISE:
                # Lightning's PossibleUserWarning subclasses UserWarning
                warnings.filterwarnings("ignore", message=noise.message, category=noise.category)
            yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)
