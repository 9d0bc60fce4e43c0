"""A method instance from a prepared config: the class the host's ``METHODS`` registers under
``cfg.method``, given the training set's SampleInfo when it takes one, with the plugin's
``backbone.cifar_stem`` applied and its weights in channels-last memory format when
``channels_last`` is set. Used by the pretrain runner and by the evaluations that
rebuild a pretrained method's modules (the projector of ``main_knn.py``)."""
import lightning.pytorch as pl
import omegaconf
import torch

from clinfonce_plugin.errors import ConfigError, UserError

from . import METHODS
from .backbone import apply_plugin_stem


def make_method(cfg: omegaconf.DictConfig, sample_info=None) -> pl.LightningModule:
    """``METHODS[cfg.method](cfg)`` (plus ``sample_info=`` for a method whose
    ``uses_sample_info`` is set; None: the method reads the split from ``cfg.data``)."""
    cls = METHODS[cfg.method]
    try:
        if sample_info is not None and getattr(cls, "uses_sample_info", False):
            model = cls(cfg, sample_info=sample_info)
        else:
            model = cls(cfg)
    except UserError:
        raise  # already says what is wrong (a DataError stays one)
    except ValueError as err:
        # a provider's or backbone's parameter check (e.g. a k out of range): the same clean
        # exit as every other config error
        raise ConfigError(f"method {cfg.method}: {err}") from None
    apply_plugin_stem(model, cfg)
    if cfg.channels_last:
        # the weights; the host's forward converts each input batch
        model = model.to(memory_format=torch.channels_last)
    return model
