"""Pretrains a method of the resolved host (solo-learn or the bundled runtime), e.g.

    python main_pretrain.py --config-name clinfonce_synthetic_cub.yaml

Configs are read from scripts/pretrain/ (no --config-path needed); any documented key can be
set on the command line as ``key=value`` (``max_epochs=5 optimizer.batch_size=64``).
"""
import os

from clinfonce_plugin.cli import hydra_main
from clinfonce_plugin.run.pretrain import pretrain

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "pretrain")

if __name__ == "__main__":
    hydra_main(CONFIG_DIR, pretrain)
