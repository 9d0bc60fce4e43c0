"""Pretrains a method of the resolved host (solo-learn or the bundled runtime), e.g.

    python main_pretrain.py --config-name clinfonce_synthetic_cub.yaml

Configs are read from scripts/pretrain/ (no --config-path needed); any key can be overridden
on the command line as with solo-learn (``max_epochs=5 optimizer.batch_size=64``).
"""
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from clinfonce_plugin.cfgcheck import ConfigError
from clinfonce_plugin.train import pretrain

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "pretrain")


@hydra.main(version_base="1.2", config_path=CONFIG_DIR, config_name=None)
def main(cfg: DictConfig) -> None:
    name = HydraConfig.get().job.config_name
    source = os.path.join(CONFIG_DIR, name if name.endswith(".yaml") else f"{name}.yaml")
    try:
        pretrain(cfg, source=source)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
