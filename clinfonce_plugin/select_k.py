"""The k selection command (the job is ``evaluate/select_k.py``)::

    python -m clinfonce_plugin.select_k --config-name clinfonce_cub.yaml

Configs are read from this repository's ``scripts/pretrain`` (the configs of
``main_pretrain.py``); ``select_k.<key>=...`` sets the sweep's keys.
"""
import os

from .cli import hydra_main
from .evaluate.select_k import run_select_k

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "scripts", "pretrain")

if __name__ == "__main__":
    hydra_main(CONFIG_DIR, run_select_k)
