"""The transforms of a run, built from its ``augmentations`` by the resolved host: the
multi-crop pretrain pipeline and the deterministic evaluation transform (applied to a
dataset by ``data.indexed.TransformedImages``)."""
import omegaconf
from omegaconf import OmegaConf

from clinfonce_plugin import host

_RANDOM_OPS = ("color_jitter", "grayscale", "gaussian_blur", "solarization", "equalization",
               "horizontal_flip")


def pretrain_transform(cfg: omegaconf.DictConfig):
    """image -> list of crops, one pipeline per entry of ``cfg.augmentations``."""
    pipelines = [
        host.NCropAugmentation(host.build_transform_pipeline(cfg.data.dataset, aug), aug.num_crops)
        for aug in cfg.augmentations
    ]
    return host.FullTransformPipeline(pipelines)


def eval_transform(cfg: omegaconf.DictConfig):
    """Deterministic resize + centre crop at the first pipeline's crop size, normalised like
    training (validation, features, the k-means embedding pass)."""
    node = OmegaConf.create(OmegaConf.to_container(cfg.augmentations[0], resolve=True))
    node.rrc.enabled = False
    for key in _RANDOM_OPS:
        if key in node:
            node[key].prob = 0.0
    return host.build_transform_pipeline(cfg.data.dataset, node)
