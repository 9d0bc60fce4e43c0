"""The bundled runtime: solo-learn's host contract as glue over Lightning, timm,
torchvision.transforms.v2 and torchmetrics. Used when solo-learn is not installed."""
from .args import parse_cfg
from .augmentations import FullTransformPipeline, NCropAugmentation, build_transform_pipeline
from .backbones import make_host_backbone
from .base import BaseMethod
from .methods import METHODS

prepare_host_cfg = parse_cfg  # the runtime's parse_cfg takes the checked config as it is

__all__ = ["BaseMethod", "METHODS", "parse_cfg", "prepare_host_cfg", "make_host_backbone",
           "build_transform_pipeline", "NCropAugmentation", "FullTransformPipeline"]
