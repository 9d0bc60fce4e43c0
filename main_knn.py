"""Weighted kNN evaluation of a pretrained model (frozen), as solo-learn's main_knn.py, e.g.

    python main_knn.py --config-name clinfonce_synthetic_cub.yaml pretrained=<.ckpt or zoo:name>

Configs are read from scripts/knn/. Top-1/top-5 on the test split for every feature type
(backbone, projector), distance and k, then the NMI and clustering accuracy of k-means on the
features, are printed as tables and written as JSON beside the checkpoint (``<name>.json``,
by default ``knn-<pretrain name>.json``).
"""
import os

from clinfonce_plugin.cli import hydra_main
from clinfonce_plugin.evaluate.knn import knn_eval

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "knn")

if __name__ == "__main__":
    hydra_main(CONFIG_DIR, knn_eval)
