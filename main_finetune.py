"""Semi-supervised fine-tuning of a pretrained backbone (WCL Table 8), e.g.

    python main_finetune.py --config-name clinfonce_synthetic_cub.yaml pretrained=<.ckpt or zoo:name>

Configs are read from scripts/finetune/. The whole backbone and a linear head are trained on
``label_fraction`` of each class's training images (or the images of ``subset_file``);
top-1/top-5 on the test split are printed and written as JSON beside the checkpoint
(``<name>.json``, by default ``finetune-<pretrain name>.json``), the fine-tuned weights as
``<name>.pt``.
"""
import os

from clinfonce_plugin.cli import hydra_main
from clinfonce_plugin.evaluate.finetune import finetune_eval

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "finetune")

if __name__ == "__main__":
    hydra_main(CONFIG_DIR, finetune_eval)
