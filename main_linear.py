"""Linear evaluation of a pretrained backbone (frozen), e.g.

    python main_linear.py --config-name clinfonce_synthetic_cub.yaml pretrained=<.ckpt or zoo name>

Configs are read from scripts/linear/. Top-1/top-5 on the test split are printed and written
as JSON beside the checkpoint (``<name>.json``, by default ``linear-<pretrain name>.json``).
"""
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from clinfonce_plugin.cfgcheck import ConfigError
from clinfonce_plugin.linear import linear_eval

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "linear")


@hydra.main(version_base="1.2", config_path=CONFIG_DIR, config_name=None)
def main(cfg: DictConfig) -> None:
    name = HydraConfig.get().job.config_name
    source = os.path.join(CONFIG_DIR, name if name.endswith(".yaml") else f"{name}.yaml")
    try:
        linear_eval(cfg, source=source)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
