"""The config of every job, read in one place:

- ``schema``: every key's default, kind, range and meaning, one table per config level;
- ``keys``: the ``Key`` row of those tables (also used by method kwargs and providers);
- ``sources``: where each value was set (yaml file and line, config group, command line);
- ``validate``: a section checked against its table (unknown keys, kinds, ranges, defaults);
- ``checks``: each job's check (pretrain, linear, fine-tune, kNN, plot), run before any
  training starts, returning the resolved config that the job passes down;
- ``command_line``: the hydra command line rewritten, and the sources of a running job;
- ``saved``: a finished run's saved pretrain config read back, with the keys it predates.
"""
from ..errors import ConfigError
from ..utils.markers import REQUIRED
from .checks import (auto_num_workers, available_cores, check_finetune_cfg, check_knn_cfg,
                     check_linear_cfg, check_plot_cfg, check_pretrain_cfg, linear_preset,
                     processes_per_machine, uses_momentum)
from .keys import Key, Unsupported, as_keys, documented_keys
from .schema import (AUGMENTATION, AUTO_WORKERS_CAP, EVAL_DATA, FINETUNE, KNN, KNN_FEATURE_TYPES,
                     LINEAR, LINEAR_PRESETS, PLOT, PRETRAIN, UNSUPPORTED)
from .saved import saved_pretrain_cfg
from .sources import Sources
from .validate import (check_choice, check_known_keys, fill_defaults, fill_section, select,
                       validate_run_name)

__all__ = ["REQUIRED", "Key", "Unsupported", "ConfigError", "Sources", "fill_section",
           "check_known_keys", "check_pretrain_cfg", "check_linear_cfg", "check_knn_cfg",
           "check_plot_cfg", "select", "fill_defaults", "as_keys", "validate_run_name",
           "documented_keys", "PRETRAIN", "LINEAR", "KNN", "KNN_FEATURE_TYPES", "PLOT",
           "AUGMENTATION", "LINEAR_PRESETS", "FINETUNE", "EVAL_DATA", "UNSUPPORTED",
           "check_finetune_cfg", "linear_preset", "AUTO_WORKERS_CAP", "available_cores",
           "auto_num_workers", "processes_per_machine", "uses_momentum", "check_choice",
           "saved_pretrain_cfg"]
