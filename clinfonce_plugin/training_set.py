"""The training split a pretrain config names, for methods built without it (solo-learn's
``main_pretrain`` constructs a method from its config alone)."""
from typing import Optional

import omegaconf

from clinfonce_plugin.clusters.sample_info import SampleInfo


def training_sample_info(cfg: omegaconf.DictConfig,
                         sample_info: Optional[SampleInfo] = None) -> SampleInfo:
    """The training split's SampleInfo: ``sample_info`` if given, else read from ``cfg.data``
    with the data registry."""
    if sample_info is not None:
        return sample_info
    # imported here: reading a dataset is only needed when the runner did not pass its info
    from clinfonce_plugin.data.registry import build_dataset

    _, info, _ = build_dataset(cfg.data.dataset, cfg.data.train_path, split="train")
    return info
