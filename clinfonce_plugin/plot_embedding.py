"""The t-SNE picture command (the job is ``evaluate/embedding.py``)::

    python -m clinfonce_plugin.plot_embedding pretrained=<.ckpt or zoo:name> [split=test]

Its defaults are ``scripts/plot/embedding.yaml``.
"""
import os

from .cli import hydra_main
from .evaluate.embedding import plot_embedding

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "scripts", "plot")

if __name__ == "__main__":
    hydra_main(CONFIG_DIR, plot_embedding, config_name="embedding")
