"""The projector of a pretrained checkpoint, for evaluations of projector features
(``main_knn.py feature_type=[..., projector]``, as solo-learn's ``main_knn --feature_type``).

The projector is the method's own ``projector`` module: the method is built from the pretrain
config by the resolved host's ``METHODS`` registry (any registered method: simclr, supcon,
swav and, under solo-learn, its others such as mocov2plus; clinfonce; wcl, whose
``projector`` is the instance head g, not the weak-label head phi), and the checkpoint's
``projector.*`` weights are loaded into it: weights-only, every tensor checked by key and
shape. A checkpoint without them (a backbone-only file, or a method without a projector such
as cluster_ce) is refused with a CheckpointError.
"""
from typing import Optional

import omegaconf
import torch.nn as nn
from omegaconf import OmegaConf

from .. import host
from ..run.checkpoints import check_finite, load_exact, prefixed, safe_load, state_dict_of
from ..data.registry import training_sample_info
from ..errors import CheckpointError, DataError
from ..host.method import make_method

NO_PROJECTOR_HINT = "evaluate the backbone alone with feature_type=[backbone]"


def load_pretrained_projector(ckpt_path: str, pre_cfg: omegaconf.DictConfig,
                              sample_info=None) -> nn.Module:
    """The ``projector`` of the method ``pre_cfg`` describes, with the weights of
    ``ckpt_path``, in eval mode.

    Args:
        ckpt_path: a checkpoint this project or solo-learn wrote, or a zoo file.
        pre_cfg: its resolved pretrain config (``args.json``, or a zoo file's ``args``).
        sample_info: a SampleInfo of the pretrain run's dataset, for methods that take one
            (their cluster providers are built with the method and discarded, only the
            projector is kept); None: the pretrain training split, read from ``pre_cfg.data``.
    """
    state = state_dict_of(safe_load(ckpt_path, "pretrained checkpoint"), ckpt_path)
    weights = prefixed(state, "projector.")
    if not weights:
        raise CheckpointError(f"{ckpt_path} has no 'projector.*' weights (method "
                              f"{pre_cfg.method}): {NO_PROJECTOR_HINT}")
    check_finite(weights, ckpt_path)
    method = _build(ckpt_path, pre_cfg, sample_info)
    projector = getattr(method, "projector", None)
    if not isinstance(projector, nn.Module):
        raise CheckpointError(f"method {pre_cfg.method} as configured in {ckpt_path}'s pretrain "
                              f"config has no 'projector' module: {NO_PROJECTOR_HINT}")
    load_exact(projector, weights, f"pretrained checkpoint {ckpt_path}",
               f"the projector of method {pre_cfg.method!r}",
               "the checkpoint and its pretrain config disagree")
    return projector.eval()


def _build(ckpt_path: str, pre_cfg: omegaconf.DictConfig, sample_info: Optional[object]):
    if pre_cfg.method not in host.METHODS:
        raise CheckpointError(f"{ckpt_path} was trained with method {pre_cfg.method!r}, which "
                              f"the {host.HOST_NAME} host does not register. Registered: "
                              f"{sorted(host.METHODS)}")
    # a copy: the method fills its kwargs into the config it is given
    cfg = OmegaConf.create(OmegaConf.to_container(pre_cfg, resolve=True))
    try:
        if sample_info is None and getattr(host.METHODS[cfg.method], "uses_sample_info", False):
            sample_info = training_sample_info(cfg)  # the pretrain training split, read once
        return make_method(cfg, sample_info)
    except DataError as err:
        raise DataError(f"rebuilding the projector of method {pre_cfg.method} reads the "
                        f"metadata of its pretrain training split: {err}") from None
