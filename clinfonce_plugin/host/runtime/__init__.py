"""The bundled runtime: solo-learn's host contract as glue over Lightning, timm,
torchvision.transforms.v2 and torchmetrics. Used when solo-learn is not installed."""
from .args import parse_cfg
from .augmentations import FullTransformPipeline, NCropAugmentation, build_transform_pipeline
from .base import BaseMethod
from .methods import METHODS

__all__ = ["BaseMethod", "METHODS", "parse_cfg", "build_transform_pipeline",
           "NCropAugmentation", "FullTransformPipeline"]
