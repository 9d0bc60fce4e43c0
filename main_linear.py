"""Linear evaluation of a pretrained backbone (frozen), e.g.

    python main_linear.py --config-name clinfonce_synthetic_cub.yaml pretrained=<.ckpt or zoo:name>

Configs are read from scripts/linear/. Top-1/top-5 on the test split are printed and written
as JSON beside the checkpoint (``<name>.json``, by default ``linear-<pretrain name>.json``).
"""
import os

from clinfonce_plugin.cli import hydra_main
from clinfonce_plugin.evaluate.linear import linear_eval

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "linear")

if __name__ == "__main__":
    hydra_main(CONFIG_DIR, linear_eval)
